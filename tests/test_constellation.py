# SPDX-License-Identifier: Apache-2.0
"""The constellation check: reference peaks stored with the sketch, and a query's peaks
checked against them (generated peaks and music, a real index and a real file)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import needs_ffmpeg
from earmark.audio.generators import synth_music, synth_speech_like
from earmark.identify import constellation as C
from earmark.identify.fingerprinter import TripletFingerprinter
from earmark.identify.hashes import Hashes
from earmark.identify.identifier import Identifier
from earmark.identify.match import MatchParams, vote_parts
from earmark.identify.verify import SketchCache, pack, split, unpack
from earmark.index.base import Candidates, IndexItem
from earmark.index.segments import SegmentIndex
from earmark.service.ingest import fingerprint_file

SR = 8000
FP = TripletFingerprinter()
HOP = FP.spec.hop
RATE = 13.0  #: reference peaks per second, as the fingerprinter keeps them
FPS = FP.frame_rate


def _refs(n: int, seconds: float, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(1, n + 1):
        m = int(RATE * seconds)
        out[k] = (np.sort(rng.uniform(0, seconds * FPS, m)), rng.uniform(0, 180, m))
    return out


def test_pack_round_trip_with_a_long_gap() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(np.concatenate([rng.uniform(0, 500, 50), rng.uniform(40000, 40100, 20)]))
    f = rng.uniform(0, 179.9, t.size)
    t2, f2 = C.unpack(C.pack(t, f))
    assert t2.size == t.size
    assert np.max(np.abs(t2 - t)) <= 0.5 / C.T_STEP + 1e-9
    assert np.max(np.abs(f2 - f)) <= 0.5 / C.F_STEP + 1e-9
    assert C.unpack(C.pack(np.zeros(0), np.zeros(0)))[0].size == 0


def test_the_sketch_blob_carries_the_constellation() -> None:
    sk = np.random.default_rng(2).integers(-8, 8, size=(40, 30)).astype(np.int8)
    peaks = (np.arange(5.0), np.full(5, 33.25))
    blob = pack(sk, C.pack(*peaks))
    assert np.array_equal(unpack(blob), sk)
    t, f = C.of_blob(blob)  # type: ignore[misc]
    assert np.allclose(t, peaks[0]) and np.allclose(f, peaks[1])
    old = pack(sk)  # a blob written before constellations
    assert split(old) == (old, None) and C.of_blob(old) is None
    assert np.array_equal(unpack(old), sk)
    cache = SketchCache(lambda keys: {1: blob, 2: old}, unpack=C.of_blob)
    got = cache.get([1, 2, 3])
    assert set(got) == {1}


def _query(refs: dict[int, tuple[np.ndarray, np.ndarray]], key: int, t0: float, scale: float,
           shift: float, delta: float, seed: int, keep: float = 0.5, talk: int = 80
           ) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a 5 s query holding ``keep`` of reference ``key``'s peaks from frame ``t0``
    on, played ``scale`` times faster, ``shift`` bins higher, ``delta`` frames into the
    query, among ``talk`` peaks of speech."""
    rng = np.random.default_rng(seed)
    t, f = refs[key]
    span = 5 * FPS * scale
    sel = (t >= t0) & (t < t0 + span) & (rng.random(t.size) < keep)
    qt = delta + (t[sel] - t0) / scale + rng.normal(0, 0.25, sel.sum())
    qf = f[sel] + shift + rng.normal(0, 0.2, sel.sum())
    qt = np.concatenate([qt, rng.uniform(delta, delta + 5 * FPS, talk)])
    qf = np.concatenate([qf, rng.uniform(0, 180, talk)])
    return qt, qf


def _hyp(refs: dict[int, tuple[np.ndarray, np.ndarray]], key: int, t0: float, scale: float,
         shift: float, delta: float, seed: int) -> C.Hypotheses:
    """Vote candidates: three on the right line (with the tempo and shift a triplet gives,
    a little off; at least two share a vote cell) among 4,000 chance ones, with the
    vote's own parts (:func:`vote_parts`)."""
    rng = np.random.default_rng(seed)
    n = 4000
    ref = rng.integers(1, len(refs) + 1, n)
    t_ref = rng.uniform(0, 55 * FPS, n)
    t_q = rng.uniform(delta, delta + 5 * FPS, n)
    sc = np.exp(rng.uniform(np.log(0.7), np.log(1.4), n))
    sh = rng.uniform(-20, 20, n)
    tq_true = delta + np.array([2.0, 2.2, 2.4]) * FPS
    ref[:3] = key
    t_q[:3] = tq_true
    t_ref[:3] = t0 + (tq_true - delta) * scale
    sc[:3] = scale * 1.015
    sh[:3] = shift + 0.3
    span = np.full(n, 20.0, np.float32)  # query spans; the reference's give the tempo
    f_q = rng.uniform(40, 140, n).astype(np.float32)
    h = Hashes(np.zeros(n, np.uint32), t_q.astype(np.float32), f_q, span)
    cand = Candidates(np.arange(n), ref, np.arange(n), t_ref.astype(np.float32),
                      (f_q - sh).astype(np.float32), (span * sc).astype(np.float32))
    vp = vote_parts(h, cand)
    return C.hypotheses(ref, vp.hi, cand.t, h.t, vp.scale, h.f - cand.f, delta + 2.5 * FPS)


