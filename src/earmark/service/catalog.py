# SPDX-License-Identifier: Apache-2.0
"""Catalog service: open, add (atomic, idempotent, parallel), list, remove, stats, repair.

A catalog is a folder ``home`` holding ``catalog.sqlite`` (the references, see
:mod:`earmark.store.catalog`) and ``index/shard-0000`` (a :class:`SegmentIndex`), or, once
split (:func:`earmark.service.shards.reshard_catalog`), the shards that
``index/layout.json`` names, each holding a range of reference keys
(:class:`~earmark.index.sharded.ShardedIndex`), served in this process or by Ray actors.

Atomicity of :func:`add_references`, batch by batch:

1. fingerprint the batch's files (in worker processes when ``jobs > 1``);
2. insert their rows as ``pending`` and commit;
3. add their hashes to the index (one atomic call);
4. mark the rows ``ready`` and commit.

A crash (``kill -9``) between any two steps is resolved by :meth:`Catalog.repair`, run by the
next process that opens the catalog: a pending row whose key the index holds becomes ready,
other pending rows are deleted, and index references without a row are removed. Re-adding the
same audio is a no-op (the SHA-256 of the file is unique), so running the same ``add`` again
completes an interrupted one. One process writes at a time (``<home>/.writer.lock``).
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import functools
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict

from earmark.audio.decode import DEFAULT_MAX_SECONDS
from earmark.errors import (
    CatalogError,
    EarmarkError,
    FileMissing,
    InputError,
    UnknownReference,
)
from earmark.identify.constellation import of_blob
from earmark.identify.fingerprinter import Fingerprinter, TripletFingerprinter
from earmark.identify.identifier import Identifier
from earmark.identify.verify import SketchCache
from earmark.index.base import IndexItem
from earmark.index.segments import SegmentIndex
from earmark.index.sharded import ShardedIndex, ShardLayout, open_local
from earmark.service.ingest import (
    AddOutcome,
    FingerprintResult,
    InputFile,
    collect_inputs,
    fingerprint_file,
    hash_file,
)
from earmark.store.catalog import PENDING, READY, CatalogStore, Reference
from earmark.utc import UtcDatetime

BATCH_SIZE = 16  #: references committed together (one index segment per batch)
SHARD = "shard-0000"


# -- results --------------------------------------------------------------------------------
class ReferenceOut(BaseModel):
    """A reference as users see it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str | None
    artist: str | None
    owner: str | None
    isrc: str | None
    source: str
    sha256: str
    duration_ms: int
    created_at: UtcDatetime
    status: str


class AddReport(BaseModel):
    items: list[AddOutcome] = []

    def count(self, status: str) -> int:
        return sum(1 for o in self.items if o.status == status)

    @property
    def added(self) -> int:
        return self.count("added")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")


@dataclass
class RepairReport:
    """What :meth:`Catalog.repair` changed (all zero on a clean catalog)."""

    completed: int = 0  #: pending rows whose hashes were in the index → ready
    dropped: int = 0  #: pending rows not in the index → deleted (their add did not finish)
    lost: int = 0  #: ready rows missing from the index → deleted (re-add their files)
    orphans: int = 0  #: index references without a row → removed from the index

    def __bool__(self) -> bool:
        return bool(self.completed or self.dropped or self.lost or self.orphans)


