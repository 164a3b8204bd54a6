# SPDX-License-Identifier: Apache-2.0
"""The default detector: the strongest periodicity of the spectral residue (no training data).

Neural decoders that upsample with transposed convolutions (or nearest/linear upsampling
followed by convolutions, or an inverse STFT with a fixed hop) repeat their output's structure
every ``P`` samples, ``P`` the product of their strides; the spectrum then carries peaks on a
grid of ``sr / P`` Hz (86.1 Hz for 44.1 kHz ÷ 2·4·8·8, 50 Hz for 32 kHz ÷ 8·5·4·4), even with
random weights (Pons et al., ICASSP 2021; Afchar et al., ISMIR 2025). Music has harmonic combs
too, but they follow the notes and move; the decoder's grid stays put for the whole track.

Method (our own; see docs/detect.md for how it differs from published detectors):

1. Log-power spectrogram at 44.1 kHz, 8192-point frames (5.4 Hz bins), hop 4096.
2. Per segment, the **median over frames** of each bin's log power: a stationary grid survives,
   notes that come and go do not.
3. Residue = that profile minus its running median over 31 bins (167 Hz), between 1 kHz and
   the top of the band the input really occupies, clipped to ±10 dB.
4. The residue's own spectrum (a cepstrum-like transform over frequency) shows a comb of
   spacing Δ as a peak at quefrency 1/Δ and its multiples; a harmonic sum over the first
   four multiples, searched over Δ from 30 to 1000 Hz, divided by its median over the search
   range, is the raw score. Searching for the *strongest* periodicity rather than checking
   known grids keeps a grid found after resampling, speed change or pitch shift (which scale Δ).
5. A logistic calibration (fitted by ``earmark bench synthetic`` and shipped in
   ``residue.json``) turns the log of the raw score, and the same weighted by how close the
   grid lies to an equal-tempered pitch (:func:`in_tune`: held notes make tuned combs,
   decoder layouts do not), into a probability.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi
import soxr

from earmark.audio.decode import SILENCE_PEAK
from earmark.detect.base import SegmentScores, register

SR = 44100  #: analysis sample rate, Hz


@dataclass(frozen=True)
class ResidueParams:
    """Parameters of the residue periodicity score (defaults are the shipped ones)."""

    n_fft: int = 16384  #: frame length, samples at :data:`SR` (2.69 Hz bins)
    hop: int = 8192  #: frame hop, samples
    smooth_bins: int = 61  #: running-median width that defines the residue, bins (164 Hz)
    fmin_hz: float = 2500.0  #: lowest frequency of the residue (below, music dominates)
    floor_db: float = 70.0  #: the band ends where the profile stays this far under its peak
    min_band_hz: float = 2000.0  #: narrower usable band → not scored (NaN)
    grid_min_hz: float = 30.0  #: smallest grid spacing searched
    grid_max_hz: float = 1000.0  #: largest grid spacing searched
    harmonics: int = 4  #: quefrency multiples summed
    pad: int = 4  #: zero-padding factor of the residue's transform
    min_frames: int = 3  #: fewer frames in a segment → not scored (about 0.75 s)
    stat: str = "median"  #: "median" or "mean" of log power over frames


TUNING_WIDTH_CENTS = 8.0  #: how close to an equal-tempered pitch (A = 440 Hz) counts as tuned


def in_tune(grid_hz: np.ndarray) -> np.ndarray:
    """How close each grid spacing is to an equal-tempered pitch (A = 440 Hz): 1 on a
    semitone, falling off over :data:`TUNING_WIDTH_CENTS`; 0 for NaN.

    Sustained notes (drones, held synth tones) make harmonic combs exactly like a decoder
    grid, but on a tuned pitch: 98.0 Hz (G2), 110 Hz (A2), 174.6 Hz (F3). The grids of
    codec layouts are not: 86.13 Hz is 24 cents under F2, 50 Hz 35 cents over G1, 75 Hz
    37 cents over D2, 93.75 Hz 24 cents over F♯2 — and stay so after whole-semitone shifts.
    """
    g = np.asarray(grid_hz, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cents = 1200.0 * np.log2(g / 440.0)
        off = np.abs(cents - 100.0 * np.round(cents / 100.0))
        tuned = np.exp(-((off / TUNING_WIDTH_CENTS) ** 2))
    return np.where(np.isfinite(tuned), tuned, 0.0)


def calibration_features(raw: np.ndarray, tuned: np.ndarray) -> np.ndarray:
    """Inputs of the calibration, shape (n, 2): ``log raw`` and ``log raw × tuned``."""
    lr = np.log(np.maximum(np.nan_to_num(np.asarray(raw, np.float64)), 1e-9))
    return np.stack([lr, lr * np.nan_to_num(np.asarray(tuned, np.float64))], axis=1)


@dataclass
class ResidueCalibration:
    """Logistic map from :func:`calibration_features` to a probability; fitted by the
    synthetic benchmark and shipped in ``residue.json``."""

    weights: list[float] = field(default_factory=lambda: [6.0, -4.0])
    bias: float = -14.0
    fitted_on: str = "default (hand-set before the first benchmark)"

    def probability(self, raw: np.ndarray, tuned: np.ndarray) -> np.ndarray:
        z = calibration_features(raw, tuned) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load(path: str | Path | None = None) -> ResidueCalibration:
        if path is None:
            res = resources.files("earmark.detect").joinpath("residue.json")
            if not res.is_file():
                return ResidueCalibration()
            return ResidueCalibration(**json.loads(res.read_text()))
        return ResidueCalibration(**json.loads(Path(path).read_text()))


def power_frames(y: np.ndarray, params: ResidueParams) -> np.ndarray:
    """Power spectra of Hann-windowed frames, bins first (for fast statistics over frames).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at :data:`SR`.

    Returns
    -------
    np.ndarray [shape=(n_fft // 2 + 1, frames), dtype=float32]
        ``|X|²`` per bin and frame; zero frames when ``n < n_fft``.
    """
    n_fft, hop = params.n_fft, params.hop
    if y.size < n_fft:
        return np.zeros((n_fft // 2 + 1, 0), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(y, np.float32), n_fft)[::hop]
    spec = sfft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)
    return np.ascontiguousarray((spec.real ** 2 + spec.imag ** 2).T)


def _median_rows(a: np.ndarray) -> np.ndarray:
    """Median of each row (a partition, ~4× faster than ``np.median`` on (8193, 26))."""
    n = a.shape[1]
    k = n // 2
    if n % 2:
        return np.partition(a, k, axis=1)[:, k]
    part = np.partition(a, [k - 1, k], axis=1)
    return 0.5 * (part[:, k - 1] + part[:, k])


def log_power_frames(y: np.ndarray, params: ResidueParams) -> np.ndarray:
    """Log power (dB) of Hann-windowed frames, shape (frames, n_fft // 2 + 1), float32."""
    return (10.0 * np.log10(power_frames(y, params).T + 1e-12)).astype(np.float32)


def residue_score(profile: np.ndarray, params: ResidueParams
                  ) -> tuple[float, float, float]:
    """Strength and spacing of the strongest grid in a log-power profile.

    Parameters
    ----------
    profile : np.ndarray [shape=(n_fft // 2 + 1,)]
        Log power per bin, dB (the per-segment statistic over frames).

    Returns
    -------
    raw : float
        Harmonic-sum peak over its median in the search range (about 1–2 for no grid; NaN
        when the usable band is narrower than ``min_band_hz``).
    grid_hz : float
        Spacing of that grid, Hz.
    tuned : float
        :func:`in_tune` of the least tuned of the strongest periodicities (see :func:`_tuning`).
    """
    df = SR / params.n_fft
    i0 = math.ceil(params.fmin_hz / df)
    smooth = ndi.median_filter(profile, params.smooth_bins, mode="nearest")
    top = float(smooth[i0:].max())
    present = i0 + np.nonzero(smooth[i0:] > top - params.floor_db)[0]
    i1 = int(present.max()) if present.size else 0
    if (i1 - i0) * df < params.min_band_hz:
        return math.nan, math.nan, math.nan
    r = np.clip(profile[i0:i1] - smooth[i0:i1], -10.0, 10.0)
    r = (r - r.mean()) * np.hanning(r.size)
    n_pad = params.pad * r.size
    spec = np.abs(sfft.rfft(r, n=n_pad))
    # quefrency index q ↔ grid spacing Δ = n_pad · df / q
    q_lo = max(1, int(n_pad * df / params.grid_max_hz))
    q_hi = int(n_pad * df / params.grid_min_hz)
    q = np.arange(q_lo, min(q_hi, (spec.size - 1) // params.harmonics) + 1)
    if q.size < 8:
        return math.nan, math.nan, math.nan
    hsum = np.zeros(q.size)
    for k in range(1, params.harmonics + 1):
        hsum += spec[k * q]
    best = int(np.argmax(hsum))
    raw = float(hsum[best] / max(float(np.median(hsum)), 1e-12))
    return raw, float(n_pad * df / q[best]), _tuning(hsum, n_pad * df / q, best)


def _tuning(hsum: np.ndarray, grids: np.ndarray, best: int, n: int = 3) -> float:
    """How tuned the strongest periodicities are: the *least* tuned of the ``n`` strongest
    local maxima of the harmonic sum (within half the best's height).

    A held note makes every strong periodicity a tuned pitch (its octaves, its fifth); a
    decoder grid at 86.1 Hz can show its strongest periodicity at a tuned-looking 49.2 Hz
    (4/7 of it) but never only tuned ones.
    """
    peaks = np.nonzero((hsum[1:-1] >= hsum[:-2]) & (hsum[1:-1] >= hsum[2:]))[0] + 1
    peaks = peaks[hsum[peaks] >= 0.5 * hsum[best]]
    top = peaks[np.argsort(hsum[peaks])[::-1][:n]] if peaks.size else np.array([best])
    return float(np.min(in_tune(grids[top])))


@dataclass
class ResidueDetector:
    """Training-free detector of decoder grids (see the module docstring)."""

    params: ResidueParams = field(default_factory=ResidueParams)
    calibration: ResidueCalibration = field(default_factory=ResidueCalibration.load)
    name: str = "residue"
    version: str = "1"

    @property
    def sr(self) -> int:
        return SR

    def score(self, audio: np.ndarray, sr: int, *, segment_ms: int = 5000) -> SegmentScores:
        """Score ``audio`` (mono, at ``sr`` Hz; resampled to 44.1 kHz) per segment."""
        y = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sr != SR:
            y = soxr.resample(y, sr, SR).astype(np.float32)
        seg = max(1, round(segment_ms * SR / 1000))
        starts = list(range(0, y.size, seg)) or [0]
        if len(starts) > 1 and y.size - starts[-1] < SR:  # a short tail joins the last segment
            starts.pop()
        raw = np.full(len(starts), np.nan)
        grid = np.full(len(starts), np.nan)
        tuned = np.full(len(starts), np.nan)
        s_ms = np.zeros(len(starts), np.int64)
        e_ms = np.zeros(len(starts), np.int64)
        for i, s0 in enumerate(starts):
            s1 = starts[i + 1] if i + 1 < len(starts) else y.size
            s_ms[i] = s0 * 1000 // SR
            e_ms[i] = s1 * 1000 // SR
            part = y[s0:s1]
            if part.size == 0 or float(np.max(np.abs(part))) < SILENCE_PEAK:
                continue
            pw = power_frames(part, self.params)
            if pw.shape[1] < self.params.min_frames:
                continue
            # the median of log power is the log of the median power (log is monotone)
            stat = _median_rows(pw) if self.params.stat == "median" else \
                np.exp(np.log(pw + 1e-12).mean(axis=1))
            prof = 10.0 * np.log10(stat + 1e-12)
            raw[i], grid[i], tuned[i] = residue_score(prof, self.params)
        prob = np.where(np.isnan(raw), np.nan, self.calibration.probability(raw, tuned))
        return SegmentScores(s_ms, e_ms, prob, raw, grid, tuned)


register("residue", ResidueDetector)


def grid_activity(y: np.ndarray, grid_hz: float, params: ResidueParams | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """How strongly each frame shows a grid of spacing ``grid_hz``: localises AI spans.

    Per frame, the raw score of :func:`residue_score` held at the grid's quefrency: the
    residue's transform over frequency at ``1/grid_hz`` and its multiples, over its median in
    the search range. Phase-free, so a grid offset from 0 Hz is followed too.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at :data:`SR`.
    grid_hz : float
        Spacing found by :meth:`ResidueDetector.score` (the most AI-like segment's).

    Returns
    -------
    t_ms : np.ndarray [shape=(frames,)]
        Centre of each frame, ms.
    strength : np.ndarray [shape=(frames,)]
        Harmonic sum at the grid over its median; about 1–2 where there is no grid.
    """
    p = params or ResidueParams()
    lp = log_power_frames(np.asarray(y, np.float32), p)
    if lp.shape[0] == 0 or not math.isfinite(grid_hz) or grid_hz <= 0:
        return np.zeros(0), np.zeros(0)
    df = SR / p.n_fft
    i0 = math.ceil(p.fmin_hz / df)
    i1 = int(0.45 * p.n_fft)
    resid = lp[:, i0:i1] - ndi.median_filter(lp[:, i0:i1], size=(1, p.smooth_bins),
                                              mode="nearest")
    resid = np.clip(resid, -10.0, 10.0)
    resid = (resid - resid.mean(axis=1, keepdims=True)) * np.hanning(resid.shape[1])
    n_pad = p.pad * resid.shape[1]
    spec = np.abs(np.fft.rfft(resid, n=n_pad, axis=1))
    q_lo = max(1, int(n_pad * df / p.grid_max_hz))
    q_hi = min(int(n_pad * df / p.grid_min_hz), (spec.shape[1] - 1) // p.harmonics)
    q = np.arange(q_lo, q_hi + 1)
    hsum = np.zeros((spec.shape[0], q.size))
    for k in range(1, p.harmonics + 1):
        hsum += spec[:, k * q]
    qi = int(np.argmin(np.abs(n_pad * df / q - grid_hz)))
    strength = hsum[:, max(0, qi - 1):qi + 2].max(axis=1) / np.median(hsum, axis=1)
    t_ms = (np.arange(lp.shape[0]) * p.hop + p.n_fft / 2) * 1000.0 / SR
    return t_ms, strength


def spans_of(t_ms: np.ndarray, strength: np.ndarray, scores: SegmentScores, *,
             threshold: float, min_span_ms: int = 1000, hop_ms: float = 1000.0 * 8192 / SR
             ) -> list[tuple[int, int]]:
    """AI spans (ms) from a frame-level grid strength (see :func:`localise`)."""
    prob = np.nan_to_num(scores.probability, nan=0.0)
    if strength.size == 0 or prob.size == 0 or prob.max() < threshold:
        return []
    c = ndi.median_filter(strength, 5, mode="nearest")
    ai_seg = prob >= threshold
    inside = np.zeros(c.size, bool)
    for s, e in zip(scores.start_ms[ai_seg], scores.end_ms[ai_seg], strict=True):
        inside |= (t_ms >= s) & (t_ms < e)
    level = float(np.median(c[inside])) if inside.any() else float(c.max())
    # the level of "no grid": the frames outside the suspected segments, at most 2 (about
    # what music without a grid gives), so that a track AI throughout is not cut in pieces
    base = min(float(np.median(c[~inside])), 2.0) if (~inside).sum() >= 3 else 2.0
    on = c > base + 0.35 * (level - base)
    spans: list[tuple[int, int]] = []
    half = hop_ms / 2
    i = 0
    while i < on.size:
        if not on[i]:
            i += 1
            continue
        j = i
        while j + 1 < on.size and on[j + 1]:
            j += 1
        s, e = int(max(0.0, t_ms[i] - half)), int(t_ms[j] + half)
        if e - s >= min_span_ms:
            spans.append((s, e))
        i = j + 1
    return spans


def best_grid(scores: SegmentScores) -> float:
    """Grid spacing of the most AI-like segment, Hz (NaN when nothing was scored)."""
    raw = np.nan_to_num(scores.raw, nan=-1.0)
    return float(scores.grid_hz[int(np.argmax(raw))]) if raw.size and raw.max() > 0 else math.nan


def localise(y: np.ndarray, scores: SegmentScores, *, threshold: float = 0.5,
             min_span_ms: int = 1000, params: ResidueParams | None = None
             ) -> list[tuple[int, int]]:
    """AI spans of an input, ms, at frame resolution (186 ms) rather than segment resolution.

    The grid of the most AI-like segment is followed frame by frame (:func:`grid_activity`);
    frames whose strength, smoothed over about a second, passes 35 % of the way from the
    no-grid level (the median outside the suspected segments, at most 2) to the median inside
    them are AI. Empty when no segment reaches ``threshold``.
    """
    p = params or ResidueParams()
    t_ms, c = grid_activity(y, best_grid(scores), p)
    return spans_of(t_ms, c, scores, threshold=threshold, min_span_ms=min_span_ms,
                    hop_ms=p.hop * 1000.0 / SR)


#: grids of known decoder layouts: spacing (Hz) → description (for the ``family`` field)
KNOWN_GRIDS: tuple[tuple[float, str], ...] = (
    (44100 / 512, "44.1 kHz ÷ 512 (strides such as 2·4·8·8) or 22.05 kHz ÷ 256"),
    (32000 / 640, "32 kHz ÷ 640 (strides such as 8·5·4·4)"),
    (24000 / 320, "24 kHz ÷ 320 (strides such as 8·5·4·2)"),
    (24000 / 256, "24 kHz ÷ 256 (e.g. an inverse-STFT head, hop 256) or 48 kHz ÷ 512"),
    (48000 / 480, "48 kHz ÷ 480"),
    (16000 / 320, "16 kHz ÷ 320 (strides such as 8·5·4·2)"),
)


def grid_family(grid_hz: float, tol: float = 0.01) -> str:
    """A readable name for a grid: the known layout it matches, else its spacing."""
    if not math.isfinite(grid_hz):
        return "unknown"
    for k in (1, 2, 3, 4):  # the strongest periodicity may be a multiple of the grid
        for hz, name in KNOWN_GRIDS:
            if abs(grid_hz / (k * hz) - 1) <= tol:
                return f"decoder grid {hz:.1f} Hz: {name}"
    return f"decoder grid {grid_hz:.1f} Hz (unknown layout, or resampled / pitch-shifted)"