@settings(max_examples=20, deadline=None)
@given(delta=st.floats(0, 200), scale=st.floats(0.8, 1.25), shift=st.floats(-12, 12),
       seed=st.integers(0, 10**6))
def test_the_check_finds_the_reference_where_it_lies(delta: float, scale: float, shift: float,
                                                    seed: int) -> None:
    """Half of a reference's peaks among speech peaks: found, with the tempo and shift, and
    moving the query by Δ frames moves the reported offset at query frame 0 by Δ·scale."""
    refs = _refs(6, 60.0, seed)
    t0 = 20 * FPS
    qt, qf = _query(refs, 3, t0, scale, shift, delta, seed)
    found = C.check(qt, qf, _hyp(refs, 3, t0, scale, shift, delta, seed), refs)
    assert found is not None and found.ref_key == 3
    assert found.ratio >= C.ConstellationParams().min_ratio
    assert abs(found.offset + found.scale * delta - t0) < 2.0
    assert abs(found.scale / scale - 1) < 0.01
    assert abs(found.shift - shift) < 0.5
    assert found.confidence > 0.5


def test_the_check_finds_nothing_in_music_it_does_not_hold() -> None:
    """Speech peaks alone (or another piece's): the best reference is no better than the
    next; no ratio reaches the check's."""
    for seed in range(5):
        refs = _refs(6, 60.0, seed)
        other = _refs(1, 60.0, 100 + seed)
        qt, qf = _query({1: other[1]}, 1, 20 * FPS, 1.0, 0.0, 0.0, seed)
        found = C.check(qt, qf, _hyp(refs, 3, 20 * FPS, 1.0, 0.0, 0.0, seed), refs)
        assert found is not None
        assert found.ratio < C.ConstellationParams().min_ratio
        assert found.confidence < 0.5


@pytest.fixture(scope="module")
def music() -> list[np.ndarray]:
    return [synth_music(sr=SR, duration=30.0, rng=np.random.default_rng(500 + i))
            for i in range(3)]


def test_a_query_the_vote_cannot_decide_is_found_by_its_peaks(
        music: list[np.ndarray], tmp_path: Path) -> None:
    """With a vote that can accept nothing (``min_inliers`` out of reach), a talked-over
    query is still identified by the check, at the right place; without constellations,
    or for music outside the catalog, there is no match."""
    idx = SegmentIndex(tmp_path / "index", fingerprint="triplet-1")
    maps = {}
    items = []
    for k, y in enumerate(music, start=1):
        h, n, _, pk = FP.reference_verified([y])
        items.append(IndexItem(k, h, 1 + n // HOP))
        maps[k] = C.unpack(C.pack(pk.t, pk.f))
    idx.add(items)
    fp = replace(FP, speech_gate=0.0)  # the generated talk need not convince the mask
    deaf = MatchParams(min_inliers=10**6)
    ident = Identifier(shards=[idx], fingerprinter=fp, params=deaf,
                       constellations=lambda keys: {k: maps[k] for k in keys if k in maps})
    talk = synth_speech_like(sr=SR, duration=5.0, rng=np.random.default_rng(4))

    def talked(y: np.ndarray) -> np.ndarray:
        t = talk[: y.size] * np.sqrt(np.mean(y**2) / np.mean(talk**2)) * 10 ** (2 / 20)
        return (y + t).astype(np.float32)

    q = talked(music[1][12 * SR: 17 * SR])
    res = ident.identify(q)
    assert res.status == "match" and res.matches[0].ref_key == 2
    seg = res.matches[0].segments[0]
    assert abs(seg.ref_start_ms - seg.query_start_ms - 12000) < 60
    assert abs(seg.tempo_ratio - 1.0) < 0.02 and abs(seg.pitch_semitones) < 0.2
    assert 0.5 <= res.matches[0].confidence <= 1.0
    assert replace(ident, constellations=None).identify(q).status == "no_match"
    outside = synth_music(sr=SR, duration=6.0, rng=np.random.default_rng(999))
    assert ident.identify(talked(outside[: 5 * SR])).status == "no_match"
    idx.close()


@needs_ffmpeg
def test_an_added_reference_keeps_its_constellation(music: list[np.ndarray],
                                                     tmp_path: Path) -> None:
    """``fingerprint_file`` stores the peaks the hashes were made of with the sketch."""
    path = tmp_path / "ref.flac"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar",
                    str(SR), "-ac", "1", "-i", "-", str(path)],
                   input=np.ascontiguousarray(music[0], "<f4").tobytes(), check=True)
    res = fingerprint_file(path, sr=SR, max_seconds=None, fingerprinter=FP)
    assert res.sketch is not None
    got = C.of_blob(res.sketch)
    _, _, _, pk = FP.reference_verified([music[0]])
    assert got is not None and got[0].size == len(pk) > 10 * 30
    assert np.max(np.abs(got[0] - pk.t)) <= 0.5 / C.T_STEP + 1e-6
