# SPDX-License-Identifier: Apache-2.0
"""The segment index on its own: what goes in comes out, atomically, across reopen and merge."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from earmark.errors import IndexCorrupt
from earmark.identify.hashes import Hashes
from earmark.index.base import IndexBackend, IndexItem
from earmark.index.segments import MAX_SEGMENTS, SegmentIndex

FP = "test-1"
KEY_SPACE = 400  # small, so that keys collide across references


def random_item(ref_key: int, rng: np.random.Generator, n: int = 300,
                n_frames: int = 2000) -> IndexItem:
    """Hashes whose values survive the index's quantisation exactly."""
    h = Hashes(
        key=rng.integers(0, KEY_SPACE, n).astype(np.uint32),
        t=rng.integers(0, n_frames, n).astype(np.float32),
        f=rng.integers(0, 180, n).astype(np.float32),
        span=(rng.integers(16, 250, n) / 4).astype(np.float32),
    )
    return IndexItem(ref_key, h, n_frames)


Entry = tuple[int, int, float, float, float]  # ref_key, key, t, f, span


def expected(items: list[IndexItem], keys: np.ndarray) -> Counter[Entry]:
    want = set(int(k) for k in keys)
    c: Counter[Entry] = Counter()
    for it in items:
        h = it.hashes
        for k, t, f, s in zip(h.key, h.t, h.f, h.span, strict=True):
            if int(k) in want:
                c[(it.ref_key, int(k), float(t), float(f), float(s))] += 1
    return c


def found(ix: SegmentIndex, keys: np.ndarray) -> Counter[Entry]:
    cand = ix.lookup(keys)
    assert np.unique(cand.entry).size == len(cand), "entry ids are unique"
    return Counter(
        (int(r), int(keys[q]), float(t), float(f), float(s))
        for q, r, t, f, s in zip(cand.qidx, cand.ref_key, cand.t, cand.f, cand.span, strict=True)
    )


def all_keys() -> np.ndarray:
    return np.arange(KEY_SPACE, dtype=np.uint32)


def test_protocol(tmp_path: Path) -> None:
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        assert isinstance(ix, IndexBackend)


def test_add_lookup_returns_exactly_the_inserted_entries(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    items = [random_item(k, rng) for k in (3, 7, 11)]
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        ix.add(items)
        assert ix.ref_keys() == {3, 7, 11}
        assert found(ix, all_keys()) == expected(items, all_keys())
        some = rng.choice(KEY_SPACE, 25, replace=False).astype(np.uint32)
        assert found(ix, some) == expected(items, some)
        missing = np.array([KEY_SPACE + 5, 2**31], np.uint32)
        assert len(ix.lookup(missing)) == 0
        st = ix.stats()
        assert st.references == 3 and st.entries == 900 and st.segments == 1
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:  # persisted
        assert found(ix, all_keys()) == expected(items, all_keys())


def test_duplicate_query_keys_report_each_position(tmp_path: Path) -> None:
    items = [random_item(1, np.random.default_rng(2))]
    k = int(items[0].hashes.key[0])
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        ix.add(items)
        cand = ix.lookup(np.array([k, k], np.uint32))
        per_pos = Counter(int(q) for q in cand.qidx)
        assert per_pos[0] == per_pos[1] == int((items[0].hashes.key == k).sum())


def test_re_adding_a_ref_key_is_a_no_op(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    first = random_item(5, rng)
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        ix.add([first])
        before = ix.stats()
        ix.add([random_item(5, rng)])  # same key, other hashes: ignored
        assert ix.stats() == before
        assert found(ix, all_keys()) == expected([first], all_keys())
        # in a mixed batch only the new reference goes in
        other = random_item(6, rng)
        ix.add([random_item(5, rng), other])
        assert ix.ref_keys() == {5, 6}
        assert found(ix, all_keys()) == expected([first, other], all_keys())


def test_remove_hides_entries(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    items = [random_item(k, rng) for k in (1, 2, 3)]
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        ix.add(items)
        assert ix.remove([2, 99]) == 1
        assert ix.remove([2]) == 0
        assert ix.ref_keys() == {1, 3}
        assert found(ix, all_keys()) == expected([items[0], items[2]], all_keys())
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        assert found(ix, all_keys()) == expected([items[0], items[2]], all_keys())
        ix.compact()  # drops the dead entries for good
        assert ix.stats().entries == 600
        assert found(ix, all_keys()) == expected([items[0], items[2]], all_keys())


def test_merge_after_many_small_adds_keeps_lookups(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    items = []
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        for k in range(1, 3 * MAX_SEGMENTS):
            it = random_item(k, rng, n=int(rng.integers(20, 200)),
                             n_frames=int(rng.integers(50, 3000)))
            items.append(it)
            ix.add([it])
            assert ix.stats().segments <= MAX_SEGMENTS
        assert found(ix, all_keys()) == expected(items, all_keys())
        gone = {it.ref_key for it in items[::3]}
        ix.remove(sorted(gone))
        kept = [it for it in items if it.ref_key not in gone]
        assert found(ix, all_keys()) == expected(kept, all_keys())
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        assert found(ix, all_keys()) == expected(kept, all_keys())
        ix.compact()
        assert ix.stats().segments == 1
        assert found(ix, all_keys()) == expected(kept, all_keys())


def _segment_ids(path: Path) -> set[int]:
    with sqlite3.connect(path / "manifest.sqlite") as db:
        return {r[0] for r in db.execute("SELECT id FROM segments")}


def test_orphan_files_are_removed_on_open(tmp_path: Path) -> None:
    items = [random_item(1, np.random.default_rng(6))]
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        ix.add(items)
    live = sorted(p.name for p in tmp_path.glob("seg-*"))
    # what a crash between writing a segment and committing the manifest leaves behind
    for name in ("seg-000777.keys.npy", "seg-000777.vals.npy", "seg-000002.keys.npy.tmp"):
        (tmp_path / name).write_bytes(b"half-written")
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        assert sorted(p.name for p in tmp_path.glob("seg-*")) == live
        assert {int(n[4:10]) for n in live} == _segment_ids(tmp_path)
        assert found(ix, all_keys()) == expected(items, all_keys())


def test_missing_live_segment_is_reported(tmp_path: Path) -> None:
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        ix.add([random_item(1, np.random.default_rng(7))])
    next(tmp_path.glob("seg-*.vals.npy")).unlink()
    with pytest.raises(IndexCorrupt, match="missing"):
        SegmentIndex(tmp_path, fingerprint=FP)


def test_fingerprint_name_is_checked(tmp_path: Path) -> None:
    with SegmentIndex(tmp_path, fingerprint="triplet-1") as ix:
        ix.add([random_item(1, np.random.default_rng(8))])
    with pytest.raises(IndexCorrupt, match="triplet-1") as err:
        SegmentIndex(tmp_path, fingerprint="triplet-2")
    assert err.value.code == "index_corrupt"
    with SegmentIndex(tmp_path, fingerprint="triplet-1") as ix:
        assert ix.ref_keys() == {1}


def test_empty_index(tmp_path: Path) -> None:
    with SegmentIndex(tmp_path, fingerprint=FP) as ix:
        assert len(ix.lookup(all_keys())) == 0
        assert ix.ref_keys() == set()
        assert ix.remove([1]) == 0
        ix.add([])
        assert ix.stats().entries == 0