# -- the catalog ----------------------------------------------------------------------------
class Catalog:
    """An open catalog: the database, the index shard and the fingerprinter they share.

    Parameters
    ----------
    home : path-like
        The catalog folder.
    write : bool
        Take the writer lock (fails when another process holds it) and create the catalog
        if missing. Readers never create one; they repair it only when no writer is active.
    fingerprinter : Fingerprinter, optional
        Defaults to :class:`TripletFingerprinter`.
    wait_s : float
        How long a writer waits for another process's writer lock before giving up (readers
        hold it for a moment when they repair).
    ray_address : str, optional
        Serve the index shards from Ray actors on this cluster (``host:port``, ``auto`` or
        ``local``; see :mod:`earmark.index.ray_shards`); default: in this process.
    replicas : int
        Ray actors per shard (with ``ray_address``).
    """

    index: SegmentIndex | ShardedIndex

    def __init__(self, home: str | os.PathLike[str], *, write: bool = False,
                 fingerprinter: Fingerprinter | None = None, wait_s: float = 10.0,
                 ray_address: str | None = None, replicas: int = 1) -> None:
        self.home = Path(home)
        self.writable = write
        self.fingerprinter: Fingerprinter = fingerprinter or cast(
            Fingerprinter, TripletFingerprinter())
        db = self.home / "catalog.sqlite"
        if not write and not db.exists():
            raise CatalogError(
                f"no catalog at {os.fspath(self.home)!r}: build one with `earmark catalog add "
                "PATH... --db DIR`, or point --db / EARMARK_HOME at an existing one"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self._lockf = open(self.home / ".writer.lock", "a+")
        self._identifier: Identifier | None = None
        try:
            locked = self._try_lock()
            deadline = time.monotonic() + wait_s
            while write and not locked and time.monotonic() < deadline:
                time.sleep(0.05)
                locked = self._try_lock()
            if write and not locked:
                raise CatalogError(
                    f"another earmark process is writing to {os.fspath(self.home)!r}; "
                    "wait for it to finish and retry"
                )
            self.store = CatalogStore(db)
            self.layout = ShardLayout.load(self.home / "index")
            self.index = self._open_index(ray_address, replicas)
            self.repaired = self.repair() if locked else RepairReport()
            if locked and not write:
                fcntl.flock(self._lockf, fcntl.LOCK_UN)
        except BaseException:
            self.close()
            raise

    def _open_index(self, ray_address: str | None, replicas: int) -> SegmentIndex | ShardedIndex:
        fp = self.fingerprinter
        folder, name = self.home / "index", f"{fp.name}-{fp.version}"
        if ray_address:
            from earmark.index.ray_shards import open_ray

            return open_ray(folder, fingerprint=name, layout=self.layout, replicas=replicas,
                            address=ray_address)
        if len(self.layout) == 1:
            return SegmentIndex(folder / self.layout.names[0], fingerprint=name)
        return open_local(folder, fingerprint=name, layout=self.layout)

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def repair(self) -> RepairReport:
        """Bring the database and the index back into agreement after a crash.

        Needs the writer lock (taken on open by writers, and by readers when it is free).
        """
        rep = RepairReport()
        in_index = self.index.ref_keys()
        pending = self.store.keys(status=PENDING)
        rep.completed = self.store.set_status(pending & in_index, READY)
        rep.dropped = self.store.delete_keys(pending - in_index)
        rep.lost = self.store.delete_keys(self.store.keys(status=READY) - in_index)
        orphans = sorted(in_index - self.store.keys())
        if orphans:
            rep.orphans = self.index.remove(orphans)
        return rep

    @property
    def identifier(self) -> Identifier:
        """The matcher over this catalog's shard (built on first use)."""
        if self._identifier is None:
            self._identifier = Identifier(shards=[self.index], fingerprinter=self.fingerprinter,
                                          sketches=SketchCache(self.store.sketches).get,
                                          constellations=SketchCache(
                                              self.store.sketches, unpack=of_blob).get)
        return self._identifier

    def references_by_key(self, keys: Iterable[int]) -> dict[int, Reference]:
        return self.store.by_keys(keys)

    def close(self) -> None:
        for name in ("index", "store"):
            obj = self.__dict__.pop(name, None)
            if obj is not None:
                obj.close()
        if not self._lockf.closed:
            self._lockf.close()  # releases the lock

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(*, home: str | os.PathLike[str], write: bool = False,
                 wait_s: float = 10.0, ray_address: str | None = None,
                 replicas: int = 1) -> Catalog:
    """Open (and, for writers, create) the catalog in ``home``; see :class:`Catalog`."""
    return Catalog(home, write=write, wait_s=wait_s, ray_address=ray_address,
                   replicas=replicas)


# -- add ------------------------------------------------------------------------------------
class _Inline(cf.Executor):
    """Runs each call at submit time, in-process (``jobs=1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


def _executor(jobs: int) -> cf.Executor:
    if jobs <= 1:
        return _Inline()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["earmark.service.ingest"])
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


def add_references(
    *,
    catalog: Catalog,
    paths: Sequence[str | os.PathLike[str]] = (),
    manifest: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    batch_size: int = BATCH_SIZE,
    on_start: Callable[[int], None] | None = None,
    on_item: Callable[[AddOutcome], None] | None = None,
) -> AddReport:
    """Add audio files (and folders, recursively) to the catalog; see the module docstring.

    Parameters
    ----------
    catalog : Catalog
        Opened with ``write=True``.
    paths : sequence of path-like
        Files or folders.
    manifest : path-like, optional
        CSV ``id,path,title,artist,owner,isrc``.
    jobs : int
        Worker processes for fingerprinting; 1 runs in this process.
    on_start, on_item : callable, optional
        Called with the number of inputs, then with each input's outcome (progress bars).

    Returns
    -------
    AddReport
        One outcome per input: ``added``, ``skipped`` (the same audio is already there) or
        ``failed`` with a reason. Bad inputs never stop the batch.
    """
    if not catalog.writable:
        raise CatalogError("the catalog was opened read-only; open it with write=True")
    inputs, early = collect_inputs(paths, manifest)
    report = AddReport()
    run = _AddRun(catalog, report, on_item, batch_size)
    if on_start is not None:
        on_start(len(inputs) + len(early))
    for o in early:
        run.emit(o)
    fp = catalog.fingerprinter
    jobs = max(1, min(jobs, len(inputs)))
    window = 1 if jobs == 1 else 2 * jobs
    in_flight: dict[cf.Future[FingerprintResult], tuple[InputFile, str]] = {}
    pool = _executor(jobs)
    try:
        for inp in inputs:
            sha = run.precheck(inp)
            if sha is None:
                continue
            while len(in_flight) >= window:
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    run.collect(*in_flight.pop(fut), fut)
            task = functools.partial(fingerprint_file, inp.path, sr=fp.sr,
                                     max_seconds=max_seconds, fingerprinter=fp, sha256=sha)
            try:
                fut = pool.submit(task)
            except BrokenProcessPool:  # a worker died (its items were reported): start afresh
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _executor(jobs)
                fut = pool.submit(task)
            in_flight[fut] = (inp, sha)
        for fut in cf.as_completed(list(in_flight)):
            run.collect(*in_flight.pop(fut), fut)
    finally:  # on Ctrl-C, do not wait for work that has not started
        pool.shutdown(wait=True, cancel_futures=True)
    run.commit()
    if report.added:
        # one segment per shard: a lookup searches every segment, and the batches of a run
        # leave several (on the 9.8 h benchmark catalog, 6 segments made lookups 3x slower)
        catalog.index.compact()
    return report


class _AddRun:
    """State of one :func:`add_references` call: deduplication, batches, outcomes."""

    def __init__(self, catalog: Catalog, report: AddReport,
                 on_item: Callable[[AddOutcome], None] | None, batch_size: int) -> None:
        self.cat = catalog
        self.report = report
        self.on_item = on_item
        self.batch_size = batch_size
        self.first: dict[str, InputFile] = {}  # sha256 → first input with that audio
        self.dups: dict[str, list[InputFile]] = {}
        self.ids: dict[str, str] = {}  # id → sha256 of references added in this run
        self.batch: list[tuple[InputFile, FingerprintResult]] = []

    def emit(self, o: AddOutcome) -> None:
        self.report.items.append(o)
        if self.on_item is not None:
            self.on_item(o)

    def done(self, inp: InputFile, status: Literal["added", "skipped", "failed"],
             reason: str | None = None, sha: str | None = None) -> None:
        """Record an outcome, and settle the inputs of this run that hold the same audio."""
        self.emit(AddOutcome(input=str(inp.path), id=inp.id, status=status, reason=reason))
        for d in self.dups.pop(sha or "", []):
            why = reason if status == "failed" else f"same audio as {str(inp.path)!r}"
            self.emit(AddOutcome(input=str(d.path), id=d.id,
                                 status="failed" if status == "failed" else "skipped", reason=why))

    def precheck(self, inp: InputFile) -> str | None:
        """The file's SHA-256 if it must be fingerprinted; ``None`` when it was settled here.

        Audio already in the catalog, or met earlier in this run, is not fingerprinted again.
        """
        try:
            sha = hash_file(inp.path)
        except FileNotFoundError:
            self.done(inp, "failed", FileMissing(f"no such file: {str(inp.path)!r}").reason)
            return None
        except OSError as exc:
            self.done(inp, "failed", InputError(f"cannot read {inp.path.name!r}: "
                                                f"{exc.strerror}").reason)
            return None
        row = self.cat.store.by_sha256(sha)
        if row is not None:
            self.done(inp, "skipped", f"already in the catalog as {row.id!r}")
            return None
        if sha in self.first:
            self.dups.setdefault(sha, []).append(inp)
            return None
        self.first[sha] = inp
        return sha

    def collect(self, inp: InputFile, sha: str, fut: cf.Future[FingerprintResult]) -> None:
        try:
            res = fut.result()
        except EarmarkError as exc:
            self.done(inp, "failed", exc.reason, sha)
            return
        except BrokenProcessPool:
            self.done(inp, "failed", "internal_error: a fingerprinting worker died "
                      "(out of memory?); retry with fewer --jobs", sha)
            return
        except Exception as exc:
            self.done(inp, "failed", f"internal_error: {type(exc).__name__}: {exc}", sha)
            return
        if sha != res.sha256:  # the file changed since it was hashed
            self.dups[res.sha256] = self.dups.pop(sha, [])
        self.batch.append((inp, res))
        if len(self.batch) >= self.batch_size:
            self.commit()

    def commit(self) -> None:
        """Steps 2–4 of the protocol for the current batch."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        store, fp = self.cat.store, self.cat.fingerprinter
        rows, accepted = [], []
        for inp, res in batch:
            why = self._conflict(inp, res.sha256)
            if why is not None:
                self.done(inp, why[0], why[1], res.sha256)
                continue
            self.ids[inp.id] = res.sha256
            rows.append(Reference(
                id=inp.id, source=os.path.abspath(inp.path), sha256=res.sha256,
                duration_ms=res.duration_ms, shard=SHARD, **inp.meta))
            accepted.append((inp, res))
        if not rows:
            return
        keys = store.insert_pending(rows, [res.sketch for _, res in accepted])
        hop = max(1, round(fp.sr / fp.frame_rate))
        try:
            self.cat.index.add([IndexItem(k, res.hashes, 1 + res.n_samples // hop)
                                for k, (_, res) in zip(keys, accepted, strict=True)])
        except BaseException:
            store.delete_keys(keys)
            raise
        store.set_status(keys, READY)
        for inp, res in accepted:
            self.done(inp, "added", None, res.sha256)

    def _conflict(
        self, inp: InputFile, sha: str
    ) -> tuple[Literal["skipped", "failed"], str] | None:
        store = self.cat.store
        row = store.by_sha256(sha)
        if row is not None:
            return "skipped", f"already in the catalog as {row.id!r}"
        row = store.get(inp.id)
        if row is not None or inp.id in self.ids:
            where = f" ({row.source})" if row is not None else " in this run"
            return "failed", (
                f"duplicate_id: reference id {inp.id!r} is already used by other audio{where}; "
                f"give this file another id in a manifest, or remove {inp.id!r} first"
            )
        return None


# -- list, remove, stats --------------------------------------------------------------------
def list_references(*, catalog: Catalog) -> list[ReferenceOut]:
    """Every ready reference, ordered by id."""
    return [ReferenceOut.model_validate(r) for r in catalog.store.all()]


def remove_reference(*, catalog: Catalog, reference_id: str) -> ReferenceOut:
    """Remove a reference from the database, then from the index.

    Raises
    ------
    UnknownReference
        No reference has this id.
    """
    if not catalog.writable:
        raise CatalogError("the catalog was opened read-only; open it with write=True")
    row = catalog.store.get(reference_id)
    if row is None:
        raise UnknownReference(
            f"no reference with id {reference_id!r} (see `earmark catalog list`)"
        )
    out = ReferenceOut.model_validate(row)
    # row first: a crash in between leaves an index orphan, which repair() removes
    catalog.store.delete_keys([row.key])
    catalog.index.remove([row.key])
    return out


def stats(*, catalog: Catalog) -> dict[str, Any]:
    """Size of the catalog: references, audio seconds, index and database bytes, versions."""
    n, ms = catalog.store.totals()
    ix = catalog.index.stats()
    hours = ms / 3_600_000
    fp = catalog.fingerprinter
    sk = catalog.store.sketch_bytes()
    return {
        "references": n,
        "audio_seconds": round(ms / 1000, 3),
        "index_bytes": ix.index_bytes,
        "entries": ix.entries,
        "segments": ix.segments,
        "db_bytes": catalog.store.db_bytes(),
        "index_mb_per_hour": round(ix.index_bytes / 1e6 / hours, 3) if hours > 0 else None,
        #: the references' sketches (in the database), and what hashes and sketches take
        #: together per audio hour
        "sketch_bytes": sk,
        "prints_mb_per_hour": (round((ix.index_bytes + sk) / 1e6 / hours, 3)
                               if hours > 0 else None),
        "fingerprinter": fp.name,
        "fingerprinter_version": fp.version,
        "index_backend": catalog.index.name,
        "home": os.fspath(catalog.home.resolve()),
    }
