# SPDX-License-Identifier: Apache-2.0
"""The vote of alignment (``identify/match.py``) on generated candidate sets: the smoothed
vote of hard queries finds a line whose few hits the per-candidate scale and shift spread
over neighbouring cells."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.identify.fingerprinter import QueryPrints
from earmark.identify.hashes import Hashes
from earmark.identify.match import MatchParams, align
from earmark.index.base import Candidates

TEMPO = 2.0 ** 0.04  #: the true line's slope: on the edge of two log-scale cells
SPAN = 20.0


def _line(ref: int, n: int, offset: float, t0: int, *, spread: bool = True
          ) -> tuple[Hashes, Candidates]:
    """``n`` query hashes whose candidates of ``ref`` lie on ``t_ref = offset + TEMPO·t_q``;
    with ``spread``, their spans and frequencies jitter across two log-scale cells and two
    shift cells (as real triplets' do around a cell edge)."""
    i = np.arange(n)
    tq = np.linspace(10, 300, n).astype(np.float32)
    fq = (60 + i % 7).astype(np.float32)
    shift = np.where(i % 2 == 0, 0.9, 1.1) if spread else np.full(n, 0.0)
    ls = np.where((i // 2) % 2 == 0, 0.035, 0.045) if spread else np.full(n, 0.04)
    h = Hashes(np.arange(t0, t0 + n, dtype=np.uint32), tq, fq, np.full(n, SPAN, np.float32))
    c = Candidates(qidx=(t0 + i).astype(np.int64), ref_key=np.full(n, ref, np.int64),
                   entry=(ref * 1000 + i).astype(np.int64),
                   t=(offset + TEMPO * tq).astype(np.float32),
                   f=(fq - shift).astype(np.float32),
                   span=(SPAN * 2.0 ** ls).astype(np.float32))
    return h, c


def _query(*parts: tuple[Hashes, Candidates]) -> tuple[QueryPrints, Candidates]:
    hs = Hashes.concat([h for h, _ in parts])
    qp = QueryPrints(hs, np.ones(len(hs), np.float32), duration_s=5.0, n_peaks=len(hs))
    return qp, Candidates.concat([c for _, c in parts])


def _chance(rng: np.random.Generator, n: int, t0: int) -> tuple[Hashes, Candidates]:
    """Candidates of 30 other references, scattered in time, shift and scale."""
    tq = rng.uniform(0, 312, n).astype(np.float32)
    fq = rng.uniform(20, 150, n).astype(np.float32)
    h = Hashes(np.arange(t0, t0 + n, dtype=np.uint32), tq, fq,
               rng.uniform(8, 40, n).astype(np.float32))
    c = Candidates(qidx=np.arange(t0, t0 + n, dtype=np.int64),
                   ref_key=rng.integers(100, 130, n).astype(np.int64),
                   entry=np.arange(n, dtype=np.int64) + 10**6,
                   t=rng.uniform(0, 20000, n).astype(np.float32),
                   f=rng.uniform(20, 150, n).astype(np.float32),
                   span=rng.uniform(8, 40, n).astype(np.float32))
    return h, c


@settings(max_examples=30, deadline=None)
@given(delta=st.floats(-400, 400), seed=st.integers(0, 2**16))
def test_the_smoothed_vote_finds_a_spread_line_and_its_offset_moves_with_it(
        delta: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    line = _line(7, 10, 504.0 + delta, 0)
    qp, cand = _query(line, _chance(rng, 400, 10))
    # each of the four (shift, scale) cells holds 2-3 of the 10 hits: below min_inliers
    assert not [a for a in align(qp, cand, MatchParams()) if a.ref_key == 7]
    found = [a for a in align(qp, cand, MatchParams(smooth=True)) if a.ref_key == 7]
    assert len(found) == 1
    a = found[0]
    assert a.score == 10
    assert abs(a.offset - (504.0 + delta)) < 1.0  # the query shifted by Δ → offset by Δ
    assert abs(a.scale - TEMPO) < 0.002 and abs(a.shift - 1.0) < 0.11


def test_a_strong_lines_neighbour_cells_do_not_take_the_examined_slots() -> None:
    # reference 7: 40 hits spread over eight cells, each of which the smoothed vote scores
    # ~40; reference 9: 8 hits in one cell. Two cells are examined: without suppression
    # both would be reference 7's
    strong = _line(7, 40, 504.0, 0)
    weak = _line(9, 8, 2000.0, 40, spread=False)
    qp, cand = _query(strong, weak)
    refs = {a.ref_key for a in align(qp, cand, MatchParams(smooth=True, max_cells=2))}
    assert refs == {7, 9}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_the_smoothed_vote_only_adds_to_the_plain_alignments(seed: int) -> None:
    """The extra cells are fitted on the candidates the plain cells left, and their
    alignments come after the plain ones: what the plain vote found stands unchanged."""
    rng = np.random.default_rng(seed)
    qp, cand = _query(_line(9, 12, 2000.0, 0, spread=False), _line(7, 10, 504.0, 12),
                      _chance(rng, 600, 22))
    plain = align(qp, cand, MatchParams())
    both = align(qp, cand, MatchParams(smooth=True))
    key = [(a.ref_key, a.score, a.offset, a.scale, a.shift) for a in plain]
    assert [(a.ref_key, a.score, a.offset, a.scale, a.shift)
            for a in both if not a.extra] == key
    assert not any(a.extra for a in plain)
    assert any(a.extra and a.ref_key == 7 for a in both)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), smooth=st.booleans())
def test_the_vote_counts_the_same_whatever_the_reference_keys(seed: int, smooth: bool) -> None:
    """Small reference keys are grouped by a plain array in one pass, others by a hash table
    (``_number_refs``): renaming every reference by a large constant changes nothing but the
    reference field of the cells (hashes before the query's start and candidates out of the
    scale range included)."""
    from earmark.identify.match import _vote, vote_parts

    rng = np.random.default_rng(seed)
    n_h, n_c = 300, 4000
    t = np.sort(rng.uniform(-40, 400, n_h)).astype(np.float32)  # some before the start
    h = Hashes(rng.integers(0, 2**32, n_h, dtype=np.uint32), t,
               rng.uniform(20, 150, n_h).astype(np.float32),
               rng.uniform(5, 40, n_h).astype(np.float32))
    qidx = np.sort(rng.integers(0, n_h, n_c)).astype(np.int64)
    ref_key = rng.integers(0, 12, n_c).astype(np.int64)
    line = rng.random(n_c) < 0.3  # a third on lines: cells that reach min_inliers
    tr = np.where(line, 500.0 + ref_key * 7 + h.t[qidx], rng.uniform(0, 3000, n_c))
    span = np.where(rng.random(n_c) < 0.1, h.span[qidx] * 5.0, h.span[qidx])  # out of range
    c = Candidates(qidx=qidx, ref_key=ref_key, entry=np.arange(n_c, dtype=np.int64),
                   t=tr.astype(np.float32), f=h.f[qidx], span=span.astype(np.float32))
    p = MatchParams(smooth=smooth)
    parts = vote_parts(h, c, p)

    def run(keys: np.ndarray) -> tuple[np.ndarray, ...]:
        return _vote(c.qidx, keys, h.t, parts.hi, parts.scale, parts.o0, 200.0,
                     p.offset_bin, p.min_inliers, smooth)

    big = np.int64(3 << 20)  # above both limits of the plain array (2**16 and 2 n)
    a, b = run(c.ref_key), run(c.ref_key + big)
    assert a[0].size > 0
    order_a, order_b = np.argsort(a[0]), np.argsort(b[0] - (big << 32))
    np.testing.assert_array_equal(a[0][order_a], (b[0] - (big << 32))[order_b])
    for x, y in zip(a[1:4], b[1:4], strict=True):  # pairs, boxes, groups
        np.testing.assert_array_equal(x[order_a], y[order_b])
    for x, y in zip(a[4:6], b[4:6], strict=True):  # perm, starts
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[6] + big, b[6])  # refs
    np.testing.assert_array_equal(a[7], b[7])  # hits
    assert a[7].sum() == np.count_nonzero(h.t[c.qidx] >= 0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), smooth=st.booleans())
