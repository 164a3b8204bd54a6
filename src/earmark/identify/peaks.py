# SPDX-License-Identifier: Apache-2.0
"""Spectral peaks: local maxima of the whitened log-frequency spectrogram.

Peaks are picked on the spectrogram minus its local mean (a whitening that makes them
robust to EQ, phone band and level), then thinned to the strongest ``per_second`` in each
block of one second, so that density does not depend on loudness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
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
    rows = (0, n_frames) if keep is None else (keep[0] - frame0, keep[1] - frame0)
    ti, fi = _maxima(W, S, params.time_radius, params.freq_radius,
                     np.float32(params.min_contrast_db), np.float32(params.floor_db), *rows)
    if mask is not None:
        W = np.maximum(W, np.float32(-60.0))  # finite neighbours for the parabolic refinement
    sal = W[ti, fi]
    abs_t = ti + frame0
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


@numba.njit(cache=True, nogil=True)
def _maxima(W, S, rt, rf, contrast, floor, r0, r1):  # pragma: no cover - compiled
    """The cells of rows ``r0:r1`` that are a maximum of ``W`` over ±``rt`` rows and ±``rf``
    columns (ties included, the array's edge left out: a maximum filter with ``-inf``
    outside), higher than ``contrast`` in ``W`` and ``floor`` in ``S``; not on the array's
    border. Row-major order (as ``np.nonzero``).

    One pass that checks the neighbourhood of the few cells above the contrast only, where
    a maximum filter of the whole chunk (two 1-D passes) cost ~5× more. The rows are
    clipped to the array (``r0`` may be negative, ``r1`` past the end).
    """
    n, m = W.shape
    lo, hi = max(r0, 1), min(r1, n - 1)
    cap = max(0, hi - lo) * max(0, m - 2)
    ti = np.empty(cap, np.int64)
    fi = np.empty(cap, np.int64)
    near = rt >= 1 and rf >= 1  # the adjacent cells are in the neighbourhood
    k = 0
    for i in range(lo, hi):
        a, b = max(0, i - rt), min(n, i + rt + 1)
        for j in range(1, m - 1):
            w = W[i, j]
            if not (contrast < w and floor < S[i, j]):
                continue
            # the adjacent cells first: on a smooth spectrogram most cells above the
            # contrast have a higher neighbour right there
            if near and (W[i - 1, j] > w or W[i + 1, j] > w or W[i, j - 1] > w
                         or W[i, j + 1] > w):
                continue
            if _highest(W, w, a, b, max(0, j - rf), min(m, j + rf + 1)):
                ti[k] = i
                fi[k] = j
                k += 1
    return ti[:k], fi[:k]


@numba.njit(cache=True, nogil=True, inline="always")
def _highest(W, w, a, b, c, d):  # pragma: no cover - compiled
    """Whether no cell of ``W[a:b, c:d]`` is higher than ``w``."""
    for p in range(a, b):
        for q in range(c, d):
            if W[p, q] > w:
                return False
    return True
