# SPDX-License-Identifier: Apache-2.0
"""Several shards seen as one index: ranges of reference keys, one stop-word rule.

A catalog's index is split into shards by ranges of reference keys (:class:`ShardLayout`):
shard ``i`` holds the keys from ``starts[i]`` up to the next start. Adds and removes are
routed by key; a lookup asks every shard and merges what they return.

The merge is where a naive fan-out goes wrong. A key holding more than ``max_bucket``
entries is a stop word and matches nothing; asked shard by shard, each shard compares its
*own* count with the cap, so a key common in the catalog but spread over several shards
survives in each, and the matcher then sees candidates one shard holding everything would
have dropped. :class:`ShardedIndex` therefore asks each shard for its per-key counts as well
(:meth:`~earmark.index.segments.SegmentIndex.lookup_counts`), sums them and applies the cap
to the sum: the candidates, and so every score, alignment and confidence, are those of one
shard holding the whole catalog, whatever the number of shards. Each shard still drops the
keys over the cap in its own count (over the cap there means over it in the sum), so the
stop words' entries do not travel.

Shards are *members*: local :class:`~earmark.index.segments.SegmentIndex` instances
(:class:`LocalShard`) or Ray actors (:mod:`earmark.index.ray_shards`); the matcher sees one
:class:`~earmark.index.base.IndexBackend` either way.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from earmark.errors import CatalogError, IndexCorrupt
from earmark.identify.fingerprinter import QueryPrints
from earmark.identify.match import (
    Alignment,
    MatchParams,
    RankedAlignments,
    align_ranked,
    merge_ranked,
)
from earmark.index.base import Candidates, IndexItem, IndexStats
from earmark.index.segments import SegmentIndex

LAYOUT_FILE = "layout.json"
_FIELDS = ("qidx", "ref_key", "entry", "t", "f", "span")

#: a lookup on its way: call it for ``(candidates, per-key counts)``
Pending = Callable[[], tuple[Candidates, np.ndarray]]
PendingCounts = Callable[[], np.ndarray]
PendingVote = Callable[[], RankedAlignments]


@dataclass(frozen=True)
class ShardLayout:
    """Which shard holds which reference keys.

    Attributes
    ----------
    names : tuple of str
        Shard directories, relative to the index folder (``shard-0000``, ...).
    starts : tuple of int
        First key of each shard's range, ascending; the last range is open. Keys below
        ``starts[0]`` go to the first shard.
    """

    names: tuple[str, ...] = ("shard-0000",)
    starts: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.starts):
            raise IndexCorrupt("a shard layout needs one start per shard")
        if list(self.starts) != sorted(set(self.starts)):
            raise IndexCorrupt(f"shard starts must ascend strictly: {self.starts}")

    def __len__(self) -> int:
        return len(self.names)

    def shard_of(self, ref_key: int) -> int:
        """Index of the shard whose range holds ``ref_key``."""
        return max(0, bisect.bisect_right(self.starts, int(ref_key)) - 1)

    @classmethod
    def even(cls, ref_keys: Sequence[int], n: int, *, prefix: str = "shard") -> ShardLayout:
        """``n`` ranges holding about as many of ``ref_keys`` each (for splitting a catalog).

        The last range is open: keys added later, larger than all present, go there.
        """
        if n < 1:
            raise CatalogError("the number of shards must be at least 1")
        keys = sorted({int(k) for k in ref_keys})
        starts = [0]
        for i in range(1, n):
            k = keys[len(keys) * i // n] if keys else i
            starts.append(max(k, starts[-1] + 1))
        return cls(tuple(f"{prefix}-{i:04d}" for i in range(n)), tuple(starts))

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ShardLayout:
        """The layout saved in ``folder`` (an index folder); one shard when none is saved."""
        p = Path(folder) / LAYOUT_FILE
        if not p.is_file():
            return cls()
        try:
            d = json.loads(p.read_text())
            return cls(tuple(s["name"] for s in d["shards"]),
                       tuple(int(s["start"]) for s in d["shards"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexCorrupt(f"unreadable shard layout {p}: {exc}") from exc

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write the layout to ``folder`` atomically (temporary file, fsync, rename)."""
        p = Path(folder) / LAYOUT_FILE
        tmp = p.with_name(p.name + ".tmp")
        body = {"shards": [{"name": n, "start": s}
                           for n, s in zip(self.names, self.starts, strict=True)]}
        with open(tmp, "w") as fh:
            json.dump(body, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)


