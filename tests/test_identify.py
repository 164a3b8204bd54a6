# SPDX-License-Identifier: Apache-2.0
"""Fingerprint and matcher properties on generated music (no files, real index on disk)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.audio import effects
from earmark.audio.generators import synth_music, synth_speech_like
from earmark.identify.fingerprinter import TripletFingerprinter, speed_ladder
from earmark.identify.hashes import triplet_hashes
from earmark.identify.identifier import Identification, Identifier
from earmark.identify.peaks import PeakParams, Peaks, _maxima
from earmark.index.base import IndexItem
from earmark.index.segments import SegmentIndex

SR = 8000
FP = TripletFingerprinter()
N_REFS = 6
REF_S = 40.0


@pytest.fixture(scope="module")
def refs() -> list[np.ndarray]:
    return [synth_music(sr=SR, duration=REF_S, rng=np.random.default_rng(100 + i))
            for i in range(N_REFS)]


@pytest.fixture(scope="module")
def ident(refs: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Identifier:
    idx = SegmentIndex(tmp_path_factory.mktemp("index"), fingerprint="triplet-1")
    items = []
    for i, y in enumerate(refs):
        h, n = FP.reference([y])
        items.append(IndexItem(i, h, 1 + n // FP.spec.hop))
    idx.add(items)
    return Identifier(shards=[idx], fingerprinter=FP)


def _top(res: Identification) -> tuple[int, float, float, float, float]:
    assert res.status == "match", res
    m = res.matches[0]
    s = m.segments[0]
    ref_at_q0 = s.ref_start_ms - s.query_start_ms * s.tempo_ratio
    return m.ref_key, ref_at_q0, s.speed_ratio, s.pitch_semitones, s.tempo_ratio


def test_chunked_reference_peaks_equal_one_piece(refs: list[np.ndarray]) -> None:
    y = refs[0]
    whole, n = TripletFingerprinter(chunk_blocks=10**6).reference_peaks([y])
    for block in (777, 8000, 40001):
        small_chunks = TripletFingerprinter(chunk_blocks=3)
        pk, n2 = small_chunks.reference_peaks([y[i:i + block] for i in range(0, y.size, block)])
        assert n2 == n
        np.testing.assert_array_equal(pk.t, whole.t)
        np.testing.assert_array_equal(pk.f, whole.f)


@given(seed=st.integers(0, 10**6), rows=st.integers(3, 90), ties=st.booleans(),
       holes=st.booleans())
@settings(max_examples=60, deadline=None)
def test_local_maxima_are_those_of_a_maximum_filter(seed: int, rows: int, ties: bool,
                                                    holes: bool) -> None:
    from scipy import ndimage

    p = PeakParams()
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 6.0, (rows, 60)).astype(np.float32)
    if ties:  # equal neighbours: both are maxima
        W = np.round(W / 3.0).astype(np.float32) * 3
    if holes:  # masked cells (-inf) neither peak nor suppress
        W[rng.random(W.shape) < 0.3] = -np.inf
    S = rng.uniform(-90.0, 0.0, W.shape).astype(np.float32)
    r0 = int(rng.integers(0, rows))
    r1 = int(rng.integers(r0, rows + 3))
    mx = ndimage.maximum_filter(W, size=(2 * p.time_radius + 1, 2 * p.freq_radius + 1),
                                mode="constant", cval=-np.inf)
    cand = (W == mx) & (p.min_contrast_db < W) & (p.floor_db < S)
    cand[[0, -1], :] = False
    cand[:, [0, -1]] = False
    cand[:r0] = False
    cand[r1:] = False
    ti, fi = _maxima(W, S, p.time_radius, p.freq_radius, np.float32(p.min_contrast_db),
                     np.float32(p.floor_db), r0, r1)
    want = np.nonzero(cand)
    np.testing.assert_array_equal(ti, want[0])
    np.testing.assert_array_equal(fi, want[1])


@given(shift=st.integers(-30, 30))
@settings(max_examples=25, deadline=None)
def test_hashes_are_invariant_to_a_frequency_shift(shift: int) -> None:
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 600, 400)).astype(np.float32)
    f = rng.uniform(40, 140, 400).astype(np.float32)
    s = rng.uniform(3, 20, 400).astype(np.float32)
    a = triplet_hashes(Peaks(t, f, s))
    b = triplet_hashes(Peaks(t, f + np.float32(shift), s))
    assert len(a) > 500
    assert np.mean(a.key == b.key) > 0.99
    np.testing.assert_allclose(b.f - a.f, shift, atol=1e-3)


def test_speed_ladder_covers_half_to_double() -> None:
    lad = speed_ladder()
    assert lad[0] == 0.5 and lad[-1] == 2.0
    assert max(b / a for a, b in itertools.pairwise(lad)) < 1.27


@given(start=st.floats(2.0, 25.0), delta=st.floats(0.3, 8.0))
@settings(max_examples=6, deadline=None)
def test_shifting_the_query_moves_the_offset_by_the_same_amount(
    ident: Identifier, refs: list[np.ndarray], start: float, delta: float
) -> None:
    y = refs[2]
    a = _top(ident.identify(y[int(start * SR): int((start + 5) * SR)]))
    b = _top(ident.identify(y[int((start + delta) * SR): int((start + delta + 5) * SR)]))
    assert a[0] == b[0] == 2
    assert abs(a[1] - start * 1000) < 40
    assert abs((b[1] - a[1]) - delta * 1000) < 40


@pytest.mark.parametrize("v", [0.6, 0.8, 1.25, 1.5, 1.9])
def test_a_speed_change_is_reported_as_that_speed(
    ident: Identifier, refs: list[np.ndarray], v: float
) -> None:
    start = 10.0
    seg = refs[3][int(start * SR): int((start + 5 * v + 1) * SR)]
    q = effects.speed(seg, SR, v)[: 5 * SR]
    key, at0, speed, pitch, tempo = _top(ident.identify(q))
    assert key == 3
    assert abs(speed - v) / v < 0.01
    assert abs(tempo - v) / v < 0.01
    assert abs(pitch - 12 * np.log2(v)) < 0.3
    assert abs(at0 - start * 1000) < 60


@pytest.mark.parametrize("semitones", [-5.0, -3.0, 4.0, 7.0])
def test_a_pitch_shift_is_reported_apart_from_tempo(
    ident: Identifier, refs: list[np.ndarray], semitones: float
) -> None:
    seg = refs[1][8 * SR: 14 * SR]
    q = effects.pitch_shift(seg, SR, semitones, engine="rubberband")[: 5 * SR]
    key, _, speed, pitch, tempo = _top(ident.identify(q))
    assert key == 1
    assert abs(pitch - semitones) < 0.4
    assert abs(tempo - 1.0) < 0.02
    assert speed == 1.0


@pytest.mark.parametrize("ratio", [0.6, 1.2, 1.8])
def test_a_time_stretch_is_reported_as_tempo(
    ident: Identifier, refs: list[np.ndarray], ratio: float
) -> None:
    seg = refs[4][5 * SR: int((5 + 5 * ratio + 1) * SR)]
    q = effects.time_stretch(seg, SR, ratio)[: 5 * SR]
    key, _, speed, pitch, tempo = _top(ident.identify(q))
    assert key == 4
    assert abs(tempo - ratio) / ratio < 0.03
    assert abs(pitch) < 0.4
    assert speed == 1.0


def test_noise_speech_and_codec_chains(ident: Identifier, refs: list[np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    seg = refs[5][12 * SR: 20 * SR]
    speech = synth_speech_like(sr=SR, duration=8.0, rng=rng)
    noisy = effects.add_noise(seg, SR, 5.0, rng=rng)[: 5 * SR]
    talked = effects.mix_over(seg, speech, -5.0)[: 5 * SR]
    chained = effects.codec(effects.mix_over(effects.speed(seg, SR, 1.25), speech[:
                            int(seg.size / 1.25)], -3.0), SR, "mp3", 64)[: 5 * SR]
    for q in (noisy, talked, chained):
        assert _top(ident.identify(q))[0] == 5


def test_a_medley_reports_every_reference_in_order(
    ident: Identifier, refs: list[np.ndarray]
) -> None:
    q = np.concatenate([refs[0][5 * SR: 12 * SR], effects.speed(refs[4][20 * SR: 29 * SR],
                                                                SR, 1.2)])
    res = ident.identify(q)
    got = {m.ref_key: m for m in res.matches}
    assert {0, 4} <= set(got)
    assert got[0].segments[0].query_start_ms < 1000
    assert abs(got[4].segments[0].query_start_ms - 7000) < 1200
    assert abs(got[4].segments[0].speed_ratio - 1.2) < 0.02


def test_music_not_in_the_catalog_is_no_match(ident: Identifier) -> None:
    # generated pieces share scales, chord progressions and 4/4 grids, which tempo and pitch
    # invariance can line up: a few seeds reach chance scores near the threshold (see
    # docs/fingerprint.md, "Known weaknesses"); these four are plain cases
    for seed in range(4):
        other = synth_music(sr=SR, duration=8.0, rng=np.random.default_rng(900 + seed))
        res = ident.identify(other)
        assert res.status == "no_match" and res.reason == "no_candidate"
        assert res.matches == []


def test_no_match_reasons(ident: Identifier, refs: list[np.ndarray]) -> None:
    assert ident.identify(refs[0][: SR // 2]).reason == "too_short"
    assert ident.identify(np.zeros(5 * SR, np.float32)).reason == "too_little_signal"


def test_index_is_reopened_with_identical_answers(ident: Identifier, refs: list[np.ndarray],
                                                   tmp_path: Path) -> None:
    shard = ident.shards[0]
    assert isinstance(shard, SegmentIndex)
    again = SegmentIndex(shard.path, fingerprint="triplet-1")
    q = refs[2][3 * SR: 8 * SR]
    a = _top(ident.identify(q))
    b = _top(Identifier(shards=[again], fingerprinter=FP).identify(q))
    assert a == b


@pytest.mark.parametrize("edit", ["reverb", "phone", "opus 24", "aac 32"])
def test_room_phone_and_codec_edits(ident: Identifier, refs: list[np.ndarray], edit: str) -> None:
    rng = np.random.default_rng(8)
    seg = refs[0][15 * SR: 21 * SR]
    q = {
        "reverb": lambda: effects.reverb(seg, SR, rt60=1.0, wet=0.4, rng=rng),
        "phone": lambda: effects.phone_band(seg, SR),
        "opus 24": lambda: effects.codec(seg, SR, "opus", 24),
        "aac 32": lambda: effects.codec(seg, SR, "aac", 32),
    }[edit]()[: 5 * SR]
    key, at0, speed, _, tempo = _top(ident.identify(q))
    assert key == 0
    assert abs(at0 - 15000) < 60
    assert abs(tempo - 1.0) < 0.01 and speed == pytest.approx(1.0, abs=0.01)


def test_cover_spans_the_query_and_old_models_ignore_it(ident: Identifier,
                                                         refs: list[np.ndarray]) -> None:
    from earmark.identify.calibrate import Calibration
    from earmark.identify.identifier import cover

    q = refs[2][10 * SR: 16 * SR]
    res = ident.identify(q)
    top = max(res.raw, key=lambda a: a.score)
    assert top.ref_key == 2
    assert cover(top, 6.0 * FP.frame_rate) > 0.6  # a true match spreads over the query
    old = Calibration(weights=[1.0, 1.0, 0.1], bias=-3.0)
    assert old.probability(20, 400, 3, cover=0.9) == old.probability(20, 400, 3, cover=0.1)
    new = Calibration(weights=[1.0, 1.0, 0.1, 2.0], bias=-3.0)
    assert new.probability(20, 400, 3, cover=0.9) > new.probability(20, 400, 3, cover=0.1)


@given(tempo=st.floats(0.5, 2.0), pitch=st.floats(-12.0, 12.0))
def test_edit_distance_is_zero_on_single_edits_and_counts_semitones_off_them(
        tempo: float, pitch: float) -> None:
    """Speed changes, pitch shifts and time stretches lie at distance 0; a transform off all
    three lies as far as its nearest one (capped), and only a model with the fifth weight
    reads it."""
    from earmark.identify.calibrate import EDIT_DISTANCE_CAP, Calibration, edit_distance

    lt = 12.0 * np.log2(tempo)
    assert edit_distance(tempo, lt) == pytest.approx(0.0, abs=1e-9)  # speed change
    assert edit_distance(1.0, pitch) == pytest.approx(0.0, abs=1e-9)  # pitch shift
    assert edit_distance(tempo, 0.0) == pytest.approx(0.0, abs=1e-9)  # time stretch
    d = edit_distance(tempo, pitch)
    assert 0.0 <= d <= EDIT_DISTANCE_CAP
    # worked examples: 12·log2(1.1) = 1.650 → speed line 0.350 away; 12·log2(0.8) = −3.863
    assert edit_distance(1.1, 2.0) == pytest.approx(0.350, abs=1e-3)
    assert edit_distance(0.8, -3.0) == pytest.approx(0.863, abs=1e-3)
    assert edit_distance(1.2, -3.0) == EDIT_DISTANCE_CAP  # 3.16 / 3 / 6.16 away: capped
    four = Calibration(weights=[1.0, 1.0, 0.1, 2.0], bias=-3.0)
    five = Calibration(weights=[1.0, 1.0, 0.1, 2.0, -3.0], bias=-3.0)
    assert four.probability(20, 400, 3, 0.8, tempo, pitch) == four.probability(20, 400, 3, 0.8)
    if d > 0.01:
        assert five.probability(20, 400, 3, 0.8, tempo, pitch) < five.probability(20, 400, 3, 0.8)


def test_a_speed_change_reads_as_a_single_edit(ident: Identifier, refs: list[np.ndarray]
                                               ) -> None:
    """The sign conventions the feature relies on: a sped-up query's best alignment has
    tempo > 1 and pitch = 12·log2(tempo), so it lies on the speed line (distance ~0)."""
    from earmark.identify.calibrate import edit_distance

    y = refs[1][8 * SR: 16 * SR]
    q = effects.speed(y, SR, 1.2)[: 5 * SR]
    top = max(ident.identify(q).raw, key=lambda a: a.score)
    pitch = top.shift * 12.0 / FP.bins_per_octave
    assert abs(top.scale - 1.2) < 0.02
    assert edit_distance(top.scale, pitch) < 0.35


def test_the_confidence_reads_the_transform_of_the_alignment(ident: Identifier,
                                                              refs: list[np.ndarray]) -> None:
    """Pitch −3 with tempo 1.2 is no single edit: the reported confidence is the model's
    probability at that transform, lower than it would be at tempo 1, pitch 0."""
    from earmark.identify.calibrate import Calibration
    from earmark.identify.identifier import cover, runner_up

    model = Calibration(weights=[1.0, 1.0, 0.5, 4.0, -2.0], bias=-8.0, threshold=0.0)
    y = refs[3][8 * SR: 18 * SR]
    q = effects.time_stretch(effects.pitch_shift(y, SR, -3.0, engine="rubberband"), SR, 1.2)
    res = replace(ident, calibration=model).identify(q[: 5 * SR])
    m = res.matches[0]
    a = next(a for a in res.raw if a.ref_key == m.ref_key and a.score == m.score
             and abs(a.scale - m.segments[0].tempo_ratio) < 1e-3)
    assert m.ref_key == 3 and abs(m.segments[0].tempo_ratio - 1.2) < 0.03
    args = (a.score, a.ref_hits, runner_up(a, res.raw), cover(a, 5.0 * FP.frame_rate))
    at = model.probability(*args, tempo=a.scale, pitch=a.shift * 12.0 / FP.bins_per_octave)
    assert m.confidence == pytest.approx(at, abs=1e-4)
    assert at < model.probability(*args)


def test_talk_over_companions_join_the_plain_candidates_like_one_pass(
        refs: list[np.ndarray], ident: Identifier) -> None:
    """When the plain hashes find no confident match, the identifier looks the talk-over
    companions up alone and joins them to the plain candidates: the alignments must be those
    of one pass over both sets of hashes (a wrong offset of the joined query indices would
    move or lose them)."""
    from dataclasses import replace

    from earmark.identify.calibrate import Calibration

    fp = TripletFingerprinter(speech_gate=0.0)  # companions on every query
    never = Calibration(weights=[0.0, 0.0, 0.0], bias=0.0, threshold=1.01)  # stage 2 always
    staged = replace(ident, fingerprinter=fp, calibration=never)
    y = refs[2][8 * SR: 14 * SR]
    talk = effects.mix_over(y, synth_speech_like(sr=SR, duration=6.0,
                                                 rng=np.random.default_rng(5)), -5.0)
    got = staged.identify(talk)
    qp = fp.query(talk)
    one = staged.later().identify_prints(qp, staged.lookup(qp.hashes.key))  # a second look
    assert got.raw, "no alignment at all"
    assert [(a.ref_key, a.score, round(a.offset), round(a.scale, 3)) for a in got.raw] == \
        [(a.ref_key, a.score, round(a.offset), round(a.scale, 3)) for a in one.raw]
    assert got.raw[0].ref_key == 2


def test_an_alias_of_the_same_reference_is_a_rival_a_repeat_is_not() -> None:
    """The runner-up of an alignment counts other references and the same reference under
    another transform (a fifth away: harmonic music invites such aliases), not the same
    reference under the same transform at another offset (a repeated chorus)."""
    from earmark.identify.identifier import runner_up
    from earmark.identify.match import Alignment

    def al(ref: int, score: int, shift: float, scale: float, q0: float, q1: float,
           offset: float = 0.0) -> Alignment:
        return Alignment(ref_key=ref, score=score, offset=offset, scale=scale, shift=shift,
                         q_times=np.linspace(q0, q1, 8).astype(np.float32))

    true = al(7, 98, 0.0, 1.0, 250, 460)
    alias = al(7, 29, -21.0, 1.074, 30, 440)  # 7 semitones down, over the same query time
    repeat = al(7, 60, 0.5, 1.01, 300, 450, offset=2000.0)
    other = al(3, 12, 4.0, 1.2, 100, 200)
    far = al(4, 50, 0.0, 1.0, 600, 700)  # another reference, but later in the query
    everything = [true, alias, repeat, other, far]
    assert runner_up(alias, everything) == 98
    assert runner_up(true, everything) == 29
    assert runner_up(repeat, everything) == 29
    assert runner_up(other, everything) == 29  # only the alias overlaps it in query time
    assert runner_up(far, everything) == 0


def test_talk_over_gate_can_be_set_by_the_caller(refs: list[np.ndarray]) -> None:
    """The live matcher gates on its newest seconds and asks for the whole window's
    companions with ``gate=0``: a gate no mask can pass gives none, gate 0 always some."""
    y = refs[4][5 * SR: 13 * SR]
    assert FP.talk_over(y, gate=1.01) is None
    extra = FP.talk_over(y, gate=0.0)
    assert extra is not None and len(extra.hashes) > 0
    assert (FP.speech_cells(y, gate=0.0) is not None) and FP.speech_cells(y, gate=1.01) is None


def test_rungs_in_threads_give_the_hashes_of_rungs_in_turn(refs: list[np.ndarray]) -> None:
    """The speed ladder fingerprinted on two threads (the default on a multi-core machine)
    gives the same prints, in the same order, as one thread — plain and talk-over alike."""
    y = refs[0][5 * SR: 10 * SR] + 0.8 * synth_speech_like(
        sr=SR, duration=5.0, rng=np.random.default_rng(3))[: 5 * SR]
    y = y.astype(np.float32)
    one = TripletFingerprinter(threads=1)
    two = replace(one, threads=2)
    for a, b in ((one.query_plain(y), two.query_plain(y)),
                 (one.talk_over(y, gate=0.0), two.talk_over(y, gate=0.0))):
        assert a is not None and b is not None and len(a.hashes) > 100
        assert np.array_equal(a.hashes.key, b.hashes.key)
        assert np.array_equal(a.hashes.t, b.hashes.t) and np.array_equal(a.speed, b.speed)
        assert a.n_peaks == b.n_peaks


def test_threaded_lookup_gives_the_rows_and_answer_of_one_pass(
        ident: Identifier, refs: list[np.ndarray]) -> None:
    """Looking up and parting the query's hashes in two halves on two threads gives the
    candidates and vote parts of one pass, row for row, and so the same identification."""
    from earmark.identify.match import vote_parts

    y = effects.speed(refs[2][4 * SR: 14 * SR], SR, 1.2).astype(np.float32)
    one = replace(ident, fingerprinter=replace(FP, threads=1))
    two = replace(ident, fingerprinter=replace(FP, threads=2))
    qp = one.fingerprinter.query_plain(y)
    assert len(qp.hashes) > 4096  # two parts
    cand = one.lookup(qp.hashes.key)
    parts = vote_parts(qp.hashes, cand, one.params)
    c2, p2 = two.lookup_parts(qp.hashes)
    for a in ("qidx", "ref_key", "entry", "t", "f", "span"):
        assert np.array_equal(getattr(cand, a), getattr(c2, a)), a
    for a in ("hi", "scale", "o0"):
        assert np.array_equal(getattr(parts, a), getattr(p2, a)), a
    r1, r2 = one.identify(y), two.identify(y)
    assert r1.status == "match" and r1.matches[0].ref_key == 2
    assert [(m.ref_key, m.confidence, m.score) for m in r1.matches] == \
        [(m.ref_key, m.confidence, m.score) for m in r2.matches]


def test_the_near_rungs_settle_plain_queries_and_the_far_rungs_find_the_rest(
        ident: Identifier, refs: list[np.ndarray]) -> None:
    """A query is first fingerprinted on the rungs near speed 1 only; a confident match
    that covers the query stands (the answer one pass over every rung gives), anything
    else gets the far rungs too: a query sped up 1.8 is found at 1.8, and a query with no
    match gets the alignments of one pass over every rung."""
    every = replace(ident, first_speeds=None)
    near, far = ident.first_rungs()
    assert near and far and set(near) | set(far) == set(FP.ladder)
    assert all(0.75 <= v <= 1.34 for v in near)
    plain = refs[1][9 * SR: 14 * SR]
    a, b = ident.identify(plain), every.identify(plain)
    assert ident.settled(a)
    assert _top(a)[0] == _top(b)[0] == 1 and abs(_top(a)[1] - _top(b)[1]) < 40
    fast = effects.speed(refs[3][6 * SR: 15 * SR], SR, 1.8)[: 5 * SR]
    key, ref_at_q0, speed, _, _ = _top(ident.identify(fast))
    assert key == 3 and abs(speed - 1.8) < 0.03 and abs(ref_at_q0 - 6000) < 100
    other = synth_music(sr=SR, duration=5.0, rng=np.random.default_rng(901))
    # (unsettled, its decision is a second look: ``later``'s smoothed vote)
    a, b = ident.identify(other), replace(every.later(), first_speeds=None).identify(other)
    assert a.status == b.status == "no_match"
    assert sorted((x.ref_key, x.score) for x in a.raw) == \
        sorted((x.ref_key, x.score) for x in b.raw)


def test_a_medley_half_sped_up_far_is_not_settled_by_its_plain_half(
        ident: Identifier, refs: list[np.ndarray]) -> None:
    """The near rungs match the medley's plain half confidently, but over half the query
    only: the far rungs are added and find its other half, sped up 1.7."""
    q = np.concatenate([refs[0][5 * SR: 10 * SR],
                        effects.speed(refs[4][20 * SR: 28 * SR + SR // 2], SR, 1.7)])
    near, _ = ident.first_rungs()
    only_near = replace(ident, first_speeds=None,
                        fingerprinter=replace(FP, ladder=near)).identify(q)
    assert [m.ref_key for m in only_near.matches] == [0]
    assert only_near.matches[0].confidence >= ident.early_accept
    assert not ident.settled(only_near)  # half the query
    res = ident.identify(q)
    got = {m.ref_key: m for m in res.matches}
    assert {0, 4} <= set(got)
    assert abs(got[4].segments[0].speed_ratio - 1.7) < 0.03


def test_passes_rewound_give_the_alignments_of_one_pass_over_what_is_left(
        ident: Identifier, refs: list[np.ndarray]) -> None:
    """The dense pass of a noisy query forgets the far rungs' rows and writes its own over
    them: the alignments are those of one pass over the near rungs' prints and the dense
    ones, looked up together."""
    from earmark.identify.fingerprinter import QueryPrints
    from earmark.identify.identifier import _Passes

    y = effects.add_noise(refs[3][11 * SR: 16 * SR], SR, 0.0, rng=np.random.default_rng(5),
                          kind="pink")
    near, far = ident.first_rungs()
    qp = FP.query_plain(y, near)
    dense = FP.query_plain(y, near, per_second=ident.dense_peaks_per_second)
    assert len(dense.hashes) > len(qp.hashes)
    p = _Passes(ident, qp)
    mark = p.mark()
    p.add(FP.query_plain(y, far))
    p.rewind(mark)
    p.add(dense)
    got = p.decide(None)
    both = QueryPrints.concat([qp, dense])
    one = ident.identify_prints(both, ident.lookup(both.hashes.key))
    assert got.raw and [(a.ref_key, a.score, a.offset) for a in got.raw] == \
        [(a.ref_key, a.score, a.offset) for a in one.raw]


def test_stationary_noise_is_told_from_music_by_how_little_its_level_moves() -> None:
    """``dynamics_db`` gates the dense pass: music under pink noise 5 dB lies under the
    gate, the same music alone far above it."""
    gate = Identifier(shards=[]).dense_below_db
    for seed in range(3):
        y = synth_music(sr=SR, duration=6.0, rng=np.random.default_rng(50 + seed))
        noisy = effects.add_noise(y, SR, 5.0, rng=np.random.default_rng(seed), kind="pink")
        assert FP.dynamics_db(noisy) < gate < FP.dynamics_db(y)
