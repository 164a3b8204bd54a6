# SPDX-License-Identifier: Apache-2.0
"""Stage 2 of alignment: the strongest vote cells in detail.

For each cell the vote chose (best first), the candidates of its reference in the cell and
its neighbours (±1 shift bin, ±1 log-scale bin, ±2 offset bins) that no better cell has
taken are the cell's inliers; the line ``t_ref = a + s · t_query`` through them is found by
the densest offset, then least squares twice with the inliers re-chosen at ``tol`` frames,
and the cell's score is the number of *distinct* reference entries on it (one reference
hash matched from several rungs of the speed ladder counts once).

All of it runs in one compiled loop (:func:`detail`): done in Python, cell by cell, its
masks, medians and small least-squares fits cost as much as the vote itself — a third of a
live stream's CPU.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def densest(h: np.ndarray) -> int:  # pragma: no cover
    """The value ``v`` of ``h`` with the most entries equal to ``v`` or ``v + 1``; the least."""
    x = np.sort(h)
    best, best_n = x[0], -1
    i = 0
    while i < x.size:
        j = i
        while j < x.size and x[j] == x[i]:
            j += 1
        k = j
        while k < x.size and x[k] == x[i] + 1:
            k += 1
        if k - i > best_n:
            best, best_n = x[i], k - i
        i = j
    return best


@numba.njit(cache=True, nogil=True, error_model="numpy")
def fit_line(tq: np.ndarray, tr: np.ndarray, s0: float, tol: float
             ) -> tuple[float, float, np.ndarray]:  # pragma: no cover
    """Offset ``a`` and slope ``s`` of ``tr ≈ a + s·tq`` and its inliers (within ``tol``).

    The densest offset at slope ``s0`` (bins of ``max(tol, 2)`` frames, a bin and the next),
    its median; then twice: least squares on the inliers when there are 4 or more spread over
    more than 30 frames, inliers re-chosen at ``tol``, the offset moved by their median
    residual.
    """
    off = tr - s0 * tq
    width = max(tol, 2.0)
    h = np.floor(off / width).astype(np.int64)
    v = densest(h)
    a = np.median(off[(h == v) | (h == v + 1)])
    s = s0
    inl = np.abs(off - a) <= 3 * tol
    for _ in range(2):
        k = np.count_nonzero(inl)
        if k >= 4:
            x = tq[inl]
            if x.max() - x.min() > 30:
                y = tr[inl]
                xm, ym = x.mean(), y.mean()
                dx = x - xm
                s = np.sum(dx * (y - ym)) / np.sum(dx * dx)
                a = ym - s * xm
        res = tr - (a + s * tq)
        inl = np.abs(res) <= tol
        if inl.any():
            a += np.median(res[inl])
    return a, s, inl


@numba.njit(cache=True, nogil=True, inline="always")
def in_window(ds, dl, do):  # pragma: no cover
    """Whether a candidate (or a cell) this many shift, log-scale and offset bins from a
    cell lies in the window the cell's detail fit collects: ±1, ±1 and −2…+3."""
    return abs(ds) <= 1 and abs(dl) <= 1 and -2 <= do <= 3


@numba.njit(cache=True, nogil=True, error_model="numpy")
def detail(cells: np.ndarray, lo: np.ndarray, hi: np.ndarray, sb: np.ndarray, lb: np.ndarray,
           ob: np.ndarray, tq: np.ndarray, tr: np.ndarray, ls: np.ndarray, shift: np.ndarray,
           entry: np.ndarray, tol: float, min_inliers: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                      np.ndarray]:  # pragma: no cover
    """Fit every chosen cell in rank order; a candidate serves the first cell that keeps it.

    Parameters
    ----------
    cells : np.ndarray [shape=(k,), dtype=int64]
        The chosen cells, best first (the low 32 bits of a vote cell: shift bin << 24 |
        log-scale bin << 16 | offset bin, 8, 8 and 16 bits).
    lo, hi : np.ndarray [shape=(k,), dtype=int64]
        Each cell's reference as a slice of the candidate arrays.
    sb, lb, ob : np.ndarray [shape=(n,), dtype=int64]
        Each candidate's shift bin, log-scale bin and offset bin (+1024).
    tq, tr : np.ndarray [shape=(n,), dtype=float64]
        Query and reference times, frames (the query's relative to its centre... as given).
    ls, shift : np.ndarray [shape=(n,), dtype=float64]
        log2 scale and frequency shift (bins).
    entry : np.ndarray [shape=(n,), dtype=int64]
        The reference entry each candidate matched.

    Returns
    -------
    kept : int64 (m,)
        Positions in ``cells`` of the cells that made an alignment, in rank order.
    a, s, shift_est : float64 (m,)
        Their line (``tr = a + s · tq``) and median frequency shift.
    score : int64 (m,)
        Distinct reference entries on the line.
    good, bounds : int64
        The inliers of alignment ``j`` are ``good[bounds[j]:bounds[j + 1]]``.
    """
    k = cells.size
    taken = np.zeros(tq.size, np.bool_)
    kept = np.empty(k, np.int64)
    a_out = np.empty(k, np.float64)
    s_out = np.empty(k, np.float64)
    sh_out = np.empty(k, np.float64)
    sc_out = np.empty(k, np.int64)
    good_all = np.empty(tq.size, np.int64)
    bounds = np.zeros(k + 1, np.int64)
    m = 0
    for ci in range(k):
        c = cells[ci]
        sc = (c >> 24) & 0xFF
        lc = (c >> 16) & 0xFF
        if sc >= 128:
            sc -= 256
        if lc >= 128:
            lc -= 256
        oc = c & 0xFFFF
        n_in = 0
        idx = np.empty(hi[ci] - lo[ci], np.int64)
        for i in range(lo[ci], hi[ci]):
            if not taken[i] and in_window(sb[i] - sc, lb[i] - lc, ob[i] - oc):
                idx[n_in] = i
                n_in += 1
        if n_in < min_inliers:
            continue
        idx = idx[:n_in]
        s0 = 2.0 ** np.median(ls[idx])
        a, s, inl = fit_line(tq[idx], tr[idx], s0, tol)
        good = idx[inl]
        score = np.unique(entry[good]).size
        if score < min_inliers:
            continue
        taken[good] = True
        kept[m] = ci
        a_out[m] = a
        s_out[m] = s
        sh_out[m] = np.median(shift[good])
        sc_out[m] = score
        good_all[bounds[m]: bounds[m] + good.size] = good
        bounds[m + 1] = bounds[m] + good.size
        m += 1
    return (kept[:m], a_out[:m], s_out[:m], sh_out[:m], sc_out[:m], good_all[:bounds[m]],
            bounds[:m + 1])