class ShardMember(Protocol):
    """What :class:`ShardedIndex` needs of one shard, wherever it runs."""

    def submit_lookup(self, keys: np.ndarray, max_bucket: int | None) -> Pending:
        """Start a lookup; the returned callable waits for ``(candidates, counts)``."""
        ...

    def submit_counts(self, keys: np.ndarray) -> PendingCounts:
        """Start counting the shard's entries per key; the callable waits for them."""
        ...

    def submit_vote(self, qp: QueryPrints, stop: np.ndarray | None, max_bucket: int | None,
                    params: MatchParams, frame_rate: float) -> PendingVote:
        """Start the shard's own vote on a query (:func:`vote_on`); the callable waits
        for its :class:`RankedAlignments`."""
        ...

    def add(self, items: Sequence[IndexItem]) -> None: ...

    def remove(self, ref_keys: Sequence[int]) -> int: ...

    def ref_keys(self) -> set[int]: ...

    def stats(self) -> IndexStats: ...

    @property
    def entries(self) -> int: ...

    def refresh(self) -> None: ...

    def compact(self) -> None:
        """Merge the shard's segments into one (one search per lookup)."""
        ...

    def close(self) -> None: ...


class LocalShard:
    """A :class:`SegmentIndex` in this process as a :class:`ShardMember`."""

    def __init__(self, index: SegmentIndex) -> None:
        self.index = index

    def submit_lookup(self, keys: np.ndarray, max_bucket: int | None) -> Pending:
        res = self.index.lookup_counts(keys, max_bucket=max_bucket)
        return lambda: res

    def submit_counts(self, keys: np.ndarray) -> PendingCounts:
        res = self.index.key_counts(keys)
        return lambda: res

    def submit_vote(self, qp: QueryPrints, stop: np.ndarray | None, max_bucket: int | None,
                    params: MatchParams, frame_rate: float) -> PendingVote:
        res = vote_on(self.index, qp, stop, max_bucket, params, frame_rate)
        return lambda: res

    def add(self, items: Sequence[IndexItem]) -> None:
        self.index.add(items)

    def remove(self, ref_keys: Sequence[int]) -> int:
        return self.index.remove(ref_keys)

    def ref_keys(self) -> set[int]:
        return self.index.ref_keys()

    def stats(self) -> IndexStats:
        return self.index.stats()

    @property
    def entries(self) -> int:
        return self.index.entries

    def refresh(self) -> None:
        self.index.refresh()

    def compact(self) -> None:
        self.index.compact()

    def close(self) -> None:
        self.index.close()


