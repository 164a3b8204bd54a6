# SPDX-License-Identifier: Apache-2.0
"""The index protocol. One instance is one shard: a set of references with their hashes.

A query fans out to every shard (``lookup``) and the matcher merges what they return, so
the same matcher serves one in-process shard or many remote ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from earmark.identify.hashes import Hashes


@dataclass
class IndexItem:
    """One reference to add: its catalog key, its hashes and its length in frames."""

    ref_key: int
    hashes: Hashes
    n_frames: int


@dataclass
class Candidates:
    """Index entries whose key equals a query key.

    Attributes
    ----------
    qidx : np.ndarray [shape=(n,), dtype=int64]   index of the query hash
    ref_key : np.ndarray [shape=(n,), dtype=int64]
    entry : np.ndarray [shape=(n,), dtype=int64]   shard-unique id of the index entry
    t : np.ndarray [shape=(n,), dtype=float32]   anchor time in the reference, frames
    f : np.ndarray [shape=(n,), dtype=float32]   anchor frequency, bins
    span : np.ndarray [shape=(n,), dtype=float32]   triplet span, frames
    """

    qidx: np.ndarray
    ref_key: np.ndarray
    entry: np.ndarray
    t: np.ndarray
    f: np.ndarray
    span: np.ndarray

    def __len__(self) -> int:
        return int(self.qidx.size)

    def take(self, keep: np.ndarray) -> Candidates:
        """The candidates where ``keep`` (a boolean mask or indices; ``qidx`` unchanged)."""
        return Candidates(self.qidx[keep], self.ref_key[keep], self.entry[keep], self.t[keep],
                          self.f[keep], self.span[keep])

    @staticmethod
    def concat(parts: Sequence[Candidates]) -> Candidates:
        names = ("qidx", "ref_key", "entry", "t", "f", "span")
        if not parts:
            return Candidates(
                *(np.zeros(0, np.int64) for _ in range(3)),
                *(np.zeros(0, np.float32) for _ in range(3)),
            )
        if len(parts) == 1:  # one shard: no copy (a 5 s query draws ~10^5–10^6 candidates)
            return parts[0]
        return Candidates(*(np.concatenate([getattr(p, a) for p in parts]) for a in names))


@dataclass
class IndexStats:
    references: int
    entries: int
    index_bytes: int
    segments: int


@runtime_checkable
class IndexBackend(Protocol):
    """Batch add / remove / lookup over one shard. Adds and removes are atomic per call."""

    name: str

    def add(self, items: Sequence[IndexItem]) -> None:
        """Add references, all or none; a ``ref_key`` already present is skipped."""
        ...

    def remove(self, ref_keys: Sequence[int]) -> int:
        """Remove references; returns how many were present."""
        ...

    def lookup(self, keys: np.ndarray, *, max_bucket: int | None = None) -> Candidates:
        """Every entry whose key is in ``keys`` (uint32), with the position of the query key.

        Keys holding more than ``max_bucket`` entries in a segment are skipped (stop words).
        """
        ...

    def ref_keys(self) -> set[int]:
        """The references this shard holds."""
        ...

    def stats(self) -> IndexStats: ...

    def close(self) -> None: ...