def test_hashes_that_do_not_vote_count_only_in_their_references_hits(seed: int,
                                                                     smooth: bool) -> None:
    """``votes`` (the live matcher's near-rungs votes): every hash voting is the same as no
    flag; a hash that does not vote leaves the cells as if its candidates were out of the
    scale range, and still counts in its reference's hits."""
    from earmark.identify.match import _vote, vote_parts

    rng = np.random.default_rng(seed)
    n_h, n_c = 300, 4000
    t = np.sort(rng.uniform(-40, 400, n_h)).astype(np.float32)
    h = Hashes(rng.integers(0, 2**32, n_h, dtype=np.uint32), t,
               rng.uniform(20, 150, n_h).astype(np.float32),
               rng.uniform(5, 40, n_h).astype(np.float32))
    qidx = np.sort(rng.integers(0, n_h, n_c)).astype(np.int64)
    ref_key = rng.integers(0, 12, n_c).astype(np.int64)
    line = rng.random(n_c) < 0.3
    tr = np.where(line, 500.0 + ref_key * 7 + h.t[qidx], rng.uniform(0, 3000, n_c))
    c = Candidates(qidx=qidx, ref_key=ref_key, entry=np.arange(n_c, dtype=np.int64),
                   t=tr.astype(np.float32), f=h.f[qidx], span=h.span[qidx])
    p = MatchParams(smooth=smooth)
    parts = vote_parts(h, c, p)
    votes = rng.random(n_h) < 0.6

    def run(scale: np.ndarray, v: np.ndarray | None) -> tuple[np.ndarray, ...]:
        extra = () if v is None else (v.astype(np.uint8),)
        return _vote(c.qidx, c.ref_key, h.t, parts.hi, scale, parts.o0, 200.0,
                     p.offset_bin, p.min_inliers, smooth, *extra)

    def same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
        oa, ob = np.argsort(a[0]), np.argsort(b[0])
        for x, y in zip(a[:4], b[:4], strict=True):
            np.testing.assert_array_equal(x[oa], y[ob])
        for x, y in zip(a[4:], b[4:], strict=True):
            np.testing.assert_array_equal(x, y)

    same(run(parts.scale, None), run(parts.scale, np.ones(n_h, bool)))
    flagged = run(parts.scale, votes)
    same(flagged, run(np.where(votes[c.qidx], parts.scale, 0.0), None))
    assert flagged[7].sum() == np.count_nonzero(h.t[c.qidx] >= 0)  # hits: every candidate
    assert np.isin(flagged[4], np.nonzero(votes[c.qidx])[0]).all()  # only voting ones grouped
