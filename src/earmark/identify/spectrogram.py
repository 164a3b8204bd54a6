# SPDX-License-Identifier: Apache-2.0
"""Log-frequency magnitude spectrogram.

A pitch shift by ``p`` semitones is a translation by ``p * bins_per_octave / 12`` bins on this
axis, and a speed change by ``v`` is a translation by ``log2(v) * bins_per_octave`` bins plus a
time scaling by ``1 / v``: the hashes built on it (:mod:`earmark.identify.hashes`) are invariant
to both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, overload

import numpy as np
import scipy.fft
import scipy.sparse


@dataclass(frozen=True)
class SpectrogramParams:
    """Analysis settings; their defaults are the fingerprint's (changing them needs a re-index)."""

    sr: int = 8000  #: analysis sample rate, Hz
    n_fft: int = 1024  #: FFT size, samples (128 ms at 8 kHz)
    hop: int = 128  #: hop, samples (16 ms at 8 kHz)
    fmin: float = 110.0  #: lowest bin centre, Hz (A2)
    n_bins: int = 180  #: number of log-frequency bins
    bins_per_octave: int = 36  #: resolution of the log axis (1/3 semitone)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sr / self.hop

    @property
    def fmax(self) -> float:
        return self.fmin * 2.0 ** ((self.n_bins - 1) / self.bins_per_octave)


@lru_cache(maxsize=8)
def _logfreq_matrix(params: SpectrogramParams) -> scipy.sparse.csr_matrix:
    """Sparse weights, shape (n_fft // 2 + 1, n_bins), from linear to log-frequency bins."""
    n_lin = params.n_fft // 2 + 1
    lin = np.arange(n_lin) * params.sr / params.n_fft
    k = np.arange(params.n_bins)
    centres = params.fmin * 2.0 ** (k / params.bins_per_octave)
    # half-width: one log bin, but never narrower than one and a half FFT bins
    bw = np.maximum(centres * (2.0 ** (1.0 / params.bins_per_octave) - 1.0),
                    1.5 * params.sr / params.n_fft)
    w = np.maximum(0.0, 1.0 - np.abs(lin[:, None] - centres[None, :]) / bw[None, :])
    w /= np.maximum(w.sum(axis=0, keepdims=True), 1e-12)
    return scipy.sparse.csr_matrix(w.astype(np.float32))


@overload
def log_spectrogram(y: np.ndarray, params: SpectrogramParams = ..., *,
                    linear: Literal[False] = ...) -> np.ndarray: ...
@overload
def log_spectrogram(y: np.ndarray, params: SpectrogramParams = ..., *,
                    linear: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...
def log_spectrogram(y: np.ndarray, params: SpectrogramParams = SpectrogramParams(), *,
                    linear: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Log-magnitude spectrogram on a logarithmic frequency axis.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32]
        Mono samples at ``params.sr`` Hz.
    params : SpectrogramParams
    linear : bool
        Also return the linear-frequency magnitude, shape ``(n_frames, n_fft // 2 + 1)``
        (for :func:`refine_frequency`).

    Returns
    -------
    S : np.ndarray [shape=(n_frames, params.n_bins), dtype=float32]
        Magnitude in dB (re. full scale, floored at -100 dB). Frame ``i`` is centred on
        sample ``i * hop``; ``n_frames = 1 + n // hop``.

    Examples
    --------
    >>> from earmark.audio.generators import tone
    >>> S = log_spectrogram(tone(440.0, sr=8000, duration=1.0))
    >>> int(S[30].argmax())  # 440 Hz is two octaves above 110 Hz: bin 2 * 36
    72
    """
    y = np.asarray(y, dtype=np.float32)
    pad = params.n_fft // 2
    yp = np.pad(y, (pad, pad + params.hop))
    n_frames = 1 + len(y) // params.hop
    if linear:
        S, lin = padded_log_spectrogram(yp, params, linear=True)
        return S[:n_frames], lin[:n_frames]
    S = padded_log_spectrogram(yp, params)
    assert isinstance(S, np.ndarray)
    return S[:n_frames]


def padded_log_spectrogram(
    yp: np.ndarray, params: SpectrogramParams, *, linear: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Like :func:`log_spectrogram` on samples already padded: frame ``i`` covers
    ``yp[i * hop : i * hop + n_fft]`` (used by streaming code that pads once per input).

    With ``linear``, also return the linear-frequency magnitude, shape
    ``(n_frames, n_fft // 2 + 1)``, from which peak frequencies are refined.
    """
    yp = np.ascontiguousarray(yp, dtype=np.float32)
    n_frames = 1 + (yp.size - params.n_fft) // params.hop
    if n_frames <= 0:
        z = np.zeros((0, params.n_bins), np.float32)
        return (z, np.zeros((0, params.n_fft // 2 + 1), np.float32)) if linear else z
    frames = np.lib.stride_tricks.as_strided(
        yp, shape=(n_frames, params.n_fft), strides=(yp.strides[0] * params.hop, yp.strides[0])
    )
    win = _window(params.n_fft)
    spec = np.abs(scipy.fft.rfft(frames * win, axis=1)).astype(np.float32)
    mag = spec @ _logfreq_matrix(params)
    mag *= 2.0 / win.sum()
    S = (20.0 * np.log10(np.maximum(mag, 1e-5))).astype(np.float32)
    return (S, spec) if linear else S


def refine_frequency(
    lin: np.ndarray, ti: np.ndarray, fi: np.ndarray, params: SpectrogramParams
) -> np.ndarray:
    """Frequency of peaks found on the log axis, refined on the linear spectrum.

    Below about 400 Hz one FFT bin is wider than one log bin, so a peak's log-bin position
    moves in FFT-bin steps when the pitch changes. A parabola through the log magnitudes of
    the three FFT bins around the peak gives its frequency to a fraction of a bin.

    Parameters
    ----------
    lin : np.ndarray [shape=(n_frames, n_fft // 2 + 1)]
        Linear magnitude spectrum.
    ti, fi : np.ndarray [shape=(n,), dtype=int]
        Frame and log bin of each peak.

    Returns
    -------
    f : np.ndarray [shape=(n,), dtype=float32]
        Fractional log bin of each peak.
    """
    df = params.sr / params.n_fft
    fc = params.fmin * 2.0 ** (fi / params.bins_per_octave)
    k0 = np.clip(np.rint(fc / df).astype(np.int64), 2, lin.shape[1] - 3)
    cands = np.stack([lin[ti, k0 - 1], lin[ti, k0], lin[ti, k0 + 1]])
    k = k0 + np.argmax(cands, axis=0) - 1
    a = np.log(lin[ti, k - 1] + 1e-9)
    b = np.log(lin[ti, k] + 1e-9)
    c = np.log(lin[ti, k + 1] + 1e-9)
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
    freq = (k + np.clip(d, -0.5, 0.5)) * df
    f = params.bins_per_octave * np.log2(np.maximum(freq, 1.0) / params.fmin)
    # keep the log-axis estimate where the linear one wandered off (another partial nearby)
    return np.where(np.abs(f - fi) <= 2.0, f, fi).astype(np.float32)


@lru_cache(maxsize=4)
def _window(n: int) -> np.ndarray:
    return np.hanning(n).astype(np.float32)
