# SPDX-License-Identifier: Apache-2.0
"""Live monitoring: incremental prints, the window matcher, the match timeline, escalation,
and the per-stream watcher's events — on generated music and a real catalog/index."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SR, Library, music
from earmark.identify.fingerprinter import TripletFingerprinter
from earmark.live.escalate import Escalator, Grace
from earmark.live.events import LiveEvent
from earmark.live.matcher import StreamMatcher
from earmark.live.monitor import StreamWatcher
from earmark.live.prints import StreamPrints
from earmark.live.sources import Block
from earmark.live.timeline import LiveMatch, MatchTracker, WindowMatch
from earmark.moderation.policy import PolicyBody, PolicyVersion, Rule
from earmark.service.catalog import Catalog


def stream_of(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32)


def run(watcher: StreamWatcher, y: np.ndarray, block: int = SR // 2) -> None:
    for i in range(0, y.size, block):
        watcher.feed(Block(i, y[i:i + block]))
    watcher.end()


def collect(catalog: Catalog | None, **kw: object) -> tuple[StreamWatcher, list[LiveEvent]]:
    events: list[LiveEvent] = []
    w = StreamWatcher("s1", catalog=catalog, detector=None, sink=events.append, sr=SR,
                      **kw)  # type: ignore[arg-type]
    return w, events


def test_stream_prints_equal_the_one_piece_query() -> None:
    # the plain prints (the speech mask gates per query in one piece, per second in a stream)
    fp = TripletFingerprinter(speech_mask=False)
    y = music(7, 30.0)
    one = fp.query(y)
    sp = StreamPrints(fp)
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < y.size:  # blocks of random sizes: the cut points must not matter
        n = int(rng.integers(100, 6000))
        parts.append(sp.push(y[i:i + n]))
        i += n
    parts.append(sp.push(np.zeros(0, np.float32), last=True))
    a = set(zip(one.hashes.key.tolist(), np.round(one.hashes.t, 1).tolist(), strict=True))
    keys = np.concatenate([p.hashes.key for p in parts])
    ts = np.concatenate([p.hashes.t for p in parts])
    b = set(zip(keys.tolist(), np.round(ts, 1).tolist(), strict=True))
    assert len(a & b) >= 0.97 * len(a) and len(b - a) <= 0.03 * len(b)
    assert all(np.all(np.diff(p.hashes.t) >= 0) for p in parts)  # sorted within a push


def test_provisional_prints_come_from_the_rungs_asked_for() -> None:
    """A peek on the rungs near speed 1 gives those rungs' provisional hashes, the same as a
    peek on every rung gives for them; it consumes nothing."""
    fp = TripletFingerprinter(speech_mask=False)
    sp = StreamPrints(fp)
    y = music(9, 6.0)
    sp.push(y)
    every, near = sp.peek(), sp.peek((0.75, 1.34))
    assert np.allclose(np.unique(near.speed), [v for v in fp.ladder if 0.75 <= v <= 1.34])
    keep = (every.speed >= 0.75) & (every.speed <= 1.34)
    def pairs(h: object, k: object = slice(None)) -> list[tuple[int, float]]:
        return sorted(zip(h.key[k].tolist(), h.t[k].tolist(), strict=True))  # type: ignore[attr-defined]

    assert pairs(every.hashes, keep) == pairs(near.hashes)
    assert len(near.hashes) < 0.7 * len(every.hashes)
    assert len(sp.peek().hashes) == len(every.hashes)  # nothing consumed


def test_stream_prints_add_masked_hashes_under_talk_over() -> None:
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like

    y = music(8, 12.0)
    talk = mix_over(y, synth_speech_like(sr=SR, duration=12.0, rng=np.random.default_rng(1)),
                    -5.0)
    n = {}
    for mask in (False, True):
        sp = StreamPrints(TripletFingerprinter(speech_gate=0.2), speech=mask)
        parts = [sp.push(talk[i:i + 4000]) for i in range(0, talk.size, 4000)]
        parts.append(sp.push(np.zeros(0, np.float32), last=True))
        n[mask] = sum(len(p.hashes) for p in parts)
    assert n[True] > 1.2 * n[False]


@pytest.mark.parametrize("delta_s", [12.0, 17.5])
def test_match_starts_soon_and_moves_with_the_music(catalog: Catalog, library: Library,
                                                    delta_s: float) -> None:
    """Catalog music spliced in at Δ: the match starts within 5 s, at Δ on the stream and
    at the right place in the reference; shifting Δ shifts the reported start."""
    from earmark.audio.generators import synth_speech_like

    ref = library.signals["long"]
    # talk, not generated music: generated pieces share material with the references
    filler = synth_speech_like(sr=SR, duration=40.0, rng=np.random.default_rng(906))
    y = stream_of(filler[: round(delta_s * SR)], ref[20 * SR: 45 * SR], filler[-8 * SR:])
    w, events = collect(catalog)
    run(w, y)
    started = [e.to_json() for e in events if e.event == "match_started"]
    ended = [e.to_json() for e in events if e.event == "match_ended"]
    # one continuous match: the generated reference repeats its bars, so the first window
    # may lock on a repeat; the match follows the true line and ends on it
    assert len(started) == 1 and len(ended) == 1, started + ended
    e, end = started[0], ended[0]
    assert e["reference_id"] == "long"
    assert abs(e["query_start_ms"] - delta_s * 1000) < 600
    assert e["stream_ms"] - delta_s * 1000 <= 5000  # first detection
    line = 20_000 - delta_s * 1000  # reference ms minus stream ms on the true alignment
    assert abs(end["ref_end_ms"] - end["query_end_ms"] - line) < 300
    assert abs(end["query_end_ms"] - (delta_s + 25) * 1000) < 1500
    assert [x.event for x in events].count("match_updated") >= 2
    for x in events:
        j = x.to_json()
        assert {"event", "stream", "stream_ms", "wall_time"} <= set(j)
        assert j["wall_time"].endswith("Z")


def test_sped_up_music_is_matched_with_its_speed(catalog: Catalog, library: Library) -> None:
    import soxr

    ref = library.signals["long"][10 * SR: 50 * SR]
    fast = soxr.resample(ref, SR * 1.25, SR).astype(np.float32)  # nightcore: 1.25×
    w, events = collect(catalog)
    run(w, stream_of(music(906, 6.0), fast, music(907, 8.0)))
    e = next(x.to_json() for x in events if x.event == "match_started")
    assert e["reference_id"] == "long" and abs(e["speed_ratio"] - 1.25) < 0.03


def test_no_match_on_music_that_is_not_in_the_catalog(catalog: Catalog) -> None:
    w, events = collect(catalog)
    run(w, stream_of(*(music(950 + k, 30.0) for k in range(4))))
    assert not [e for e in events if e.event.startswith("match_")]


def test_tracker_needs_new_evidence_to_start() -> None:
    t = MatchTracker(end_after_s=3)
    w = WindowMatch(ref_key=1, confidence=0.85, stream_start_ms=1000, stream_end_ms=4000,
                    ref_start_ms=5000, ref_end_ms=8000, speed_ratio=1, pitch_semitones=0,
                    tempo_ratio=1)
    assert t.update([w], 5000) == []
    assert t.update([w], 6000) == []  # the same stretch again: no new evidence
    grown = WindowMatch(**{**w.__dict__, "stream_end_ms": 5000, "ref_end_ms": 9000})
    (ch,) = t.update([grown], 7000)
    assert ch.kind == "started" and ch.match.stream_start_ms == 1000
    other = WindowMatch(**{**w.__dict__, "ref_start_ms": 50_000, "ref_end_ms": 53_000})
    assert t.update([other], 7500) == []  # another alignment of the same reference: pending
    (end,) = t.update([], 8100)
    assert end.kind == "ended" and end.match.stream_end_ms == 5000
    assert t.open == []  # the pending one expired too


def test_two_confident_windows_start_without_new_evidence() -> None:
    """Two windows that agree at ``quick_confidence`` or more on music played as it is start
    the match although the second reaches no further on the line; one of them below it, or
    a pitch-shifted or re-timed alignment (an octave alias), waits for new evidence."""
    def starts(first: float, second: float, quick: float | None = 0.9, pitch: float = 0.0,
               tempo: float = 1.0) -> bool:
        t = MatchTracker(end_after_s=3, instant_confidence=None, quick_confidence=quick)
        w = WindowMatch(ref_key=1, confidence=first, stream_start_ms=1000,
                        stream_end_ms=4000, ref_start_ms=5000, ref_end_ms=8000,
                        speed_ratio=1, pitch_semitones=pitch, tempo_ratio=tempo)
        assert t.update([w], 4000) == []
        again = WindowMatch(**{**w.__dict__, "confidence": second, "stream_end_ms": 4100,
                               "ref_end_ms": 8100})  # 0.1 s further: under min_growth_ms
        return any(c.kind == "started" for c in t.update([again], 4500))

    assert starts(0.95, 0.92)
    assert not starts(0.95, 0.85) and not starts(0.85, 0.95)
    assert not starts(0.99, 0.99, quick=None)
    assert starts(0.95, 0.95, pitch=0.3, tempo=1.02)
    assert not starts(0.95, 0.95, pitch=-12.59) and not starts(0.95, 0.95, tempo=1.25)


def test_two_edits_at_once_need_a_confident_window_to_start() -> None:
    def grow(w: WindowMatch, ms: int) -> WindowMatch:
        return WindowMatch(**{**w.__dict__, "stream_end_ms": w.stream_end_ms + ms,
                              "ref_end_ms": w.ref_end_ms + ms})

    def starts(tempo: float, pitch: float, conf: float) -> bool:
        t = MatchTracker(end_after_s=3, instant_confidence=None)
        w = WindowMatch(ref_key=1, confidence=conf, stream_start_ms=1000, stream_end_ms=4000,
                        ref_start_ms=5000, ref_end_ms=8000, speed_ratio=1,
                        pitch_semitones=pitch, tempo_ratio=tempo)
        return any(c.kind == "started" for k in range(4)
                   for c in t.update([grow(w, 1000 * k)], 5000 + 1000 * k))

    # one edit at a time starts at the file matcher's bar: speed, pitch shift, stretch
    assert starts(1.25, 12 * np.log2(1.25), 0.9)
    assert starts(1.0, -3.0, 0.9) and starts(0.7, 0.0, 0.9)
    # a looped passage of other music on a catalog bar at tempo 0.70 and -2 semitones
    assert not starts(0.6961, -1.99, 0.96)
    assert starts(0.6961, -1.99, 0.995)


def test_a_repeat_of_a_started_match_does_not_start_again() -> None:
    """Music that repeats its bars: the first windows see it on two lines (a repeat and the
    true one). Once one line has started, confirming the other is the same playback: the
    started match goes on, on the newer line, and nothing starts twice."""
    t = MatchTracker(end_after_s=3, instant_confidence=None)
    base = dict(ref_key=7, confidence=0.99, speed_ratio=1, pitch_semitones=0, tempo_ratio=1)
    true = WindowMatch(stream_start_ms=1000, stream_end_ms=2000, ref_start_ms=3000,
                       ref_end_ms=4000, **base)  # type: ignore[arg-type]
    rep = WindowMatch(stream_start_ms=1020, stream_end_ms=2500, ref_start_ms=21_020,
                      ref_end_ms=22_500, **base)  # type: ignore[arg-type]
    assert t.update([true], 2000) == []
    assert t.update([rep], 2500) == []
    grown_rep = WindowMatch(**{**rep.__dict__, "stream_end_ms": 3500, "ref_end_ms": 23_500})
    (ch,) = t.update([grown_rep], 3500)
    assert ch.kind == "started"
    grown_true = WindowMatch(**{**true.__dict__, "stream_end_ms": 4000, "ref_end_ms": 6000})
    assert t.update([grown_true], 4000) == []  # the true line: the same match goes on
    (only,) = [m for m in t.open if m.started]
    assert only.ref_at_zero == grown_true.ref_at_zero and only.stream_end_ms == 4000
    assert [c.kind for c in t.close(5000)] == ["ended"]


def test_escalation_follows_the_policy_and_the_grace_periods() -> None:
    pol = {"label-a": PolicyVersion(owner="label-a", version=3, body=PolicyBody(
        rules=[Rule(name="block", action="block")]))}
    esc = Escalator(policies=pol, grace=Grace(mute_after_s=10, interrupt_after_s=20))
    ref = {"id": "r", "owner": "label-a"}
    m = LiveMatch(ref_key=1, stream_start_ms=0, stream_end_ms=4000, ref_start_ms=0,
                  ref_end_ms=4000, speed_ratio=1, pitch_semitones=0, tempo_ratio=1,
                  confidence=0.99, ref_at_zero=0)
    steps = esc.step(m, ref, 4000)  # 4 s: not manifest → review → warn only
    assert [s["level"] for s in steps] == ["warn"] and steps[0]["action"] == "review"
    m.stream_end_ms = 12_000  # manifest now: block; mute waits for its grace period
    assert esc.step(m, ref, 12_000) == []
    assert [s["level"] for s in esc.step(m, ref, 14_100)] == ["mute"]
    assert esc.step(m, ref, 30_000) == []
    (s,) = esc.step(m, ref, 34_200)
    assert s["level"] == "interrupt" and s["policy_versions"] == {"label-a": 3}
    other = Escalator()  # default policies: track → no escalation
    assert other.step(m, {"id": "r", "owner": "label-b"}, 40_000) == []


def test_state_stays_bounded_on_a_long_stream(catalog: Catalog) -> None:
    """Five minutes of stream: the matcher's window, every buffer and the process's memory
    stay the same size (a 24 h stream is the same loop, longer)."""
    import os

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    m = StreamMatcher(catalog.identifier, window_s=8.0)
    piece = music(990, 60.0)
    sizes = []
    for minute in range(5):
        for i in range(0, piece.size, SR):
            m.push(piece[i:i + SR] * np.float32(0.5 + 0.05 * minute))
        sizes.append((len(m.hops), max(len(r.buf) for r in m.prints.rungs), rss(),
                      m._c.cols["qidx"].size))
    assert max(s[0] for s in sizes) <= 12 and max(s[1] for s in sizes) < 400
    assert sizes[-1][3] <= 2 * sizes[1][3]  # the window's candidate rows: bounded
    assert sizes[-1][2] - sizes[1][2] < 20e6  # no growth with stream length


def test_votes_keep_the_hop_when_blocks_fall_a_sample_short(catalog: Catalog) -> None:
    # a resampler hands out a sample or two fewer or more per block: 20 s of half-second
    # blocks one sample short must still vote once per second (restarting the count at
    # every vote voted every 1.5 s), and the same with blocks a sample long
    for n in (SR // 2 - 1, SR // 2 + 1):
        m = StreamMatcher(catalog.identifier, hop_s=1.0, talk_over=False)
        y = music(991, 20.0)
        votes = sum(m.push(y[i:i + n]) is not None for i in range(0, y.size, n))
        assert 19 <= votes <= 20


def test_ai_suspected_on_a_re_synthesised_stretch_only(library: Library) -> None:
    """A stream whose middle 10 s went through a random transposed-conv decoder (a proxy of
    a neural codec): one ai_suspected, placed on that stretch; real parts raise nothing."""
    import soxr

    from earmark.audio.decoders import random_decoder
    from earmark.detect.residue import ResidueDetector

    sr = 44100
    y = soxr.resample(library.signals["long"][: 40 * SR], SR, sr).astype(np.float32)
    fake = random_decoder(y, sr, gen_sr=44100, strides=(2, 4, 8, 8), seed=3)[15 * sr:25 * sr]
    y[15 * sr:25 * sr] = fake * np.sqrt(np.mean(y[15 * sr:25 * sr] ** 2) / np.mean(fake**2))
    events: list[LiveEvent] = []
    w = StreamWatcher("ai", catalog=None, detector=ResidueDetector(), sink=events.append,
                      sr=sr)
    run(w, y, block=sr // 2)
    ai = [e.to_json() for e in events if e.event == "ai_suspected"]
    assert len(ai) == 1, ai
    assert 15_000 <= ai[0]["segment_start_ms"] < 25_000 and ai[0]["ai_probability"] >= 0.9


def test_companions_refreshed_in_pieces_match_the_whole_window(catalog: Catalog,
                                                                library: Library) -> None:
    """While talk goes on, each hop computes companions for its newest seconds only and
    keeps the older ones: what the window holds then is nearly what one pass over the whole
    window gives (sorted in time, as the vote's cut needs)."""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like

    talk = synth_speech_like(sr=SR, duration=20.0, rng=np.random.default_rng(5))
    y = mix_over(music(992, 20.0), talk, 0.0)
    m = StreamMatcher(catalog.identifier)
    for i in range(0, y.size, SR // 2):
        m.push(y[i:i + SR // 2])
    comp = m._comp
    assert comp is not None and np.all(np.diff(comp.hashes.t) >= 0)
    fr = m.fp.frame_rate
    end = comp.upto
    start = end - m.window_frames
    whole = m.fp.talk_over(y[round(start * m.fp.spec.hop):round(end * m.fp.spec.hop)],
                           gate=0.0)
    assert whole is not None
    inner = lambda t: (t >= start + fr) & (t < end - 2 * fr)  # noqa: E731 (edges differ)
    a = {(int(k), round(float(t))) for k, t in zip(whole.hashes.key, whole.hashes.t + start,
                                                      strict=True)
         if inner(t)}
    b = {(int(k), round(float(t))) for k, t in zip(comp.hashes.key, comp.hashes.t, strict=True)
         if inner(t)}
    # two whole-window passes whose starts are 0.5–2 s apart agree on 41–59 % of these
    # hashes (frame grid, peak thinning and the mask follow the start): a piece is no worse
    assert len(a & b) >= 0.35 * len(a) and len(b) <= 1.5 * len(a)
    # and no second of the window is left without its companions at the joins
    per_s = np.histogram(comp.hashes.t, bins=np.arange(start + fr, end - fr, fr))[0]
    assert per_s.min() >= 0.4 * np.median(per_s)


def test_long_talk_without_a_match_searches_every_other_vote(catalog: Catalog) -> None:
    """After ``talk_rest_s`` of talk with no match, every other vote leaves the talk-over
    search out (and its companions are not refreshed then); before, none does."""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like

    talk = synth_speech_like(sr=SR, duration=30.0, rng=np.random.default_rng(8))
    y = mix_over(music(993, 30.0), talk, 0.0)
    m = StreamMatcher(catalog.identifier, hop_s=1.25, talk_rest_s=8.0)
    votes: list[tuple[float, bool, bool, bool, int]] = []
    for i in range(0, y.size, SR // 2):
        talking = m._talking  # what the vote starts from
        if m.push(y[i:i + SR // 2]) is not None:
            votes.append((m.n_samples / SR, m.resting, talking, m._matched, m._comp_at))
    assert not any(v[1] for v in votes if v[0] < 8.0)
    assert any(v[1] for v in votes)
    for prev, v in itertools.pairwise(votes):
        if v[1]:  # resting: no match just before, not twice in a row
            assert not prev[3] and not prev[1]
            assert v[4] == prev[4]  # the companions were not refreshed
    # most votes after the first 8 s of talk without a match alternate
    late = [v[1] for v in votes if v[0] >= 10.0]
    assert sum(late) >= 0.3 * len(late)


def test_talk_with_short_pauses_counts_as_one_stretch(catalog: Catalog) -> None:
    """Talk that pauses for a few seconds (or music the mask reads as talk every other
    probe) still reaches the rest: a pause shorter than ``TALK_BREAK_S`` does not start the
    count again, a longer one does."""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like
    from earmark.live.matcher import TALK_BREAK_S

    talk = synth_speech_like(sr=SR, duration=6.0, rng=np.random.default_rng(8))
    bed = music(994, 70.0)
    y = bed.copy()
    spans = [(0, 6), (10, 16), (20, 26), (30, 36), (56, 62), (66, 70)]  # s; 20 s pause
    for a, b in spans:
        y[a * SR: b * SR] = mix_over(bed[a * SR: b * SR], talk[: (b - a) * SR], 0.0)
    assert 20 > TALK_BREAK_S > 4
    m = StreamMatcher(catalog.identifier, hop_s=1.25, talk_rest_s=8.0)
    rests, starts = [], []
    for i in range(0, y.size, SR // 2):
        before = m._talk_from
        if m.push(y[i:i + SR // 2]) is not None and m.resting:
            rests.append(m.n_samples / SR)
        if m._talk_from != before:
            starts.append(m._talk_from / SR)
    # no stretch of talk lasts 8 s, yet the talk of 0–36 s (4 s pauses) rests from ~8 s
    assert any(8.0 <= t <= 36.0 for t in rests)
    # and the talk after the 20 s pause is counted afresh
    assert len(starts) == 2 and 56.0 <= starts[1] <= 60.0


def test_talk_over_the_music_is_found_through_the_speech_mask(catalog: Catalog,
                                                               library: Library) -> None:
    """Speech-like babble as loud as catalog music: the plain window prints find it late;
    with the talk-over pass (speech-mask probe, then the window's companions) the window
    matches the right reference at the right place, sooner. (Generated music and babble; the
    speech mask is trained on real music and synthetic speech, and at 3–5 dB louder babble
    finds the generated music late or not at all: the benchmarks measure real music.)"""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like

    ref = library.signals["long"]
    talk = synth_speech_like(sr=SR, duration=25.0, rng=np.random.default_rng(3))
    filler = synth_speech_like(sr=SR, duration=12.0, rng=np.random.default_rng(7))
    y = stream_of(filler, mix_over(ref[20 * SR: 45 * SR], talk, 0.0))
    key = catalog.store.get("long").key  # type: ignore[union-attr]
    found = {}
    for talk_over in (False, True):
        m = StreamMatcher(catalog.identifier, talk_over=talk_over)
        for i in range(0, y.size, SR // 2):
            hits = [w for w in m.push(y[i:i + SR // 2]) or [] if w.ref_key == key]
            if hits:
                found[talk_over] = (i + SR // 2) / SR - 12.0, hits[0]
                break
    assert True in found, "talk over the music not found"
    after_s, w = found[True]
    assert after_s <= 20.0
    # the window's line through the reference: stream time 12 s is reference time 20 s
    assert abs(w.ref_at_zero + w.tempo_ratio * 12_000 - 20_000) < 150
    assert False not in found or found[False][0] > after_s


def test_the_newest_seconds_under_talk_are_decided_alone(catalog: Catalog,
                                                        library: Library) -> None:
    """Talk goes on; catalog music begins under it mid-window. Deciding the newest 4 s
    alone (with their own talk-over companions) finds the music sooner than the whole
    window does, on the right line in stream time (a sub-window's times count from 4 s
    before the vote, not 8 s)."""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like

    ref = library.signals["long"]
    talk = synth_speech_like(sr=SR, duration=37.0, rng=np.random.default_rng(3))
    lead = synth_speech_like(sr=SR, duration=12.0, rng=np.random.default_rng(7))
    y = mix_over(np.concatenate([0.05 * lead, ref[20 * SR: 45 * SR]]), talk, 0.0)
    key = catalog.store.get("long").key  # type: ignore[union-attr]
    found = {}
    # the second look's smoothed vote off: it finds this music in the whole window as soon
    # (5 s), which would hide what deciding the newest seconds alone does
    ident = replace(catalog.identifier, smooth_later=False)
    for recent_s in (0.0, 4.0):
        m = StreamMatcher(ident, recent_s=recent_s)
        for i in range(0, y.size, SR // 2):
            # on the right line: stream time 12 s is reference time 20 s
            hits = [w for w in m.push(y[i:i + SR // 2]) or [] if w.ref_key == key
                    and abs(w.ref_at_zero + w.tempo_ratio * 12_000 - 20_000) < 150]
            if hits:
                found[recent_s] = (i + SR // 2) / SR - 12.0
                assert hits[0].stream_start_ms >= 12_000 - 300  # not before the music
                break
    assert 4.0 in found, "talk over the music not found"
    assert found[4.0] <= 20.0
    assert 0.0 not in found or found[0.0] > found[4.0], found  # here: 8.0 against 4.0 s


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 900), st.booleans(), st.integers(0, 3)),
                min_size=1, max_size=40))
def test_window_rows_keep_what_a_list_keeps(ops: list[tuple[int, bool, int]]) -> None:
    """The window's rows (appended per hop, dropped per hop, provisional rows overwritten
    by the next append) hold exactly what a plain list would, across reallocations."""
    from earmark.live.buffers import Rows

    rows = Rows(x=np.int64)
    model: list[int] = []  # (absolute number of model[0] is `first`)
    first, temp, nxt = 0, [], 0
    for n, is_temp, drop in ops:
        vals = np.arange(nxt, nxt + n)
        rows.append(is_temp, x=vals)
        if is_temp:
            temp = list(vals)
        else:
            model += list(vals)
            temp = []
            nxt += n
        cut = min(len(model), drop * 100)
        rows.drop_to(first + cut)
        model, first = model[cut:], first + cut
        assert rows.first == first and rows.end == first + len(model)
        assert rows.rows()["x"].tolist() == model + temp


def _settled_windows(catalog: Catalog, library: Library, after_s: int
                     ) -> Iterator[tuple[StreamMatcher, float, float]]:
    """A matcher over non-catalog music then catalog music, pushed a second at a time (no
    provisional prints): after ``after_s`` seconds, each second, the matcher and its
    window's bounds (stream frames)."""
    m = StreamMatcher(catalog.identifier, window_s=8.0, provisional=False)
    y = stream_of(music(991, 7.0), library.signals["long"][5 * SR: 25 * SR])
    for i in range(0, y.size, SR):
        m.push(y[i:i + SR])
        if i >= after_s * SR:
            end = m.hops[-1].upto
            yield m, end - m.window_frames, end


def test_window_vote_equals_the_file_matcher_on_the_same_prints(catalog: Catalog,
                                                              library: Library) -> None:
    """A live vote reads its window in place: the oldest hops' hashes before the window's
    start stay in the rows (at negative times) and the candidates carry vote parts computed
    once in stream frames. The alignments are those of the file matcher on the window's
    own hashes and candidates, cut and recomputed from scratch."""
    from earmark.identify.fingerprinter import QueryPrints
    from earmark.identify.hashes import Hashes
    from earmark.identify.match import align
    from earmark.index.base import Candidates

    checked = 0
    for m, start, end in _settled_windows(catalog, library, 12):
        h, speed, cand, parts = m._view(start)
        assert (h.t < 0).any()  # the oldest hop straddles the start: dead rows are kept
        qp = QueryPrints(h, speed, (end - start) / m.fp.frame_rate, 1)
        live = align(qp, cand, m.ident.params, m.fp.frame_rate, parts)
        keep = np.flatnonzero(h.t >= 0)  # the window as a file query: cut, renumbered
        new = np.full(len(h), -1)
        new[keep] = np.arange(keep.size)
        ck = new[cand.qidx] >= 0
        cut = Candidates(new[cand.qidx[ck]], cand.ref_key[ck], cand.entry[ck], cand.t[ck],
                         cand.f[ck], cand.span[ck])
        hk = Hashes(h.key[keep], h.t[keep], h.f[keep], h.span[keep])
        ref = align(QueryPrints(hk, speed[keep], qp.duration_s, 1), cut, m.ident.params,
                    m.fp.frame_rate)
        assert ref, "the window holds catalog music"

        def key(al: list) -> list:
            return [(a.ref_key, a.score, round(a.offset, 2), round(a.scale, 4), a.ref_hits)
                    for a in al]

        assert key(live) == key(ref)
        checked += 1
    assert checked >= 10


def test_the_newest_seconds_vote_on_their_own_rows(catalog: Catalog, library: Library) -> None:
    """The newest seconds of a window are decided on the rows of the hops that reach them
    (:meth:`StreamMatcher._skip`, :func:`_drop_rows`): the same alignments as a vote over
    every row of the window with the older hashes at negative times, which the vote
    leaves out."""
    from earmark.identify.fingerprinter import QueryPrints
    from earmark.identify.hashes import Hashes
    from earmark.identify.match import align
    from earmark.live.matcher import _drop_rows

    checked = 0
    for m, start, end in _settled_windows(catalog, library, 9):
        fr = m.fp.frame_rate
        s0 = end - 4.0 * fr
        h, speed, cand, parts = m._view(start)
        k, j = m._skip(start, s0)
        assert 0 < k < len(h) and 0 < j < len(cand)
        dt = np.float32(s0 - start)
        whole = QueryPrints(Hashes(h.key, h.t - dt, h.f, h.span), speed, 4.0, 1)
        ref = align(whole, cand, m.ident.params, fr, replace(parts, t0=s0))
        hs, sp, c, vp = _drop_rows(h, speed, cand, parts, k, j)
        assert vp is not None and len(hs) == len(h) - k and len(c) == len(cand) - j
        own = QueryPrints(Hashes(hs.key, hs.t - dt, hs.f, hs.span), sp, 4.0, 1)
        got = align(own, c, m.ident.params, fr, replace(vp, t0=s0))
        assert (h.t[:k] - dt < 0).all()  # the rows left out lie before the newest seconds
        assert ref, "the newest seconds hold catalog music"

        def key(al: list) -> list:
            return [(a.ref_key, a.score, a.offset, a.scale, a.ref_hits, a.segments)
                    for a in al]

        assert key(got) == key(ref)
        checked += 1
    assert checked >= 10


def test_a_loop_behind_defers_the_talk_over_search(catalog: Catalog,
                                                  library: Library) -> None:
    """While the caller says its loop is behind (``behind``), a vote under talk leaves the
    talk-over search out: its matches are those of a matcher without the search, and the
    deferred votes are counted. Once caught up, the search runs again and finds the music
    under the talk."""
    from earmark.audio.effects import mix_over
    from earmark.audio.generators import synth_speech_like

    ref = library.signals["long"]
    talk = synth_speech_like(sr=SR, duration=25.0, rng=np.random.default_rng(3))
    filler = synth_speech_like(sr=SR, duration=12.0, rng=np.random.default_rng(7))
    y = stream_of(filler, mix_over(ref[20 * SR: 45 * SR], talk, 0.0))
    key = catalog.store.get("long").key  # type: ignore[union-attr]
    late = StreamMatcher(catalog.identifier)
    plain = StreamMatcher(catalog.identifier, talk_over=False)
    late.behind = True
    cut = 14 * SR  # 2 s into the music under talk
    for i in range(0, cut, SR // 2):
        a, b = late.push(y[i:i + SR // 2]), plain.push(y[i:i + SR // 2])
        assert a == b
    assert late.deferred >= 1 and late._comp is None and late._last_look is None
    late.behind = False
    found: dict[str, float] = {}
    for i in range(cut, y.size, SR // 2):
        for name, m in (("late", late), ("plain", plain)):
            if name not in found and any(w.ref_key == key
                                         for w in m.push(y[i:i + SR // 2]) or []):
                found[name] = (i + SR // 2) / SR - 12.0
    assert "late" in found, "talk over the music not found once caught up"
    assert found["late"] < found.get("plain", np.inf), found  # the search found it
