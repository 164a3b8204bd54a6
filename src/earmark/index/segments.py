# SPDX-License-Identifier: Apache-2.0
"""The embedded on-disk index: immutable sorted segments plus a small SQLite manifest.

Layout of a shard directory::

    manifest.sqlite        segments, references (key → segment, base frame), settings
    seg-000001.keys.npy    uint32 hash keys, sorted
    seg-000001.vals.npy    (t: uint32 shard frame, f: uint8 bin, span: uint8 quarter-frames)

Each ``add`` writes one new segment (10 bytes an entry) to temporary files, fsyncs and renames
them, then commits the manifest in one SQLite transaction: a crash at any point leaves either
no trace (orphan files are deleted on the next open) or the whole batch. ``remove`` is a
manifest transaction; the entries are dropped by the next merge. A lookup reads the
memory-mapped arrays of every segment through a bucket directory (offsets of the keys by key
prefix) built in memory the first time the segment is searched, and a coarse table from
shard frame to reference; both are derived from the segment files, which stay the on-disk format.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from earmark.errors import IndexCorrupt
from earmark.identify.hashes import Hashes
from earmark.index.base import Candidates, IndexItem, IndexStats

VAL_DTYPE = np.dtype([("t", "<u4"), ("f", "u1"), ("span", "u1")])
SPAN_SCALE = 4.0  #: spans are stored in quarter frames
MAX_SEGMENTS = 8  #: merge when a shard holds more segments than this

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (id INTEGER PRIMARY KEY, entries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refs (
    ref_key INTEGER PRIMARY KEY, segment INTEGER NOT NULL, base INTEGER NOT NULL,
    n_frames INTEGER NOT NULL, entries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass
class _Segment:
    id: int
    keys: np.ndarray
    vals: np.ndarray
    # references of this segment, sorted by base
    bases: np.ndarray
    ref_keys: np.ndarray
    ends: np.ndarray
    # built on the first lookup (see `_Segment.tables`)
    directory: np.ndarray | None = None
    key_shift: int = 0
    ref_table: np.ndarray | None = None
    t_shift: int = 0

    def tables(self) -> None:
        """Build the key directory and the frame → reference table if missing.

        ``directory[b]`` is the first position whose key has prefix ``key >> key_shift``
        of at least ``b``; ``ref_table[t >> t_shift]`` is the last reference whose base is at
        most the start of that block of frames (−1 if none).
        """
        if self.directory is None:
            n = len(self.keys)
            max_key = int(self.keys[-1]) if n else 0
            bits = max(1, min(max_key.bit_length(), n.bit_length() - 2))
            shift = max(0, max_key.bit_length() - bits)
            directory = _directory(np.asarray(self.keys), shift, (max_key >> shift) + 1)
            self.key_shift = shift
            self.directory = directory
        if self.ref_table is None:
            max_end = int(self.ends.max()) if self.ends.size else 0
            t_shift = max(0, max_end.bit_length() - (4 * self.bases.size).bit_length())
            blocks = np.arange((max_end >> t_shift) + 1, dtype=np.int64) << t_shift
            self.t_shift = t_shift
            self.ref_table = np.searchsorted(self.bases, blocks, side="right") - 1


class SegmentIndex:
    """One shard of the index in a directory (see the module docstring).

    Parameters
    ----------
    path : path-like
        The shard's directory; created if missing.
    fingerprint : str
        Name and version of the fingerprinter whose hashes this shard holds; opening a shard
        made by another fingerprinter raises :class:`IndexCorrupt` (re-index needed).
    """

    name = "segments"

    def __init__(self, path: str | os.PathLike[str], *, fingerprint: str = "") -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lockf = open(self.path / ".lock", "a+")  # held for the lifetime
        self._db = sqlite3.connect(self.path / "manifest.sqlite", isolation_level=None)
        self._segments: dict[int, _Segment] = {}
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._write_lock():
                self._db.executescript(_SCHEMA)
                row = self._db.execute("SELECT v FROM meta WHERE k='fingerprint'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('fingerprint', ?)",
                                     (fingerprint,))
                elif fingerprint and row[0] != fingerprint:
                    raise IndexCorrupt(
                        f"index at {self.path} was built with fingerprint {row[0]!r}, not "
                        f"{fingerprint!r}: rebuild the catalog (earmark catalog add) into a "
                        "new --db"
                    )
                self._remove_orphans()
                self._reload()  # under the lock: no merge can unlink a segment meanwhile
        except BaseException:
            self._db.close()
            self._lockf.close()
            raise

    # -- locking and bookkeeping ------------------------------------------------------------
    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        fcntl.flock(self._lockf, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lockf, fcntl.LOCK_UN)

    def _files(self, seg_id: int) -> tuple[Path, Path]:
        return (self.path / f"seg-{seg_id:06d}.keys.npy", self.path / f"seg-{seg_id:06d}.vals.npy")

    def _remove_orphans(self) -> None:
        live = {r[0] for r in self._db.execute("SELECT id FROM segments")}
        for p in self.path.glob("seg-*"):
            try:
                seg_id = int(p.name[4:10])
            except ValueError:
                continue
            if seg_id not in live or p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
        for seg_id in live:
            for f in self._files(seg_id):
                if not f.exists():
                    raise IndexCorrupt(f"index segment file {f} is missing")

    def _reload(self) -> None:
        rows = self._db.execute("SELECT id FROM segments ORDER BY id").fetchall()
        refs = self._db.execute("SELECT segment, base, ref_key, n_frames FROM refs").fetchall()
        by_seg: dict[int, list[tuple[int, int, int]]] = {}
        for seg, base, key, n in refs:
            by_seg.setdefault(seg, []).append((base, key, base + n))
        segs: dict[int, _Segment] = {}
        for (seg_id,) in rows:
            old = self._segments.get(seg_id)
            if old is not None:
                keys, vals = old.keys, old.vals
            else:
                kf, vf = self._files(seg_id)
                keys = np.load(kf, mmap_mode="r")
                vals = np.load(vf, mmap_mode="r")
            r = sorted(by_seg.get(seg_id, []))
            arr = np.array(r, dtype=np.int64).reshape(-1, 3)
            seg = _Segment(seg_id, keys, vals, arr[:, 0].copy(), arr[:, 1].copy(),
                           arr[:, 2].copy())
            if old is not None:  # the keys did not change, the references may have
                seg.directory, seg.key_shift = old.directory, old.key_shift
            segs[seg_id] = seg
        self._segments = segs

    def _meta_int(self, k: str, default: int) -> int:
        row = self._db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return default if row is None else int(row[0])

    def _write_segment(self, seg_id: int, keys: np.ndarray, vals: np.ndarray) -> None:
        for arr, final in zip((keys, vals), self._files(seg_id), strict=True):
            tmp = final.with_name(final.name + ".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        dfd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- the protocol -----------------------------------------------------------------------
    def add(self, items: Sequence[IndexItem]) -> None:
        with self._write_lock():
            present = self.ref_keys()
            todo = [it for it in items if it.ref_key not in present]
            if not todo:
                return
            base = self._meta_int("next_base", 0)
            seg_id = self._meta_int("next_segment", 1)
            keys, vals, ref_rows = [], [], []
            for it in todo:
                h = it.hashes
                v = np.empty(len(h), VAL_DTYPE)
                v["t"] = base + np.clip(np.rint(h.t), 0, it.n_frames).astype(np.uint32)
                v["f"] = np.clip(np.rint(h.f), 0, 255).astype(np.uint8)
                v["span"] = np.clip(np.rint(h.span * SPAN_SCALE), 0, 255).astype(np.uint8)
                keys.append(h.key.astype(np.uint32))
                vals.append(v)
                ref_rows.append((it.ref_key, seg_id, base, it.n_frames + 1, len(h)))
                base += it.n_frames + 2
            if base >= 2**32:
                raise IndexCorrupt("shard is full (2^32 frames): add a shard")
            k = np.concatenate(keys)
            order = np.argsort(k, kind="stable")
            self._write_segment(seg_id, k[order], np.concatenate(vals)[order])
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO segments VALUES (?, ?)", (seg_id, int(k.size)))
                self._db.executemany("INSERT INTO refs VALUES (?, ?, ?, ?, ?)", ref_rows)
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_base', ?)", (base,))
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('next_segment', ?)", (seg_id + 1,)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                for f in self._files(seg_id):
                    f.unlink(missing_ok=True)
                raise
            self._reload()
            if len(self._segments) > MAX_SEGMENTS:
                self._merge_locked(sorted(self._segments, key=lambda s: len(self._segments[s].keys))
                                   [: MAX_SEGMENTS // 2 + 1])

    def remove(self, ref_keys: Sequence[int]) -> int:
        with self._write_lock():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = 0
                for key in ref_keys:
                    n += self._db.execute("DELETE FROM refs WHERE ref_key=?",
                                          (int(key),)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._reload()
            dead = [s.id for s in self._segments.values()
                    if len(s.keys) and self._live_entries(s.id) < 0.7 * len(s.keys)]
            if dead:
                self._merge_locked(dead)
            return n

    def compact(self) -> None:
        """Merge every segment into one, dropping the entries of removed references."""
        with self._write_lock():
            if self._segments:
                self._merge_locked(list(self._segments))

    def _live_entries(self, seg_id: int) -> int:
        row = self._db.execute("SELECT SUM(entries) FROM refs WHERE segment=?", (seg_id,))
        return int(row.fetchone()[0] or 0)

    def _merge_locked(self, seg_ids: list[int]) -> None:
        keys, vals = [], []
        for sid in seg_ids:
            s = self._segments[sid]
            v = np.asarray(s.vals)
            idx = np.searchsorted(s.bases, v["t"], side="right") - 1
            ok = idx >= 0
            ok[ok] &= v["t"][ok] < s.ends[idx[ok]]
            keys.append(np.asarray(s.keys)[ok])
            vals.append(v[ok])
        k = np.concatenate(keys)
        order = np.argsort(k, kind="stable")
        new_id = self._meta_int("next_segment", 1)
        self._write_segment(new_id, k[order], np.concatenate(vals)[order])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT INTO segments VALUES (?, ?)", (new_id, int(k.size)))
            marks = ",".join("?" * len(seg_ids))
            self._db.execute(f"UPDATE refs SET segment=? WHERE segment IN ({marks})",
                             (new_id, *seg_ids))
            self._db.execute(f"DELETE FROM segments WHERE id IN ({marks})", seg_ids)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_segment', ?)",
                             (new_id + 1,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for sid in seg_ids:
            self._segments.pop(sid, None)
            for f in self._files(sid):
                f.unlink(missing_ok=True)
        self._reload()

    def refresh(self) -> None:
        """Re-read the manifest: see what another process (the shard's writer) committed.

        Read-only replicas that open the same directory call this after each write of the
        owner; segments already mapped are kept, merged-away ones are dropped.
        """
        with self._write_lock():
            self._reload()

    def export(self, ref_keys: Sequence[int] | None = None) -> list[IndexItem]:
        """The stored hashes of references (all when ``ref_keys`` is None), as items to add.

        Adding them to another shard stores the same entries (times, bins and spans are
        stored quantised, and re-quantising them is exact), in the same order per key, so a
        catalog can be split into shards without fingerprinting its audio again.
        """
        rows = self._db.execute("SELECT ref_key, n_frames FROM refs ORDER BY ref_key").fetchall()
        if ref_keys is not None:
            keep = {int(k) for k in ref_keys}
            rows = [r for r in rows if r[0] in keep]
        want = np.array([r[0] for r in rows], np.int64)
        found: dict[int, Hashes] = {}
        for s in self._segments.values():
            v = np.asarray(s.vals)
            ix = np.searchsorted(s.bases, v["t"], side="right") - 1
            ok = ix >= 0
            ok[ok] &= v["t"][ok] < s.ends[ix[ok]]
            ok[ok] &= np.isin(s.ref_keys[ix[ok]], want)
            pos = np.flatnonzero(ok)
            pos = pos[np.argsort(ix[pos], kind="stable")]  # by reference, in key order in each
            cuts = np.flatnonzero(np.diff(ix[pos])) + 1
            for run in np.split(pos, cuts) if pos.size else []:
                r = int(ix[run[0]])
                base = int(s.bases[r])
                found[int(s.ref_keys[r])] = Hashes(
                    np.asarray(s.keys)[run].astype(np.uint32),
                    (v["t"][run] - base).astype(np.float32), v["f"][run].astype(np.float32),
                    v["span"][run].astype(np.float32) / np.float32(SPAN_SCALE))
        return [IndexItem(int(k), found.get(k, Hashes.concat([])), int(n) - 1) for k, n in rows]

    def lookup(self, keys: np.ndarray, *, max_bucket: int | None = None) -> Candidates:
        return self.lookup_counts(keys, max_bucket=max_bucket)[0]

    def lookup_counts(self, keys: np.ndarray, *, max_bucket: int | None = None
                      ) -> tuple[Candidates, np.ndarray]:
        """:meth:`lookup`, and how many entries the shard holds for each query key.

        The counts (``int64``, one per key, before ``max_bucket`` drops any) let a client of
        several shards apply one stop-word rule to their sum, as one shard holding them all
        would (:class:`earmark.index.sharded.ShardedIndex`).
        """
        keys = np.ascontiguousarray(keys, np.uint32)
        # a key more common than max_bucket in the shard tells nothing (a stop word): it
        # matches nothing, however the shard's entries happen to be split into segments
        segs, spans = [], []
        per_key = np.zeros(keys.size, np.int64)
        for s in self._segments.values():
            if not len(s.keys) or not len(s.bases):
                continue
            s.tables()
            assert s.directory is not None
            lo, cnt = _bucket_spans(keys, np.asarray(s.keys), s.directory, s.key_shift)
            if cnt.any():
                segs.append(s)
                spans.append((lo, cnt))
                per_key += cnt
        if max_bucket is not None:
            stop = per_key > max_bucket
            for _, cnt in spans:
                cnt[stop] = 0
        total = int(sum(int(cnt.sum()) for _, cnt in spans))
        out = Candidates(
            qidx=np.empty(total, np.int64), ref_key=np.empty(total, np.int64),
            entry=np.empty(total, np.int64), t=np.empty(total, np.float32),
            f=np.empty(total, np.float32), span=np.empty(total, np.float32),
        )
        at = 0
        for s, (lo, cnt) in zip(segs, spans, strict=True):
            vals = np.asarray(s.vals)
            if vals.dtype != VAL_DTYPE:  # the kernel reads the packed little-endian layout
                vals = vals.astype(VAL_DTYPE)
            raw = vals.view(np.uint8)
            at = _gather(lo, cnt, raw, s.bases, s.ends, s.ref_keys, s.ref_table, s.t_shift,
                         np.int64(s.id) << 40, at, out.qidx, out.ref_key, out.entry, out.t,
                         out.f, out.span)
        if at < total:  # entries of removed references
            out = Candidates(*(getattr(out, a)[:at] for a in
                               ("qidx", "ref_key", "entry", "t", "f", "span")))
        return out, per_key

    def key_counts(self, keys: np.ndarray) -> np.ndarray:
        """How many entries the shard holds for each key (``int64``): the first half of a
        sharded query's two steps (the stop words are decided on the sum over shards)."""
        keys = np.ascontiguousarray(keys, np.uint32)
        per_key = np.zeros(keys.size, np.int64)
        for s in self._segments.values():
            if len(s.keys) and len(s.bases):
                s.tables()
                assert s.directory is not None
                per_key += _bucket_spans(keys, np.asarray(s.keys), s.directory,
                                         s.key_shift)[1]
        return per_key

    def ref_keys(self) -> set[int]:
        return {r[0] for r in self._db.execute("SELECT ref_key FROM refs")}

    @property
    def entries(self) -> int:
        """Index entries held (including those of removed references not yet merged away)."""
        return sum(len(s.keys) for s in self._segments.values())

    def stats(self) -> IndexStats:
        n_refs = self._db.execute("SELECT COUNT(*) FROM refs").fetchone()[0]
        entries = sum(len(s.keys) for s in self._segments.values())
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return IndexStats(references=int(n_refs), entries=int(entries), index_bytes=int(size),
                          segments=len(self._segments))

    def close(self) -> None:
        self._segments = {}
        self._db.close()
        self._lockf.close()

    def __enter__(self) -> SegmentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- lookup kernels -------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _directory(keys: np.ndarray, shift: int, n_buckets: int) -> np.ndarray:  # pragma: no cover
    """Offsets of the sorted ``keys`` by prefix ``key >> shift`` (``n_buckets + 1`` values)."""
    d = np.empty(n_buckets + 1, np.int64)
    b = 0
    for i in range(keys.size):
        p = np.int64(keys[i]) >> shift
        while b <= p:
            d[b] = i
            b += 1
    while b <= n_buckets:
        d[b] = keys.size
        b += 1
    return d


@numba.njit(cache=True, nogil=True)
def _bucket_spans(q: np.ndarray, keys: np.ndarray, directory: np.ndarray, shift: int
                  ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """First position and count of each query key in ``keys``."""
    lo = np.zeros(q.size, np.int64)
    cnt = np.zeros(q.size, np.int64)
    n_buckets = directory.size - 1
    for i in range(q.size):
        k = q[i]
        b = np.int64(k) >> shift
        if b >= n_buckets:
            continue
        a = directory[b]
        e = directory[b + 1]
        if shift:
            lo_, hi_ = a, e  # lower bound of k
            while lo_ < hi_:
                m = (lo_ + hi_) >> 1
                if keys[m] < k:
                    lo_ = m + 1
                else:
                    hi_ = m
            a = lo_
            hi_ = e  # upper bound of k
            while lo_ < hi_:
                m = (lo_ + hi_) >> 1
                if keys[m] <= k:
                    lo_ = m + 1
                else:
                    hi_ = m
            e = lo_
        lo[i] = a
        cnt[i] = e - a
    return lo, cnt


@numba.njit(cache=True, nogil=True)
def _gather(lo, cnt, raw, bases, ends, ref_keys, ref_table, t_shift, entry_base, at,
            qidx, ref_key, entry, t, f, span) -> int:  # pragma: no cover
    """Write the entries of the spans ``lo[i]:lo[i]+cnt[i]`` from ``at`` on; return the end.

    ``raw`` is the values array as bytes (``VAL_DTYPE``, little-endian); entries outside
    every live reference are skipped.
    """
    n_ref = bases.size
    last_block = ref_table.size - 1
    for i in range(lo.size):
        for p in range(lo[i], lo[i] + cnt[i]):
            o = 6 * p
            tt = (np.int64(raw[o]) | (np.int64(raw[o + 1]) << 8) | (np.int64(raw[o + 2]) << 16)
                  | (np.int64(raw[o + 3]) << 24))
            r = ref_table[min(tt >> t_shift, last_block)]
            while r + 1 < n_ref and bases[r + 1] <= tt:
                r += 1
            if r < 0 or tt >= ends[r]:
                continue
            qidx[at] = i
            ref_key[at] = ref_keys[r]
            entry[at] = entry_base | p
            t[at] = np.float32(tt - bases[r])
            f[at] = np.float32(raw[o + 4])
            span[at] = np.float32(raw[o + 5]) / np.float32(SPAN_SCALE)
            at += 1
    return at
