# SPDX-License-Identifier: Apache-2.0
"""Reference sketches and the agreement of a query with them (generated music, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earmark.audio import effects
from earmark.audio.generators import synth_music, synth_speech_like
from earmark.identify.calibrate import FEATURES, Calibration
from earmark.identify.fingerprinter import TripletFingerprinter
from earmark.identify.identifier import Identifier
from earmark.identify.spectrogram import log_spectrogram
from earmark.identify.verify import (
    QueryView,
    SketchBuilder,
    SketchCache,
    agreement,
    pack,
    sketch_of,
    unpack,
)
from earmark.index.base import IndexItem
from earmark.index.segments import SegmentIndex
from earmark.store.catalog import CatalogStore, Reference

SR = 8000
FP = TripletFingerprinter()
HOP = FP.spec.hop


@pytest.fixture(scope="module")
def music() -> list[np.ndarray]:
    return [synth_music(sr=SR, duration=30.0, rng=np.random.default_rng(300 + i))
            for i in range(2)]


@pytest.fixture(scope="module")
def sketches(music: list[np.ndarray]) -> list[np.ndarray]:
    return [FP.reference_sketched([y])[2] for y in music]


def test_pack_round_trip() -> None:
    rng = np.random.default_rng(0)
    for n, w in ((0, 30), (1, 30), (7, 29), (100, 30)):
        s = rng.integers(-8, 8, size=(n, w)).astype(np.int8)
        out = unpack(pack(s))
        assert out.shape == s.shape
        assert np.array_equal(out, s)


def test_streamed_sketch_is_the_whole_one(music: list[np.ndarray]) -> None:
    S = log_spectrogram(music[0], FP.spec)
    b = SketchBuilder(S.shape[1])
    for lo in range(0, len(S), 37):  # pieces that do not fall on cell boundaries
        b.push(S[lo: lo + 37])
    assert np.array_equal(b.finish(), sketch_of(S))


def test_reference_sketched_gives_the_same_hashes(music: list[np.ndarray]) -> None:
    blocks = [music[0][i: i + 8000] for i in range(0, music[0].size, 8000)]
    h1, n1 = FP.reference(blocks)
    h2, n2, sk = FP.reference_sketched(blocks)
    assert n1 == n2
    assert np.array_equal(h1.key, h2.key) and np.array_equal(h1.t, h2.t)
    cells = n1 / HOP / 8
    assert abs(len(sk) - cells) <= 2  # one cell per 8 frames (128 ms)


@settings(max_examples=40, deadline=None)
@given(start_s=st.floats(2.0, 20.0))
def test_agreement_peaks_at_the_right_offset(music: list[np.ndarray],
                                             sketches: list[np.ndarray], start_s: float) -> None:
    """A 5 s excerpt agrees with its reference at its own offset, less 0.3 s off (the
    generated pieces repeat bar by bar, so whole beats off can agree too), and not with
    another piece."""
    i0 = round(start_s * SR)
    view = FP.view(music[0][i0: i0 + 5 * SR])
    at = i0 / HOP
    right = agreement(view, sketches[0], at, 1.0, 0.0)
    assert right > 0.6
    assert agreement(view, sketches[0], at + 0.3 * SR / HOP, 1.0, 0.0) < right - 0.15
    assert agreement(view, sketches[1], at, 1.0, 0.0) < 0.4


def test_agreement_follows_speed_and_pitch(music: list[np.ndarray],
                                           sketches: list[np.ndarray]) -> None:
    """A speed change of 1.25 is found at tempo 1.25 and +3.86 semitones (11.6 bins), a
    pitch shift of -3 semitones at tempo 1 and -9 bins."""
    y = music[0][5 * SR: 15 * SR]
    fast = effects.speed(y, SR, 1.25)
    v = FP.view(fast)
    at = 5 * SR / HOP
    assert agreement(v, sketches[0], at, 1.25, 36 * np.log2(1.25)) > 0.6
    assert agreement(v, sketches[0], at, 1.0, 0.0) < 0.4
    low = effects.pitch_shift(y, SR, -3.0)
    v = FP.view(low)
    assert agreement(v, sketches[0], at, 1.0, -9.0) > 0.6
    assert agreement(v, sketches[0], at, 1.0, 0.0) < 0.5


def test_speech_cells_are_left_out(music: list[np.ndarray], sketches: list[np.ndarray]) -> None:
    """Talk 5 dB louder than the music: the agreement over the cells the music holds (here
    an ideal mask) is higher than over all cells."""
    y = music[0][10 * SR: 15 * SR]
    talk = synth_speech_like(sr=SR, duration=5.0, rng=np.random.default_rng(9))
    talk = talk * (np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(talk**2))) * 10 ** (5 / 20)
    mix = (y + talk[: y.size]).astype(np.float32)
    S_talk = log_spectrogram(talk[: y.size].astype(np.float32), FP.spec)
    S_music = log_spectrogram(y, FP.spec)
    ideal = S_talk > S_music
    S = log_spectrogram(mix, FP.spec)
    at = 10 * SR / HOP
    masked = agreement(QueryView.of(S, ideal), sketches[0], at, 1.0, 0.0)
    whole = agreement(QueryView.of(S), sketches[0], at, 1.0, 0.0)
    assert masked > whole + 0.1
    assert masked > 0.6


def test_agreement_needs_cells() -> None:
    view = QueryView.of(np.zeros((10, 180), np.float32))
    assert agreement(view, np.zeros((100, 30), np.int8), 0.0, 1.0, 0.0) == 0.0
    assert agreement(view, np.zeros((0, 30), np.int8), 0.0, 1.0, 0.0) == 0.0


def test_sketches_live_and_die_with_their_reference(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "catalog.sqlite")
    rows = [Reference(id=f"r{i}", source="x", sha256=f"{i:064d}", duration_ms=1000, shard="s")
            for i in range(3)]
    blob = pack(np.ones((4, 30), np.int8))
    keys = store.insert_pending(rows, [blob, None, blob])
    assert set(store.sketches(keys)) == {keys[0], keys[2]}
    cache = SketchCache(store.sketches)
    assert set(cache.get(keys)) == {keys[0], keys[2]}
    store.delete_keys([keys[0]])
    assert set(store.sketches(keys)) == {keys[2]}
    store.close()


def test_identifier_verifies_with_a_six_feature_model(
        music: list[np.ndarray], sketches: list[np.ndarray], tmp_path: Path) -> None:
    """With sketches, alignments get an agreement and the six-feature model judges them;
    a reference without a sketch is judged by the plain model, as before."""
    idx = SegmentIndex(tmp_path / "index", fingerprint="triplet-1")
    items = []
    for k, y in enumerate(music, start=1):
        h, n = FP.reference([y])
        items.append(IndexItem(k, h, 1 + n // HOP))
    idx.add(items)
    plain = Calibration.load_plain()
    six = Calibration(weights=[*plain.weights, 4.0], bias=plain.bias - 2.0,
                      threshold=plain.threshold)
    assert six.verifies and not plain.verifies and len(six.weights) == len(FEATURES)
    have = {1: sketches[0], 2: sketches[1]}
    ident = Identifier(shards=[idx], fingerprinter=FP, calibration=six,
                       sketches=lambda keys: {k: have[k] for k in keys if k in have})
    q = music[1][8 * SR: 13 * SR]
    res = ident.identify(q)
    assert res.status == "match" and res.matches[0].ref_key == 2
    top = next(a for a in res.raw if a.ref_key == 2)
    assert top.agreement is not None and top.agreement > 0.6
    del have[2]  # a catalog built before sketches
    ident = Identifier(shards=[idx], fingerprinter=FP, calibration=six,
                       sketches=lambda keys: {k: have[k] for k in keys if k in have})
    res = ident.identify(q)
    assert res.status == "match" and res.matches[0].ref_key == 2
    assert all(a.agreement is None for a in res.raw if a.ref_key == 2)
    idx.close()


def test_sketch_cache_keeps_to_its_memory_budget() -> None:
    blobs = {k: pack(np.full((100, 30), k % 7, np.int8)) for k in range(1, 11)}
    loads: list[list[int]] = []

    def load(keys):  # type: ignore[no-untyped-def]
        loads.append(list(keys))
        return {k: blobs[k] for k in keys if k in blobs}

    cache = SketchCache(load, max_bytes=3 * 100 * 30)
    for k in range(1, 11):
        assert cache.get([k])[k][0, 0] == k % 7
    assert cache._bytes <= 3 * 100 * 30
    assert set(cache.get([10, 99])) == {10}  # a key without a sketch is not an error
    n = len(loads)
    cache.get([99])  # ... and is not asked for again
    assert len(loads) == n


@given(seed=st.integers(0, 10**6), offset=st.floats(-40.0, 80.0), scale=st.floats(0.5, 2.0),
       shift=st.floats(-30.0, 30.0))
@settings(max_examples=40, deadline=None)
def test_pooling_counts_and_sums_like_bincount(seed: int, offset: float, scale: float,
                                               shift: float) -> None:
    """The sketch-cell pooling of ``agreement`` gives what ``np.bincount`` gives over the
    usable cells in range, to the bit (same order of summation)."""
    from earmark.identify.verify import _pool

    rng = np.random.default_rng(seed)
    white = rng.normal(0.0, 5.0, (120, 180)).astype(np.float32)
    usable = rng.random(white.shape) < 0.7
    rows, cols = 20, 30
    ci = np.floor((offset + scale * np.arange(120)) / 8).astype(np.int64)
    cb = np.floor((np.arange(180) - shift) / 6).astype(np.int64)
    ok = (usable & ((ci >= 0) & (ci < rows))[:, None] & ((cb >= 0) & (cb < cols))[None, :])
    lin = (ci[:, None] * cols + cb[None, :])[ok]
    cnt, tot = _pool(white, usable, ci, cb, rows, cols)
    np.testing.assert_array_equal(cnt, np.bincount(lin, minlength=rows * cols))
    np.testing.assert_array_equal(tot, np.bincount(lin, white[ok], minlength=rows * cols))
