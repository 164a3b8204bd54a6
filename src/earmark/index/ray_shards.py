# SPDX-License-Identifier: Apache-2.0
"""Index shards on Ray: each shard a set of actors over one on-disk :class:`SegmentIndex`.

Layout (see :class:`~earmark.index.sharded.ShardLayout`): shard ``i`` holds a range of
reference keys in ``<index folder>/<name>``. On Ray, each shard is served by ``replicas``
actors that open *the same directory*:

- **replica 0 owns the shard**: it alone receives adds and removes (each atomic in
  :class:`SegmentIndex`: new segment files, fsync, one manifest transaction). After a write
  the client has every other replica re-read the manifest
  (:meth:`SegmentIndex.refresh`) before the call returns, so a lookup after an add sees it.
- **every replica answers lookups**, the owner included, in turn. Replicas on one node share
  the segment files through the page cache (they are memory-mapped), so R replicas cost one
  copy of the shard in memory, not R; we chose one directory over R copies for that, and
  because a copy per replica would turn every add into R writes that can disagree. On
  several nodes the index folder must be on storage every node mounts at the same path.

A replica that dies is restarted by Ray (``max_restarts``) from its directory: its state is
what the manifest says, nothing else. A lookup whose replica died is sent again to the next
replica of the shard (lookups are idempotent), and when every replica is down the client
waits for the restart, up to ``retry_s``; a write whose owner died is sent again once the
owner is back (re-adding a reference already present is a no-op, so a retried add cannot
add twice). A query therefore gets exactly one answer from each shard, or an error — never
a partial merge.

Ray is an optional extra (``pip install 'earmark[ray]'``), imported on first use.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from earmark.errors import RayMissing, ShardUnavailable
from earmark.identify.fingerprinter import QueryPrints
from earmark.identify.match import MatchParams, RankedAlignments
from earmark.index.base import Candidates, IndexItem, IndexStats
from earmark.index.segments import SegmentIndex
from earmark.index.sharded import (
    Pending,
    PendingCounts,
    PendingVote,
    ShardedIndex,
    ShardLayout,
    vote_on,
)

ADDRESS_ENV = "EARMARK_RAY_ADDRESS"
MAX_RESTARTS = 8  #: restarts of one replica actor before Ray gives it up
RETRY_S = 60.0  #: how long a call waits for a shard to come back before it fails


def require_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayMissing` saying how to install it."""
    use_token()  # before the import: Ray reads the mode once
    try:
        import ray
    except ImportError as exc:
        raise RayMissing(
            "Ray is not installed: pip install 'earmark[ray]' (or leave EARMARK_RAY_ADDRESS "
            "unset to run on this machine alone)"
        ) from exc
    return ray


def use_token() -> None:
    """Send Ray's token (``~/.ray/auth_token``) to clusters when it exists and no
    ``RAY_AUTH_MODE`` says otherwise: ``earmark cluster start`` starts clusters that want it."""
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def connect(address: str | None = None, **init_kwargs: Any) -> ModuleType:
    """Connect this process to a Ray cluster unless it is connected; returns ``ray``.

    Parameters
    ----------
    address : str, optional
        ``host:port`` of a running cluster (``earmark cluster start`` prints it), ``auto``, or
        ``local`` for a private in-process cluster; default ``$EARMARK_RAY_ADDRESS``, else
        ``local``.
    """
    ray = require_ray()
    if not ray.is_initialized():
        address = address or os.environ.get(ADDRESS_ENV) or "local"
        kw: dict[str, Any] = {"log_to_driver": False}
        if address == "local":
            kw["include_dashboard"] = False
        kw.update(init_kwargs)
        ray.init(address=address, **kw)
    return ray


class ShardServer:
    """The body of one replica actor: a :class:`SegmentIndex` on the shard's directory."""

    def __init__(self, path: str, fingerprint: str, owner: bool) -> None:
        self.index = SegmentIndex(path, fingerprint=fingerprint)
        self.owner = owner

    def lookup_counts(self, keys: np.ndarray, max_bucket: int | None
                      ) -> tuple[Candidates, np.ndarray]:
        return self.index.lookup_counts(keys, max_bucket=max_bucket)

    def key_counts(self, keys: np.ndarray) -> np.ndarray:
        return self.index.key_counts(keys)

    def vote(self, qp: QueryPrints, stop: np.ndarray | None, max_bucket: int | None,
             params: MatchParams, frame_rate: float) -> RankedAlignments:
        return vote_on(self.index, qp, stop, max_bucket, params, frame_rate)

    def add(self, items: Sequence[IndexItem]) -> int:
        self._check_owner()
        self.index.add(items)
        return self.index.entries

    def remove(self, ref_keys: Sequence[int]) -> tuple[int, int]:
        self._check_owner()
        n = self.index.remove(ref_keys)
        return n, self.index.entries

    def refresh(self) -> int:
        self.index.refresh()
        return self.index.entries

    def compact(self) -> int:
        self._check_owner()
        self.index.compact()
        return self.index.entries

    def ref_keys(self) -> set[int]:
        return self.index.ref_keys()

    def stats(self) -> IndexStats:
        return self.index.stats()

    def entries(self) -> int:
        return self.index.entries

    def pid(self) -> int:
        return os.getpid()

    def _check_owner(self) -> None:
        if not self.owner:
            raise ShardUnavailable("a read-only replica was asked to write (client bug)")


_actor_class: Any = None


def _remote_class(ray: ModuleType) -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0,
                                  num_cpus=0)(ShardServer)
    return _actor_class


