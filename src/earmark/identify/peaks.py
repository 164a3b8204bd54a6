# SPDX-License-Identifier: Apache-2.0
"""Spectral peaks: local maxima of the whitened log-frequency spectrogram.

Peaks are picked on the spectrogram minus its local mean (a whitening that makes them
robust to EQ, phone band and level), then thinned to the strongest ``per_second`` in each
block of one second, so that density does not depend on loudness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class PeakParams:
    """Peak-picking settings, in frames and log-frequency bins."""

    time_radius: int = 5  #: a peak is the maximum over ±time_radius frames ...
    freq_radius: int = 6  #: ... and ±freq_radius bins
    bg_frames: int = 31  #: width of the local-mean window in frames (about 0.5 s)
    bg_bins: int = 25  #: and in bins (about 2/3 octave)
    min_contrast_db: float = 3.0  #: minimum height above the local mean, dB
    floor_db: float = -75.0  #: ignore anything quieter than this, dB re full scale
    per_second: float = 13.0  #: keep at most this many peaks per second (strongest first)
    bands: int = 1  #: share the quota equally among this many frequency bands


@dataclass
class Peaks:
    """Peaks sorted by time.

    Attributes
    ----------
    t : np.ndarray [shape=(n,), dtype=float32]
        Time in frames (fractional, parabolic refinement).
    f : np.ndarray [shape=(n,), dtype=float32]
        Frequency in log bins (fractional).
    s : np.ndarray [shape=(n,), dtype=float32]
        Salience: height above the local mean, dB.
    """

    t: np.ndarray
    f: np.ndarray
    s: np.ndarray

    def __len__(self) -> int:
        return int(self.t.size)

    @staticmethod
    def empty() -> Peaks:
        z = np.zeros(0, np.float32)
        return Peaks(z, z.copy(), z.copy())

    @staticmethod
    def concat(parts: list[Peaks]) -> Peaks:
        if not parts:
            return Peaks.empty()
        return Peaks(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("t", "f", "s")))


def _parabolic(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    den = a - 2.0 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
    return np.clip(d, -0.5, 0.5).astype(np.float32)


def find_peaks(
    S: np.ndarray,
    params: PeakParams = PeakParams(),
    *,
    frame_rate: float,
    frame0: int = 0,
    keep: tuple[int, int] | None = None,
    refine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> Peaks:
    """Pick peaks in a log-frequency spectrogram.

    Parameters
    ----------
    S : np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        Log-magnitude spectrogram in dB (:func:`earmark.identify.spectrogram.log_spectrogram`).
    params : PeakParams
    frame_rate : float
        Frames per second, to size the thinning blocks.
    frame0 : int
        Absolute index of ``S``'s first frame; thinning blocks are aligned to absolute
        frames so that a long input processed in chunks gives the same peaks as in one piece.
    keep : (int, int) or None
        Keep only peaks whose absolute frame lies in ``[keep[0], keep[1])``.
    refine : callable, optional
        ``refine(ti, fi) -> f``: fractional log bins of the peaks at (frame, bin) indices of
        ``S``; by default a parabola along the log axis.
    mask : np.ndarray [shape=S.shape, dtype=bool], optional
        Cells that may hold a peak (e.g. not dominated by speech, see
        :mod:`earmark.identify.speech`). Masked-out cells neither become peaks, nor suppress a
        neighbour, nor count in the local mean. ``None``: every cell.

    Returns
    -------
    Peaks
        With absolute times (``frame0`` added), sorted by time.
    """
    n_frames, n_bins = S.shape
    if n_frames < 3:
        return Peaks.empty()
    size = (params.bg_frames, params.bg_bins)
    if mask is None:
        W = S - ndimage.uniform_filter(S, size=size, mode="nearest")
    else:
        # the local mean of the kept cells only (a normalised convolution)
        num = ndimage.uniform_filter(np.where(mask, S, 0.0).astype(np.float32), size=size,
                                     mode="nearest")
        den = ndimage.uniform_filter(mask.astype(np.float32), size=size, mode="nearest")
        W = np.where(mask, S - num / np.maximum(den, 1e-3), -np.inf).astype(np.float32)
    mx = ndimage.maximum_filter(
        W, size=(2 * params.time_radius + 1, 2 * params.freq_radius + 1), mode="constant",
        cval=-np.inf,
    )
    cand = (W == mx) & (params.min_contrast_db < W) & (params.floor_db < S)
    if mask is not None:
        W = np.maximum(W, np.float32(-60.0))  # finite neighbours for the parabolic refinement
    cand[0, :] = cand[-1, :] = False
    cand[:, 0] = cand[:, -1] = False
    ti, fi = np.nonzero(cand)
    sal = W[ti, fi]
    abs_t = ti + frame0
    if keep is not None:
        inside = (abs_t >= keep[0]) & (abs_t < keep[1])
        ti, fi, sal, abs_t = ti[inside], fi[inside], sal[inside], abs_t[inside]
    # thin: the strongest `per_second` in each one-second block of absolute frames
    block = max(1, round(frame_rate))
    bands = max(1, params.bands)
    quota = max(1, int(np.ceil(params.per_second * block / frame_rate / bands)))
    blk = (abs_t // block) * bands + (fi * bands) // n_bins
    order = np.lexsort((-sal, blk))
    blk_sorted = blk[order]
    starts = np.searchsorted(blk_sorted, blk_sorted, side="left")
    rank = np.arange(order.size) - starts
    sel = np.sort(order[rank < quota])
    ti, fi, sal = ti[sel], fi[sel], sal[sel]
    dt = _parabolic(W[ti - 1, fi], W[ti, fi], W[ti + 1, fi])
    if refine is None:
        f = fi.astype(np.float32) + _parabolic(W[ti, fi - 1], W[ti, fi], W[ti, fi + 1])
    else:
        f = refine(ti, fi)
    t = (ti + frame0).astype(np.float32) + dt
    order = np.argsort(t, kind="stable")
    return Peaks(t[order], f[order], sal[order].astype(np.float32))