class ShardedIndex:
    """Shards by ranges of reference keys behind one :class:`IndexBackend` (module docstring).

    Parameters
    ----------
    layout : ShardLayout
        Which member holds which keys.
    members : sequence of ShardMember
        One per shard of ``layout``, in its order.
    """

    name = "sharded"

    def __init__(self, layout: ShardLayout, members: Sequence[ShardMember]) -> None:
        if len(members) != len(layout):
            raise IndexCorrupt(f"{len(layout)} shards in the layout, {len(members)} opened")
        self.layout = layout
        self.members = list(members)

    # -- writes -----------------------------------------------------------------------------
    def route(self, ref_keys: Sequence[int]) -> dict[int, list[int]]:
        """Shard number → the given keys it holds (only shards with keys)."""
        out: dict[int, list[int]] = {}
        for k in ref_keys:
            out.setdefault(self.layout.shard_of(k), []).append(int(k))
        return out

    def add(self, items: Sequence[IndexItem]) -> None:
        """Add each item to the shard of its key; all or none.

        Each shard's add is atomic. When one fails, the references already added to other
        shards by this call are removed again before the error is raised (and a catalog's
        repair removes any that a crash left behind: they have no database row).
        """
        groups: dict[int, list[IndexItem]] = {}
        for it in items:
            groups.setdefault(self.layout.shard_of(it.ref_key), []).append(it)
        done: list[int] = []
        try:
            for i in sorted(groups):
                before = self.members[i].ref_keys()
                self.members[i].add(groups[i])
                done.append(i)
                groups[i] = [it for it in groups[i] if it.ref_key not in before]
        except BaseException:
            for i in done:
                if groups[i]:
                    self.members[i].remove([it.ref_key for it in groups[i]])
            raise

    def remove(self, ref_keys: Sequence[int]) -> int:
        return sum(self.members[i].remove(keys) for i, keys in self.route(ref_keys).items())

    # -- reads ------------------------------------------------------------------------------
    def lookup(self, keys: np.ndarray, *, max_bucket: int | None = None) -> Candidates:
        return self.lookup_counts(keys, max_bucket=max_bucket)[0]

    def lookup_counts(self, keys: np.ndarray, *, max_bucket: int | None = None
                      ) -> tuple[Candidates, np.ndarray]:
        """Ask every shard at once, then drop the keys whose *summed* count is over the cap."""
        keys = np.ascontiguousarray(keys, np.uint32)
        pending = [m.submit_lookup(keys, max_bucket) for m in self.members]
        parts, counts = [], np.zeros(keys.size, np.int64)
        for p in pending:
            cand, cnt = p()
            parts.append(cand)
            counts += cnt
        if max_bucket is not None and len(parts) > 1:
            stop = counts > max_bucket
            if stop.any():
                parts = [_without(c, stop) for c in parts]
        return Candidates.concat(parts), counts

    def align(self, qp: QueryPrints, *, max_bucket: int | None, params: MatchParams,
              frame_rate: float) -> list[Alignment]:
        """Each shard votes on its own references; their votes are merged into the
        alignments one shard holding everything finds (:func:`merge_ranked`).

        Two steps: the shards' entry counts per key, summed, decide the stop words (one rule,
        as :meth:`lookup_counts`); then every shard looks the query up without them and
        votes, and only its alignments travel back, not its candidates (~10^5–10^6 for a
        5 s query).
        """
        keys = np.ascontiguousarray(qp.hashes.key, np.uint32)
        stop = None
        if max_bucket is not None and len(self.members) > 1:
            counts = np.zeros(keys.size, np.int64)
            for p in [m.submit_counts(keys) for m in self.members]:
                counts += p()
            stop = counts > max_bucket
        pending = [m.submit_vote(qp, stop, max_bucket, params, frame_rate)
                   for m in self.members]
        return merge_ranked([p() for p in pending], params)

    def ref_keys(self) -> set[int]:
        out: set[int] = set()
        for m in self.members:
            out |= m.ref_keys()
        return out

    @property
    def entries(self) -> int:
        """Index entries in all shards (the stop-word cap is derived from this sum)."""
        return sum(m.entries for m in self.members)

    def stats(self) -> IndexStats:
        st = [m.stats() for m in self.members]
        return IndexStats(references=sum(s.references for s in st),
                          entries=sum(s.entries for s in st),
                          index_bytes=sum(s.index_bytes for s in st),
                          segments=sum(s.segments for s in st))

    def refresh(self) -> None:
        """Re-read every shard's manifest (see :meth:`SegmentIndex.refresh`)."""
        for m in self.members:
            m.refresh()

    def compact(self) -> None:
        """Merge each shard's segments into one (``catalog add`` does at the end of a run)."""
        for m in self.members:
            m.compact()

    def close(self) -> None:
        for m in self.members:
            m.close()
        self.members = []

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def vote_on(index: SegmentIndex, qp: QueryPrints, stop: np.ndarray | None,
            max_bucket: int | None, params: MatchParams, frame_rate: float
            ) -> RankedAlignments:
    """One shard's vote on a query: its candidates less the catalog's stop words."""
    cand, _ = index.lookup_counts(qp.hashes.key, max_bucket=max_bucket)
    if stop is not None and stop.any():
        cand = _without(cand, stop)
    return align_ranked(qp, cand, params, frame_rate)


def _without(c: Candidates, stop: np.ndarray) -> Candidates:
    keep = ~stop[c.qidx]
    if keep.all():
        return c
    return Candidates(*(getattr(c, a)[keep] for a in _FIELDS))


def open_local(folder: str | os.PathLike[str], *, fingerprint: str = "",
               layout: ShardLayout | None = None) -> ShardedIndex:
    """The shards of ``folder`` (its saved layout unless given) as local segment indexes."""
    layout = layout or ShardLayout.load(folder)
    members: list[ShardMember] = []
    try:
        for name in layout.names:
            members.append(LocalShard(SegmentIndex(Path(folder) / name, fingerprint=fingerprint)))
    except BaseException:
        for m in members:
            m.close()
        raise
    return ShardedIndex(layout, members)