class RayShard:
    """One shard on Ray: its replica actors, with retries (a :class:`ShardMember`).

    Parameters
    ----------
    path : path-like
        The shard's directory, as the actors see it.
    replicas : int
        Actors serving the shard; the first one owns it (takes the writes).
    num_cpus : float
        CPUs Ray reserves for each replica (0: schedule freely; a lookup takes one core
        while it runs).
    """

    def __init__(self, path: str | os.PathLike[str], *, fingerprint: str = "",
                 replicas: int = 1, num_cpus: float = 0.0, retry_s: float = RETRY_S) -> None:
        if replicas < 1:
            raise ShardUnavailable("a shard needs at least one replica")
        self.ray = require_ray()
        self.path = os.fspath(Path(path).absolute())
        self.retry_s = retry_s
        self._cls = _remote_class(self.ray).options(num_cpus=num_cpus)
        self._fingerprint = fingerprint
        self._replicas = replicas
        # the owner first: it creates the directory and manifest the others then open
        self.actors = [self._cls.remote(self.path, fingerprint, True)]
        self._entries = 0
        self._turn = itertools.count()

    def start(self) -> Any:
        """Once the owner is up, start the read-only replicas; returns what to wait for."""
        self._entries = int(self.ray.get(self.actors[0].entries.remote()))
        self.actors += [self._cls.remote(self.path, self._fingerprint, False)
                        for _ in range(self._replicas - 1)]
        return [a.pid.remote() for a in self.actors]

    # -- calling with retries ---------------------------------------------------------------
    def _retry(self, first: int, method: str, *args: Any, owner_only: bool = False) -> Any:
        """Call ``method`` on replica ``first``, then on the next ones while they are down."""
        ray = self.ray
        deadline = time.monotonic() + self.retry_s
        n = len(self.actors)
        for attempt in itertools.count():
            i = 0 if owner_only else (first + attempt) % n
            try:
                return ray.get(getattr(self.actors[i], method).remote(*args))
            except ray.exceptions.RayActorError as exc:
                if time.monotonic() > deadline:
                    raise ShardUnavailable(
                        f"shard {self.path}: no replica answered {method} for "
                        f"{self.retry_s:.0f} s ({type(exc).__name__})") from exc
                if owner_only or attempt + 1 >= n:  # all tried: give Ray time to restart
                    time.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)))
        raise AssertionError("unreachable")  # pragma: no cover

    def submit_lookup(self, keys: np.ndarray, max_bucket: int | None) -> Pending:
        return self._submit("lookup_counts", keys, max_bucket)

    def submit_counts(self, keys: np.ndarray) -> PendingCounts:
        return self._submit("key_counts", keys)

    def submit_vote(self, qp: QueryPrints, stop: np.ndarray | None, max_bucket: int | None,
                    params: MatchParams, frame_rate: float) -> PendingVote:
        return self._submit("vote", qp, stop, max_bucket, params, frame_rate)

    def _submit(self, method: str, *args: Any) -> Callable[[], Any]:
        """Call a read on the next replica; waiting retries it on the others if it died."""
        i = next(self._turn) % len(self.actors)
        ref = getattr(self.actors[i], method).remote(*args)

        def wait() -> Any:
            try:
                return self.ray.get(ref)
            except self.ray.exceptions.RayActorError:
                return self._retry(i + 1, method, *args)

        return wait

    def _after_write(self) -> None:
        """Have the read-only replicas see what the owner committed."""
        for a in self.actors[1:]:
            try:
                self.ray.get(a.refresh.remote())
            except self.ray.exceptions.RayActorError:
                pass  # it restarts from the directory, which already holds the write

    def add(self, items: Sequence[IndexItem]) -> None:
        self._entries = int(self._retry(0, "add", list(items), owner_only=True))
        self._after_write()

    def remove(self, ref_keys: Sequence[int]) -> int:
        n, self._entries = self._retry(0, "remove", [int(k) for k in ref_keys], owner_only=True)
        self._after_write()
        return int(n)

    def ref_keys(self) -> set[int]:
        return set(self._retry(0, "ref_keys"))

    def stats(self) -> IndexStats:
        return self._retry(0, "stats")

    @property
    def entries(self) -> int:
        """Entries of the shard as of the last write or refresh through this client."""
        return self._entries

    def refresh(self) -> None:
        self._entries = int(self._retry(0, "refresh", owner_only=True))
        self._after_write()

    def compact(self) -> None:
        self._entries = int(self._retry(0, "compact", owner_only=True))
        self._after_write()

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors = []


def open_ray(folder: str | os.PathLike[str], *, fingerprint: str = "",
             layout: ShardLayout | None = None, replicas: int = 1, num_cpus: float = 0.0,
             address: str | None = None, retry_s: float = RETRY_S) -> ShardedIndex:
    """The shards of ``folder`` (its saved layout unless given) served by Ray actors.

    Connects to Ray first (:func:`connect` with ``address``). The result is an ordinary
    :class:`~earmark.index.base.IndexBackend`: give it to ``Identifier(shards=[...])``.
    """
    connect(address)
    layout = layout or ShardLayout.load(folder)
    members: list[RayShard] = []
    try:  # every shard's owner at once, then every replica at once: startup is slow
        for name in layout.names:
            members.append(RayShard(Path(folder) / name, fingerprint=fingerprint,
                                    replicas=replicas, num_cpus=num_cpus, retry_s=retry_s))
        members[0].ray.get([w for m in members for w in m.start()])
    except BaseException:
        for m in members:
            m.close()
        raise
    return ShardedIndex(layout, members)
