# SPDX-License-Identifier: Apache-2.0
"""From candidate hash matches to aligned matches: vote, fit a line, cut segments.

Every candidate pair (query triplet, reference triplet) implies a time scale
``s = span_ref / span_query`` (the query plays ``s`` times faster), a frequency shift
``f_query − f_ref`` (bins) and, given ``s``, an offset. True matches agree on all three;
chance collisions scatter. The matcher

1. votes on (reference, frequency shift, log scale) in coarse bins;
2. for each strong cell, finds the densest offset, then fits ``t_ref = a + s · t_query``
   by least squares on the inliers (twice), which estimates the tempo to ~0.1 %
   (:mod:`earmark.identify.fit`);
3. counts the *distinct* reference entries that agree (a reference hash matched from several
   rungs of the speed ladder counts once) and cuts the agreeing query times into segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from earmark.identify.fingerprinter import QueryPrints
from earmark.identify.fit import detail, in_window
from earmark.identify.hashes import Hashes
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
    gap_s: float = 5.0  #: no evidence for longer than this in the query ends a segment
    max_matches: int = 10
    #: after the ``max_cells`` best cells, examine as many more ranked by a smoothed
    #: score that adds the cell's neighbours in shift and log scale (3 × 3 × 2 cells: the
    #: window the detail fit collects), one per such window, on the candidates the first
    #: left: finds alignments whose few hits the per-candidate scale and shift spread over
    #: neighbouring cells, and only adds them (``Alignment.extra``) to the plain vote's (a
    #: query's second look, :meth:`~earmark.identify.identifier.Identifier.later`)
    smooth: bool = False


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
    #: candidates of the reference in the query, in any cell (the null level of its score)
    ref_hits: int = 0
    #: spectral agreement with the reference's sketch (:func:`earmark.identify.verify.agreement`),
    #: once the identifier has verified the alignment
    agreement: float | None = None
    #: found in one of the smoothed vote's extra cells (``MatchParams.smooth``): a looser
    #: search's find, which may be reported but is nobody's rival
    extra: bool = False


@dataclass(frozen=True)
class VoteParts:
    """What the vote needs of each candidate that does not depend on the query's length.

    The vote cell's offset is taken at the query's centre, which moves as a live window
    slides; the rest (shift and log-scale bins, the scale itself, the offset at time 0) is
    fixed once the candidate is found, so a live matcher computes it once per candidate
    (:func:`vote_parts`) instead of once per vote.

    Attributes
    ----------
    hi : np.ndarray [shape=(n,), dtype=uint16]
        ``(shift bin & 0xFF) << 8 | (log-scale bin & 0xFF)``.
    scale : np.ndarray [shape=(n,), dtype=float64]
        ``span_ref / span_query``; 0 outside ``[min_scale, max_scale]``.
    o0 : np.ndarray [shape=(n,), dtype=float64]
        ``t_ref − scale · t_query`` (frames), with ``t_query`` in the coordinates the parts
        were computed in.
    t0 : float
        Where the query's frame 0 lies in those coordinates.
    votes : np.ndarray [shape=(n_hashes,), dtype=bool], optional
        Per query hash: whether its candidates vote. The others count only in their
        reference's candidate hits (the null level the confidence model reads), as if their
        scale were out of range. ``None``: every hash votes.
    """

    hi: np.ndarray
    scale: np.ndarray
    o0: np.ndarray
    t0: float = 0.0
    votes: np.ndarray | None = None

    @staticmethod
    def concat(parts: Sequence[VoteParts]) -> VoteParts:
        """The parts of candidates concatenated in this order (all computed with one ``t0``)."""
        return VoteParts(np.concatenate([p.hi for p in parts]),
                         np.concatenate([p.scale for p in parts]),
                         np.concatenate([p.o0 for p in parts]), parts[0].t0)

    def __len__(self) -> int:
        return int(self.hi.size)


def vote_parts(hashes: Hashes, cand: Candidates, params: MatchParams = MatchParams(),
               t0: float = 0.0) -> VoteParts:
    """:class:`VoteParts` of ``cand`` (``qidx`` into ``hashes``, whose times put the
    query's frame 0 at ``t0``)."""
    hi, scale, o0 = _parts(cand.qidx, cand.t, cand.f, cand.span, hashes.t, hashes.f,
                           hashes.span, params.min_scale, params.max_scale, params.shift_bin,
                           params.log_scale_bin)
    return VoteParts(hi, scale, o0, t0)


#: a vote cell's rank among the cells examined: ``(list, -score, cell)``, best first in
#: each list (0: ranked by pair score; 1: the smoothed vote's extra cells)
Rank = tuple[int, int, int]


@dataclass
class RankedAlignments:
    """What :func:`align_ranked` found: the ranks of the cells it examined and the
    alignments they gave, each with its cell's rank (what :func:`merge_ranked` needs to
    merge the votes of several shards into the answer of one)."""

    examined: list[Rank]
    found: list[tuple[Rank, Alignment]]


def align(qp: QueryPrints, cand: Candidates, params: MatchParams = MatchParams(),
          frame_rate: float = 62.5, parts: VoteParts | None = None) -> list[Alignment]:
    """Align candidates into per-reference matches, best first.

    :func:`align_ranked` then :func:`merge_ranked` of that one part; see there for the
    parameters.
    """
    return merge_ranked([align_ranked(qp, cand, params, frame_rate, parts)], params)


def merge_ranked(parts: Sequence[RankedAlignments], params: MatchParams = MatchParams()
                 ) -> list[Alignment]:
    """The alignments of one query from the votes of several index shards, best first.

    A vote cell belongs to one reference, and a shard holds all of a reference's
    candidates, so each shard votes on its own references. The query's answer examines the
    ``max_cells`` best cells of all shards: each of them is among the best ``max_cells`` of
    its own shard, and a shard examines its cells of one reference in rank order, so the
    alignments of those cells are the ones one shard holding everything finds (the others a
    shard examined are dropped). The smoothed vote's extra cells likewise, the best
    ``max_cells`` of them (a cell on both lists counts on the first). Then, as one shard
    does: by score, overlaps of one reference removed, at most ``max_matches``.
    """
    ranks = sorted(r for p in parts for r in p.examined)
    top = set([r for r in ranks if r[0] == 0][: params.max_cells]
              + [r for r in ranks if r[0] == 1][: params.max_cells])
    kept = sorted(((r, a) for p in parts for r, a in p.found if r in top),
                  key=lambda x: x[0])
    results = [a for _, a in kept]
    results.sort(key=lambda r: -r.score)
    plain = _dedupe([a for a in results if not a.extra])[: params.max_matches]
    extra = _dedupe(plain + [a for a in results if a.extra])[len(plain):]
    return plain + extra[: params.max_matches]


def align_ranked(qp: QueryPrints, cand: Candidates, params: MatchParams = MatchParams(),
                 frame_rate: float = 62.5, parts: VoteParts | None = None
                 ) -> RankedAlignments:
    """Vote and align, keeping each alignment's cell rank (see :func:`merge_ranked`).

    Parameters
    ----------
    qp : QueryPrints
        The query's hashes (query coordinates). Hashes before the query's start (negative
        times: a live window's oldest ones, kept to spare a copy) and their candidates are
        not part of it.
    cand : Candidates
        What the index returned for ``qp.hashes.key``.
    parts : VoteParts, optional
        ``cand``'s vote parts when the caller keeps them (see :class:`VoteParts`).

    Returns
    -------
    list of Alignment
        Non-overlapping in (reference, offset); may be empty.
    """
    if len(cand) == 0:
        return RankedAlignments([], [])
    h = qp.hashes
    tc = 0.5 * qp.duration_s * frame_rate
    # 1. coarse vote over (reference, shift, log scale, offset); the offset is taken at the
    #    query's centre so that an error in the per-candidate scale moves it little
    if parts is None:
        parts = vote_parts(h, cand, params)
    votes = _ALL if parts.votes is None else parts.votes.view(np.uint8)
    top_cells, top_pair, top_box, top_group, perm, starts, refs, hits = _vote(
        cand.qidx, cand.ref_key, h.t, parts.hi, parts.scale, parts.o0, tc + parts.t0,
        params.offset_bin, params.min_inliers, params.smooth, votes)
    if top_cells.size == 0:
        return RankedAlignments([], [])
    # the strongest cells, ranked as a stable argsort of the pair scores in cell order
    srt = np.argsort(top_cells, kind="stable")
    srt_pair = srt[top_pair[srt] >= params.min_inliers]
    chosen = srt_pair[np.argsort(-top_pair[srt_pair], kind="stable")[: params.max_cells]]
    listed = np.zeros(top_cells.size, np.int64)  # the rank list of each chosen cell
    if params.smooth:
        # and as many by the smoothed score, one per detail window, examined after them on
        # the candidates they left (so the plain cells' alignments are the plain vote's)
        by_box = srt[np.argsort(-top_box[srt], kind="stable")]
        extra = by_box[_apart(top_cells[by_box], params.max_cells)]
        extra = extra[~np.isin(extra, chosen)]
        listed[extra] = 1
        chosen = np.concatenate([chosen, extra])
    # 2. in detail, on the candidates of the references of those cells only; each reference
    #    is one slice of `sel`, in candidate order
    groups = np.unique(top_group[chosen])
    sel = np.concatenate([perm[starts[g]:starts[g + 1]] for g in groups])
    ends = np.cumsum(starts[groups + 1] - starts[groups])
    slice_of = {int(g): (int(e - starts[g + 1] + starts[g]), int(e))
                for g, e in zip(groups, ends, strict=True)}
    qi = cand.qidx[sel]
    tq = h.t[qi].astype(np.float64)
    tr = cand.t[sel].astype(np.float64)
    scale = cand.span[sel].astype(np.float64) / h.span[qi]  # in range: checked by the vote
    shift = (h.f[qi] - cand.f[sel]).astype(np.float64)
    ls = np.log2(scale)
    off_c = tr - scale * (tq - tc)
    sb = np.floor(shift / params.shift_bin + 0.5).astype(np.int64)
    lb = np.floor(ls / params.log_scale_bin + 0.5).astype(np.int64)
    ob = np.floor(off_c / params.offset_bin).astype(np.int64) + 1024
    examined: list[Rank] = [
        (int(listed[ci]), -int((top_box if listed[ci] else top_pair)[ci]), int(top_cells[ci]))
        for ci in chosen]
    grp = top_group[chosen]
    bounds = np.array([slice_of[int(g)] for g in grp], np.int64).reshape(-1, 2)
    kept, a, s, shift_est, score, good, cut = detail(
        top_cells[chosen].astype(np.int64), bounds[:, 0].copy(), bounds[:, 1].copy(), sb, lb,
        ob, tq, tr, ls, shift, cand.entry[sel].astype(np.int64), params.offset_tol,
        params.min_inliers)
    results: list[tuple[Rank, Alignment]] = []
    for j, ci in enumerate(kept.tolist()):
        # the same reference at another offset is a different match (a repeat in a medley)
        qt = np.sort(tq[good[cut[j]:cut[j + 1]]])
        g = int(grp[ci])
        results.append((examined[ci], Alignment(
            ref_key=int(refs[g]), score=int(score[j]), offset=float(a[j]), scale=float(s[j]),
            shift=float(shift_est[j]), segments=segments_of(qt, params.gap_s * frame_rate),
            q_times=qt.astype(np.float32), ref_hits=int(hits[g]),
            extra=bool(listed[chosen[ci]]))))
    return RankedAlignments(examined, results)


def segments_of(qt: np.ndarray, gap: float) -> list[tuple[float, float]]:
    """Sorted query times (frames) cut where they leave a gap over ``gap`` frames:
    ``[(first, last), ...]``."""
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


# -- the vote -------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ALL = np.zeros(0, np.uint8)  #: ``votes`` of :func:`_vote` when every hash votes


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _parts(qidx, t, f, span, ht, hf, hspan, min_scale, max_scale, shift_bin,
           log_scale_bin):  # pragma: no cover
    """The arrays of :class:`VoteParts` (see there)."""
    n = qidx.size
    hi = np.zeros(n, np.uint16)
    scale_out = np.zeros(n, np.float64)
    o0 = np.zeros(n, np.float64)
    for i in range(n):
        q = qidx[i]
        scale = np.float64(span[i]) / hspan[q]
        if not (scale >= min_scale and scale <= max_scale):
            continue
        sh = np.float64(hf[q] - f[i])
        sb = np.int64(np.floor(sh / shift_bin + 0.5))
        lb = np.int64(np.floor(np.log2(scale) / log_scale_bin + 0.5))
        hi[i] = np.uint16(((sb & 0xFF) << 8) | (lb & 0xFF))
        scale_out[i] = scale
        o0[i] = np.float64(t[i]) - scale * np.float64(ht[q])
    return hi, scale_out, o0


@numba.njit(cache=True, nogil=True)
def _apart(cells, k):  # pragma: no cover
    """Positions of the first ``k`` of ``cells`` (ranked best first) that lie outside the
    detail window (:func:`~earmark.identify.fit.in_window`) of a better kept cell of the
    same reference."""
    keep = np.empty(min(k, cells.size), np.int64)
    m = 0
    for i in range(cells.size):
        c = cells[i]
        ok = True
        for j in range(m):
            d = cells[keep[j]]
            if (d >> 32) != (c >> 32):
                continue
            ds = np.int64(((c >> 24) - (d >> 24) + 128) & 0xFF) - 128
            dl = np.int64(((c >> 16) - (d >> 16) + 128) & 0xFF) - 128
            if in_window(ds, dl, (c & 0xFFFF) - (d & 0xFFFF)):
                ok = False
                break
        if ok:
            keep[m] = i
            m += 1
            if m == keep.size:
                break
    return keep[:m]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _vote(qidx, ref_key, ht, hi, scale, o0, tc, offset_bin, min_inliers,
          smooth=False, votes=_ALL):  # pragma: no cover
    """Count the candidates per vote cell; keep the cells whose score reaches ``min_inliers``.

    A cell is ``ref << 32 | shift bin << 24 | log-scale bin << 16 | offset bin`` (the low
    fields masked to 8, 8 and 16 bits; the offset taken at the query's centre ``tc``, in the
    coordinates of the parts' ``o0``); its pair score adds the count of the cell ``+ 1`` (its
    offset neighbour). The candidates in the scale range are grouped by reference (a counting
    sort), then counted per reference in a small hash table that stays in cache (much
    cheaper than sorting every candidate). Candidates of hashes before the query's start
    (``ht < 0``) are left out.

    With ``smooth``, a cell also gets a box score that adds the cells one shift bin and one
    log-scale bin away (and their offset neighbours): 18 cells, wrapping inside the
    reference; it is kept when that reaches ``min_inliers``.

    ``votes`` (uint8 per query hash, or empty: all vote): candidates of a hash with 0 count
    in their reference's ``hits`` only, like candidates out of the scale range.

    Returns
    -------
    cells, pairs, boxes, group : np.ndarray [dtype=int64]
        The cells kept (in no order), their pair scores, box scores (the pair scores
        without ``smooth``) and the group of their reference.
    perm : np.ndarray [dtype=int32]
        Positions of the candidates in the scale range, grouped by reference, ascending in each.
    starts : np.ndarray [dtype=int64]
        Group ``g`` is ``perm[starts[g]:starts[g + 1]]``.
    refs : np.ndarray [dtype=int64]
        The reference of each group.
    hits : np.ndarray [dtype=int64]
        Candidates of each group's reference in the query, in the scale range or not.
    """
    n = qidx.size
    every = votes.size == 0
    low = np.empty(n, np.uint32)
    rid = np.empty(n, np.int32)  # group of each candidate; −1: not voting
    # one pass: which candidates are in the query, their cells' low fields and the range of
    # their reference keys (memory bound: each pass over the candidates costs about the same)
    lo, top = np.int64(0), np.int64(-1)
    for i in range(n):
        if ht[qidx[i]] < 0:
            rid[i] = -1
            continue
        rid[i] = 0
        r = ref_key[i]
        if top < lo:
            lo, top = r, r
        lo, top = min(lo, r), max(top, r)
        if _voting(scale, votes, qidx, i, every):
            ob = np.int64(np.floor((o0[i] + scale[i] * tc) / offset_bin)) + 1024
            low[i] = np.uint32((np.int64(hi[i]) << 16) | (ob & 0xFFFF))
    if lo >= 0 and top < max(1 << 16, 2 * n):
        # small keys (the usual case): groups numbered in order of first appearance by a
        # plain array, with the reference's null level and its group's size in the same pass
        group = np.full(top + 1, -1, np.int64)
        hits_k = np.zeros(top + 1, np.int64)
        size_k = np.zeros(top + 1, np.int64)
        # (sized for every key: an array grown inside the loop made the pass ~10× slower)
        refs = np.empty(top + 1, np.int64)
        n_ref = 0
        for i in range(n):
            if rid[i] < 0:
                continue
            r = ref_key[i]
            g = group[r]
            if g < 0:
                refs[n_ref] = r
                g = n_ref
                group[r] = g
                n_ref += 1
            hits_k[r] += 1
            if _voting(scale, votes, qidx, i, every):
                size_k[r] += 1
                rid[i] = g
            else:
                rid[i] = -1
        refs = refs[:n_ref]
        hits = hits_k[refs]
        starts = np.zeros(n_ref + 1, np.int64)
        for g in range(n_ref):
            starts[g + 1] = starts[g] + size_k[refs[g]]
    else:
        refs = _number_refs(ref_key, rid)
        n_ref = refs.size
        hits = np.zeros(n_ref, np.int64)
        for i in range(n):  # the reference's null level, then its candidates in the scale range
            if rid[i] >= 0:
                hits[rid[i]] += 1
                if not _voting(scale, votes, qidx, i, every):
                    rid[i] = -1
        starts = np.zeros(n_ref + 1, np.int64)
        for i in range(n):
            if rid[i] >= 0:
                starts[rid[i] + 1] += 1
        for g in range(n_ref):
            starts[g + 1] += starts[g]
    # group by reference, keeping the candidate order inside a group
    fill = starts[:-1].copy()
    perm = np.empty(starts[n_ref], np.int32)  # (half the bytes scattered)
    glow = np.empty(starts[n_ref], np.uint32)
    for i in range(n):
        g = rid[i]
        if g >= 0:
            perm[fill[g]] = i
            glow[fill[g]] = low[i]
            fill[g] += 1
    # count the cells of each reference
    big = 1
    for g in range(n_ref):
        big = max(big, starts[g + 1] - starts[g])
    tb = 4
    while (1 << tb) < 2 * big:
        tb += 1
    keys = np.empty(1 << tb, np.uint32)
    cnt = np.zeros(1 << tb, np.int64)
    used = np.empty(big, np.int64)
    # at most one kept cell per voting candidate (sized once, as ``refs``)
    cells = np.empty(starts[n_ref], np.int64)
    pairs = np.empty(starts[n_ref], np.int64)
    boxes = np.empty(starts[n_ref], np.int64)
    group = np.empty(starts[n_ref], np.int64)
    m = 0
    for g in range(n_ref):
        k = 0
        for p in range(starts[g], starts[g + 1]):
            j = _probe(keys, cnt, glow[p], tb)
            if cnt[j] == 0:
                keys[j] = glow[p]
                used[k] = j
                k += 1
            cnt[j] += 1
        for u in range(k):
            c = keys[used[u]]
            pair = cnt[used[u]]
            if c != 0xFFFFFFFF:
                j = _probe(keys, cnt, np.uint32(c + np.uint32(1)), tb)
                pair += cnt[j]
            else:  # the neighbour is cell 0 of reference + 1 (wrapping, as int64 does)
                for h in range(n_ref):
                    if refs[h] == refs[g] + 1:
                        for p in range(starts[h], starts[h + 1]):
                            pair += glow[p] == 0
            box = pair
            if smooth and cnt[used[u]] >= 2:  # (a lone candidate is most cells: chance)
                box = 0
                for ds in range(-1, 2):
                    for dl in range(-1, 2):
                        for do in range(2):
                            nb = (((np.int64(c >> 24) + ds) & 0xFF) << 24
                                  | ((np.int64(c >> 16) + dl) & 0xFF) << 16
                                  | ((np.int64(c) + do) & 0xFFFF))
                            box += cnt[_probe(keys, cnt, np.uint32(nb), tb)]
            if box < min_inliers:
                continue
            cells[m] = (refs[g] << 32) | np.int64(c)
            pairs[m] = pair
            boxes[m] = box
            group[m] = g
            m += 1
        for u in range(k):
            cnt[used[u]] = 0
    return cells[:m], pairs[:m], boxes[:m], group[:m], perm, starts, refs, hits


@numba.njit(cache=True, nogil=True, inline="always")
def _voting(scale, votes, qidx, i, every):  # pragma: no cover
    """Whether candidate ``i`` votes: in the scale range, and its hash votes (``every``:
    all do)."""
    return scale[i] > 0 and (every or votes[qidx[i]] != 0)


@numba.njit(cache=True, nogil=True)
def _number_refs(ref_key: np.ndarray, rid: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Set ``rid`` to the group of each reference (where ``rid >= 0``); return the references.

    Groups are numbered in order of first appearance, by an open-addressing hash table: for
    reference keys that are negative or too large for the plain array :func:`_vote` numbers
    small ones with.
    """
    n = ref_key.size
    refs = np.empty(n, np.int64)  # (sized once: growing it in the loop slows every pass)
    n_ref = 0
    bits = 5
    slots = np.full(1 << bits, -1, np.int64)
    for i in range(n):
        if rid[i] < 0:
            continue
        r = ref_key[i]
        j = _find(slots, refs, r, bits)
        if slots[j] < 0:
            if 2 * (n_ref + 1) > slots.size:  # grow, then insert
                bits += 1
                slots = np.full(1 << bits, -1, np.int64)
                for g in range(n_ref):
                    slots[_find(slots, refs, refs[g], bits)] = g
                j = _find(slots, refs, r, bits)
            refs[n_ref] = r
            slots[j] = n_ref
            n_ref += 1
        rid[i] = slots[j]
    return refs[:n_ref]


@numba.njit(cache=True, nogil=True, inline="always")
def _find(slots, refs, r, bits):  # pragma: no cover
    """Slot of reference ``r`` in ``slots`` (its group there, or the free slot to take)."""
    mask = (1 << bits) - 1
    j = np.int64((np.uint64(r) * _GOLDEN) >> np.uint64(64 - bits))
    while slots[j] >= 0 and refs[slots[j]] != r:
        j = (j + 1) & mask
    return j


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(keys, cnt, c, bits):  # pragma: no cover
    """Slot of cell ``c`` in the table ``keys``/``cnt`` (a count of 0 is a free slot)."""
    mask = (1 << bits) - 1
    j = np.int64((np.uint64(c) * _GOLDEN) >> np.uint64(64 - bits))
    while cnt[j] != 0 and keys[j] != c:
        j = (j + 1) & mask
    return j
