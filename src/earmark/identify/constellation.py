# SPDX-License-Identifier: Apache-2.0
"""The constellation check: under talk, do the query's peaks land on a reference's own?

A triplet hash needs all three of its peaks. When speech 5 dB louder than the music takes
most of the spectrogram, a query keeps about half of a reference's peaks in the cells the
music still holds, but only a tenth of its triplets: the right reference then gets 2–6 hits
on its line, no more than chance alignments of other references get, and no vote can pick
it out. Its *peaks* survive far better than its triplets, so the check counts them.

Every reference keeps its **constellation**, the peaks the index's triplets were made of
(~13 per second, 4 bytes each: 0.19 MB per audio hour), packed after its sketch
(:mod:`earmark.identify.verify`). A query under talk that nothing matched turns each vote cell
with at least two candidates into a hypothesis (reference, offset, tempo ratio, frequency
shift: the means of its candidates), maps the query's peaks picked among the music's cells
onto the reference's, and weighs each that lands within ``dt`` frames and ``df`` bins of a
reference peak by how close it lands. The right reference's best cell then weighs 15–40, the
best chance cells of a 9.8 h catalog 6–15, and those of *different* references about as
much as each other: the check reports a reference only when its best cell weighs
``min_ratio`` times the best of any other reference (non-catalog queries under speech or
babble: 1.45 at most in 117; catalog queries that the vote missed: mostly 1.6–3.6;
``docs/fingerprint.md``).

Its confidence is a logistic function of that ratio, fitted apart from the benchmark's
queries (:data:`CONFIDENCE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from earmark.identify.match import MatchParams
from earmark.identify.verify import split

T_STEP = 4  #: stored times in quarter frames ...
F_STEP = 256  #: ... and frequencies in 1/256 of a log bin
_GAP = 0xFFFF  #: frequency code of a filler entry that only carries a long time gap

#: the check's confidence, ``1 / (1 + exp(-(a · ln(ratio) + b)))`` (0.5 at ratio 1.48):
#: fitted on the 139 checks of 240 excerpts that are not the benchmark's (catalog side seed
#: 11, non-catalog side seed 13; speech +5 and +0 dB, flite +5 dB, babble 0 dB; 30 each),
#: ``benchmarks/verify/constellation.py``. Non-catalog checks reached 1.45 at most (117)
CONFIDENCE = (14.0, -5.5)


@dataclass(frozen=True)
class ConstellationParams:
    dt: float = 1.5  #: frames: a query peak within this of a reference peak in time ...
    df: float = 1.0  #: ... and this in log bins lands on it
    min_hits: int = 2  #: candidates a vote cell needs to be examined
    max_cells: int = 40000  #: cells examined at most (those with most candidates first)
    refine: int = 256  #: best cells whose tempo is searched (±``scale_steps`` %) and refined
    scale_steps: int = 3
    #: the best cell must weigh this many times the best of any other reference ...
    min_ratio: float = 1.5
    #: ... or of this, whichever is more (a small catalog's chance cells weigh little,
    #: a 9.8 h catalog's best 6–15): no match weighs under ``min_ratio · rival_floor``
    rival_floor: float = 8.0


def pack(t: np.ndarray, f: np.ndarray) -> bytes:
    """Peaks (time in frames, sorted; frequency in log bins) as uint16 time steps in
    quarter frames and uint16 frequencies in 1/256 bin; a gap over 4.5 minutes is bridged
    by filler entries."""
    tq = np.round(np.asarray(t, np.float64) * T_STEP).astype(np.int64)
    fq = np.clip(np.round(np.asarray(f, np.float64) * F_STEP), 0, _GAP - 1).astype(np.int64)
    d = np.diff(tq, prepend=0)
    if d.size and int(d.max()) >= _GAP:
        dd, ff = [], []
        for a, b in zip(d.tolist(), fq.tolist(), strict=True):
            while a >= _GAP:
                dd.append(_GAP - 1)
                ff.append(_GAP)
                a -= _GAP - 1
            dd.append(a)
            ff.append(b)
        d, fq = np.array(dd, np.int64), np.array(ff, np.int64)
    return (np.uint32(d.size).tobytes() + d.astype(np.uint16).tobytes()
            + fq.astype(np.uint16).tobytes())


def unpack(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack`: ``(t, f)`` as float64 frames and bins, sorted by time."""
    n = int(np.frombuffer(blob[:4], np.uint32)[0])
    d = np.frombuffer(blob[4: 4 + 2 * n], np.uint16).astype(np.int64)
    fq = np.frombuffer(blob[4 + 2 * n: 4 + 4 * n], np.uint16)
    t = np.cumsum(d) / T_STEP
    keep = fq != _GAP
    return t[keep].astype(np.float64), fq[keep].astype(np.float64) / F_STEP


