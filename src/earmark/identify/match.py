# SPDX-License-Identifier: Apache-2.0
"""From candidate hash matches to aligned matches: vote, fit a line, cut segments.

Every candidate pair (query triplet, reference triplet) implies a time scale
``s = span_ref / span_query`` (the query plays ``s`` times faster), a frequency shift
``f_query − f_ref`` (bins) and, given ``s``, an offset. True matches agree on all three;
chance collisions scatter. The matcher

1. votes on (reference, frequency shift, log scale) in coarse bins;
2. for each strong cell, finds the densest offset, then fits ``t_ref = a + s · t_query``
   by least squares on the inliers (twice), which estimates the tempo to ~0.1 %;
3. counts the *distinct* reference entries that agree (a reference hash matched from several
   rungs of the speed ladder counts once) and cuts the agreeing query times into segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from earmark.identify.fingerprinter import QueryPrints
from earmark.index.base import Candidates


@dataclass(frozen=True)
class MatchParams:
    min_scale: float = 0.45  #: slowest tempo ratio considered
    max_scale: float = 2.25  #: fastest
    shift_bin: float = 2.0  #: vote cell of the frequency shift, bins
    log_scale_bin: float = 0.08  #: vote cell of log2(scale)
    offset_bin: float = 16.0  #: vote cell of the offset at the query centre, frames
    max_cells: int = 24  #: cells examined in detail
    offset_tol: float = 3.0  #: inlier tolerance on the fitted line, frames
    min_inliers: int = 5  #: fewer agreeing entries than this is no match at all
    gap_s: float = 2.5  #: a silence longer than this in the matched query times ends a segment
    max_matches: int = 10


@dataclass
class Alignment:
    """One reference found in the query, before calibration and naming.

    Times are in frames; ``scale`` is the tempo ratio, ``shift`` the frequency shift in bins.
    """

    ref_key: int
    score: int  #: distinct reference entries on the line
    offset: float  #: reference frame at query frame 0
    scale: float
    shift: float
    segments: list[tuple[float, float]] = field(default_factory=list)  #: query frames
    q_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _fit(tq: np.ndarray, tr: np.ndarray, s0: float, tol: float) -> tuple[float, float, np.ndarray]:
    """Offset and slope of ``tr ≈ a + s·tq`` by densest offset, then least squares."""
    off = tr - s0 * tq
    width = max(tol, 2.0)
    h = np.floor(off / width).astype(np.int64)
    vals, counts = np.unique(h, return_counts=True)
    # densest pair of neighbouring cells
    best = int(np.argmax(counts + np.concatenate([counts[1:], [0]]) *
                         (np.diff(np.concatenate([vals, [vals[-1] + 5]])) == 1)))
    a = float(np.median(off[(h == vals[best]) | (h == vals[best] + 1)]))
    s = s0
    inl = np.abs(off - a) <= 3 * tol
    for _ in range(2):
        if inl.sum() >= 4 and np.ptp(tq[inl]) > 30:
            A = np.vstack([np.ones(inl.sum()), tq[inl]]).T
            a, s = (float(x) for x in np.linalg.lstsq(A, tr[inl], rcond=None)[0])
        res = tr - (a + s * tq)
        inl = np.abs(res) <= tol
        if inl.sum() >= 1:
            a += float(np.median(res[inl]))
    return a, s, inl


def align(qp: QueryPrints, cand: Candidates, params: MatchParams = MatchParams(),
          frame_rate: float = 62.5) -> list[Alignment]:
    """Align candidates into per-reference matches, best first.

    Parameters
    ----------
    qp : QueryPrints
        The query's hashes (query coordinates).
    cand : Candidates
        What the index returned for ``qp.hashes.key``.

    Returns
    -------
    list of Alignment
        Non-overlapping in (reference, offset); may be empty.
    """
    if len(cand) == 0:
        return []
    h = qp.hashes
    tq = h.t[cand.qidx].astype(np.float64)
    fq = h.f[cand.qidx]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = cand.span.astype(np.float64) / h.span[cand.qidx]
    ok = (scale >= params.min_scale) & (scale <= params.max_scale)
    if not ok.any():
        return []
    tq, scale = tq[ok], scale[ok]
    tr = cand.t[ok].astype(np.float64)
    shift = (fq[ok] - cand.f[ok]).astype(np.float64)
    ref = cand.ref_key[ok]
    entry = cand.entry[ok]
    ls = np.log2(scale)
    # 1. coarse vote over (reference, shift, log scale, offset); the offset is taken at the
    #    query's centre so that an error in the per-candidate scale moves it little
    tc = 0.5 * qp.duration_s * frame_rate
    off_c = tr - scale * (tq - tc)
    sb = np.floor(shift / params.shift_bin + 0.5).astype(np.int64)
    lb = np.floor(ls / params.log_scale_bin + 0.5).astype(np.int64)
    ob = np.floor(off_c / params.offset_bin).astype(np.int64) + 1024
    cell = ((ref.astype(np.int64) << 32) | ((sb & 0xFF) << 24) | ((lb & 0xFF) << 16)
            | (ob & 0xFFFF))
    cells, counts = np.unique(cell, return_counts=True)
    # a cluster on an offset-cell edge is split in two: score each cell with its right neighbour
    nxt = np.searchsorted(cells, cells + 1)
    nxt_ok = (nxt < cells.size) & (cells[np.minimum(nxt, cells.size - 1)] == cells + 1)
    pair = counts + np.where(nxt_ok, counts[np.minimum(nxt, cells.size - 1)], 0)
    order = np.argsort(-pair)[: params.max_cells]
    results: list[Alignment] = []
    taken = np.zeros(tq.size, bool)
    for ci in order:
        if pair[ci] < params.min_inliers:
            break
        c = int(cells[ci])
        rk = c >> 32
        sc = _signed8((c >> 24) & 0xFF)
        lc = _signed8((c >> 16) & 0xFF)
        oc = (c & 0xFFFF)
        m = ((ref == rk) & (np.abs(sb - sc) <= 1) & (np.abs(lb - lc) <= 1)
             & (np.abs(ob - oc - 0.5) <= 2.5) & ~taken)
        if m.sum() < params.min_inliers:
            continue
        idx = np.nonzero(m)[0]
        s0 = float(2.0 ** np.median(ls[idx]))
        a, s, inl = _fit(tq[idx], tr[idx], s0, params.offset_tol)
        good = idx[inl]
        score = int(np.unique(entry[good]).size)
        if score < params.min_inliers:
            continue
        taken[good] = True
        # the same reference at another offset is a different match (a repeat in a medley)
        shift_est = float(np.median(shift[good]))
        qt = np.sort(tq[good])
        results.append(Alignment(
            ref_key=rk, score=score, offset=a, scale=s, shift=shift_est,
            segments=_segments(qt, params.gap_s * frame_rate), q_times=qt.astype(np.float32),
        ))
    results.sort(key=lambda r: -r.score)
    return _dedupe(results)[: params.max_matches]


def _signed8(v: int) -> int:
    return v - 256 if v >= 128 else v


def _segments(qt: np.ndarray, gap: float) -> list[tuple[float, float]]:
    if qt.size == 0:
        return []
    cuts = np.nonzero(np.diff(qt) > gap)[0]
    starts = np.concatenate([[0], cuts + 1])
    ends = np.concatenate([cuts, [qt.size - 1]])
    return [(float(qt[a]), float(qt[b])) for a, b in zip(starts, ends, strict=True)]


def _dedupe(results: list[Alignment]) -> list[Alignment]:
    """Drop weaker alignments of the same reference that overlap a stronger one in query time."""
    out: list[Alignment] = []
    for r in results:
        clash = False
        for o in out:
            if o.ref_key != r.ref_key:
                continue
            lo = max(r.q_times.min(), o.q_times.min())
            hi = min(r.q_times.max(), o.q_times.max())
            if hi - lo > 0.5 * (r.q_times.max() - r.q_times.min()):
                clash = True
                break
        if not clash:
            out.append(r)
    return out