def of_blob(blob: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The constellation of a stored sketch blob (:func:`earmark.identify.verify.split`),
    unpacked; None for a blob written before constellations."""
    c = split(blob)[1]
    return None if c is None else unpack(c)


@dataclass
class Hypotheses:
    """Vote cells as alignments to check: a reference peak at ``t_ref = offset + scale ·
    (t − centre)``, ``f_ref = f − shift`` for a query peak at ``(t, f)`` (frames, bins).
    Arrays of shape ``(n,)``, cells with most candidates first."""

    ref_key: np.ndarray
    offset: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    hits: np.ndarray

    def __len__(self) -> int:
        return int(self.ref_key.size)


def hypotheses(ref_key: np.ndarray, hi: np.ndarray, t_ref: np.ndarray, t_query: np.ndarray,
               scale: np.ndarray, shift: np.ndarray, centre: float,
               match: MatchParams = MatchParams(),
               params: ConstellationParams = ConstellationParams()) -> Hypotheses:
    """The vote cells of candidates (reference × the vote's shift and log-scale bins ``hi``
    × offset at the query's ``centre`` in ``match.offset_bin`` frames, as the vote makes
    them: :class:`~earmark.identify.match.VoteParts`) with at least ``min_hits``
    candidates, each as the means of its candidates' anchor times in the reference and the
    query (frames), tempo ratio (0: out of range, left out) and frequency shift (bins)."""
    ok = scale > 0
    ref_key, hi, t_query = ref_key[ok], hi[ok], t_query[ok].astype(np.float64)
    t_ref, scale, shift = t_ref[ok].astype(np.float64), scale[ok], shift[ok]
    if not ref_key.size:
        z = np.zeros(0)
        return Hypotheses(z.astype(np.int64), z, z, z, z, z.astype(np.int64))
    at_centre = t_ref + scale * (centre - t_query)
    cell = ((ref_key.astype(np.int64) << 40) | (hi.astype(np.int64) << 24)
            | (np.floor(at_centre / match.offset_bin + 0.5).astype(np.int64) & 0xFFFFFF))
    order = np.argsort(cell, kind="stable")
    cell = cell[order]
    starts = np.flatnonzero(np.diff(cell, prepend=cell[0] - 1))
    counts = np.diff(np.append(starts, cell.size))
    keep = np.flatnonzero(counts >= params.min_hits)
    keep = keep[np.argsort(-counts[keep], kind="stable")[: params.max_cells]]
    counts = counts[keep]

    def mean(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x[order].astype(np.float64), starts)[keep] / counts

    return Hypotheses(ref_key[order][starts[keep]], mean(t_ref), mean(t_query), mean(scale),
                      mean(shift), counts)


@dataclass
class Found:
    """The check's answer: the reference, where, and how much its peaks say."""

    ref_key: int
    weight: float  #: of its best cell
    rival: float  #: weight of the best cell of any other reference
    landed: int  #: query peaks that land on the reference's peaks
    offset: float  #: reference frame at query frame 0
    scale: float
    shift: float
    q_times: np.ndarray  #: query times of the peaks that land (frames, sorted)
    #: the weight over the rival's, or over :attr:`ConstellationParams.rival_floor`,
    #: whichever is more
    ratio: float

    @property
    def confidence(self) -> float:
        a, b = CONFIDENCE
        return 1.0 / (1.0 + math.exp(-(a * math.log(self.ratio) + b)))


def check(qt: np.ndarray, qf: np.ndarray, hyp: Hypotheses,
          maps: dict[int, tuple[np.ndarray, np.ndarray]],
          params: ConstellationParams = ConstellationParams()) -> Found | None:
    """Weigh every hypothesis by the query peaks ``(qt, qf)`` (frames, bins) that land on
    its reference's constellation (``maps[ref_key] = (t, f)``, :func:`unpack`); the best
    ``refine`` are searched in tempo and refined. None when no hypothesis has a map.

    Returns the best cell's reference with its weight and the best weight of any other
    reference; whether that is a match is the caller's (:attr:`Found.ratio`)."""
    have = np.isin(hyp.ref_key, np.fromiter(maps, np.int64, len(maps)))
    if not have.any() or qt.size == 0:
        return None
    idx = np.flatnonzero(have)
    refs = np.unique(hyp.ref_key[idx])
    rs = np.searchsorted(refs, hyp.ref_key[idx]).astype(np.int64)
    bounds = np.zeros(refs.size + 1, np.int64)
    bounds[1:] = np.cumsum([maps[int(k)][0].size for k in refs])
    rt = np.concatenate([maps[int(k)][0] for k in refs]).astype(np.float64)
    rf = np.concatenate([maps[int(k)][1] for k in refs]).astype(np.float64)
    o = np.argsort(qt, kind="stable")
    qt64, qf64 = np.asarray(qt, np.float64)[o], np.asarray(qf, np.float64)[o]
    off, sc, sh = hyp.offset[idx].copy(), hyp.scale[idx].copy(), hyp.shift[idx].copy()
    cen = hyp.centre[idx]
    w = _weigh_all(rs, off, cen, sc, sh, qt64, qf64, bounds, rt, rf, params.dt, params.df)
    top = np.argsort(-w, kind="stable")[: params.refine]
    _refine(top, rs, off, cen, sc, sh, w, qt64, qf64, bounds, rt, rf, params.dt, params.df,
            params.scale_steps)
    b = int(top[np.argmax(w[top])])
    others = w[top][rs[top] != rs[b]]
    rival = float(others.max()) if others.size else 0.0
    landed = np.zeros(qt64.size, np.bool_)
    z = np.zeros(0)
    n = _weigh(rs[b], off[b], cen[b], sc[b], sh[b], qt64, qf64, bounds, rt, rf, params.dt,
               params.df, z, z, landed)[1]
    return Found(ref_key=int(refs[rs[b]]), weight=float(w[b]), rival=rival, landed=int(n),
                 offset=float(off[b] - sc[b] * cen[b]), scale=float(sc[b]),
                 shift=float(sh[b]), q_times=qt64[landed].astype(np.float32),
                 ratio=float(w[b]) / max(rival, params.rival_floor, 1e-9))


@numba.njit(cache=True, nogil=True)
def _weigh(r, off, cen, s, sh, qt, qf, bounds, rt, rf, dt, df, res_t, res_f,
           landed):  # pragma: no cover
    """Weight of one hypothesis: per query peak, the closest reference peak within the
    tolerance box counts ``exp(-2 e)`` (``e`` its squared distance in tolerance units);
    the residuals of those that land go to ``res_t`` / ``res_f`` (when they have room),
    and ``landed[i]`` is set for each that lands (when ``landed`` has room). Returns
    (weight, peaks landed)."""
    a, b = bounds[r], bounds[r + 1]
    n = 0
    w = 0.0
    if qt.size == 0:
        return w, n
    # the line maps the query's peaks (sorted by time) in order: one search, then a walk
    x = off + s * (qt[0] - cen) - dt
    lo, hi = a, b
    while lo < hi:
        m = (lo + hi) // 2
        if rt[m] < x:
            lo = m + 1
        else:
            hi = m
    for i in range(qt.size):
        tr = off + s * (qt[i] - cen)
        fr = qf[i] - sh
        while lo < b and rt[lo] < tr - dt:
            lo += 1
        best = 1e9
        bt = 0.0
        bf = 0.0
        j = lo
        while j < b and rt[j] <= tr + dt:
            d = abs(rf[j] - fr)
            if d <= df:
                e = (rt[j] - tr) ** 2 / (dt * dt) + d * d / (df * df)
                if e < best:
                    best = e
                    bt = rt[j] - tr
                    bf = rf[j] - fr
            j += 1
        if best < 1e8:
            if n < res_t.size:
                res_t[n] = bt
                res_f[n] = bf
            if i < landed.size:
                landed[i] = True
            n += 1
            w += np.exp(-2.0 * best)
    return w, n


@numba.njit(cache=True, nogil=True)
def _weigh_all(rs, off, cen, sc, sh, qt, qf, bounds, rt, rf, dt, df):  # pragma: no cover
    w = np.zeros(rs.size)
    z = np.zeros(0)
    zb = np.zeros(0, np.bool_)
    for c in range(rs.size):
        w[c] = _weigh(rs[c], off[c], cen[c], sc[c], sh[c], qt, qf, bounds, rt, rf, dt, df,
                      z, z, zb)[0]
    return w


@numba.njit(cache=True, nogil=True)
def _refine(top, rs, off, cen, sc, sh, w, qt, qf, bounds, rt, rf, dt, df,
            steps):  # pragma: no cover
    """For the cells ``top``: the best tempo within ±``steps`` %, then offset and shift
    moved by the median residual of the peaks that land; ``off``, ``sc``, ``sh`` and ``w``
    updated in place."""
    z = np.zeros(0)
    zb = np.zeros(0, np.bool_)
    res_t = np.zeros(qt.size)
    res_f = np.zeros(qt.size)
    for c in top:
        best_n = -1
        best_s = sc[c]
        for k in range(-steps, steps + 1):
            s = sc[c] * (1.0 + 0.01 * k)
            n = _weigh(rs[c], off[c], cen[c], s, sh[c], qt, qf, bounds, rt, rf, dt, df,
                       z, z, zb)[1]
            if n > best_n:
                best_n = n
                best_s = s
        sc[c] = best_s
        n = _weigh(rs[c], off[c], cen[c], sc[c], sh[c], qt, qf, bounds, rt, rf, dt, df,
                   res_t, res_f, zb)[1]
        if n >= 3:
            off[c] += np.median(res_t[:n])
            sh[c] -= np.median(res_f[:n])
        w[c] = _weigh(rs[c], off[c], cen[c], sc[c], sh[c], qt, qf, bounds, rt, rf, dt, df,
                      z, z, zb)[0]

