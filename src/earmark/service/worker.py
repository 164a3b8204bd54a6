# SPDX-License-Identifier: Apache-2.0
"""Scan workers: take a job, identify and detect, decide, record — then the next one.

``earmark worker`` runs :func:`run_worker` in its own process; ``earmark serve`` runs the
same loop in a thread (the single-box default). Any number of workers may share one
database: the queue hands each job to one of them at a time, a worker that dies loses its
lease and another finishes the job (see :mod:`earmark.store.queue`).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from earmark.detect.base import Detector, get_detector
from earmark.errors import CatalogError
from earmark.evidence import InputInfo
from earmark.service.catalog import Catalog
from earmark.service.decisions import record_decision
from earmark.service.detect import detect_file
from earmark.service.judge import NO_CATALOG, catalog_facts, judge
from earmark.service.scan import scan_file
from earmark.store import queue
from earmark.store.db import Database
from earmark.store.models import Scan

log = logging.getLogger("earmark.worker")


class Worker:
    """One worker over a service database and a catalog folder.

    Parameters
    ----------
    db : Database
    home : path-like
        The catalog folder (``$EARMARK_HOME``); without a catalog there, scans carry
        identification ``error: no catalog`` and are still judged on AI evidence.
    detector : str or Detector
    lease_s : float
        Lease of a job; heartbeats renew it every third of it.
    """

    def __init__(self, db: Database, *, home: str | os.PathLike[str],
                 detector: str | Detector = "residue", lease_s: float = queue.LEASE_S,
                 max_seconds: float | None = None, name: str | None = None) -> None:
        self.db = db
        self.home = Path(home)
        self.detector = get_detector(detector) if isinstance(detector, str) else detector
        self.lease_s = lease_s
        self.max_seconds = max_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._catalog: Catalog | None = None
        self._stamp: tuple[int, ...] = ()
        self.stop = threading.Event()
        self.done = 0

    # -- catalog, reopened when `earmark catalog add/remove` has changed it -----------------
    def _catalog_stamp(self) -> tuple[int, ...]:
        files = [self.home / "catalog.sqlite", self.home / "catalog.sqlite-wal"]
        return tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in files)

    def catalog(self) -> Catalog | None:
        stamp = self._catalog_stamp()
        if self._catalog is not None and stamp == self._stamp:
            return self._catalog
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        try:
            self._catalog = Catalog(self.home, write=False)
        except CatalogError:
            return None
        self._stamp = stamp
        return self._catalog

    # -- one job ----------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Process one job if there is one; returns whether there was."""
        got = queue.claim(self.db, worker=self.name, lease_s=self.lease_s)
        if got is None:
            return False
        sid, token = got
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(sid, token, beat_stop), daemon=True)
        beat.start()
        t0 = time.monotonic()
        try:
            fields, decision = self._judge(sid)
        except Exception as exc:  # an unexpected failure: give the job back to be retried
            log.exception("scan %s failed", sid)
            queue.release(self.db, sid, token, error=f"internal_error: {type(exc).__name__}: "
                                                       f"{exc}")
            return True
        finally:
            beat_stop.set()
            beat.join()

        def also(s: Any, scan: Scan) -> None:
            record_decision(s, scan, decision, actor=f"worker:{self.name}")

        ok = queue.complete(self.db, sid, token, fields=fields, also=also)
        log.info("scan %s %s in %.2f s (%s)", sid, decision.action, time.monotonic() - t0,
                 "recorded" if ok else "lease lost, not recorded")
        self.done += ok
        return True

    def _beat(self, sid: str, token: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_s / 3):
            try:
                if not queue.heartbeat(self.db, sid, token, lease_s=self.lease_s):
                    return
            except Exception:  # a busy database for a moment: try again at the next beat
                log.warning("heartbeat of scan %s failed; retrying", sid, exc_info=True)

    def _judge(self, sid: str) -> tuple[dict[str, Any], Any]:
        with self.db.reader() as s:
            scan = s.get(Scan, sid)
            assert scan is not None
            blob, info = scan.blob, InputInfo(filename=scan.filename, sha256=scan.sha256,
                                              size_bytes=scan.size_bytes)
            external_id, territory = scan.external_id, scan.territory
            content_type = scan.content_type
        cat = self.catalog()
        ident = (scan_file(catalog=cat, path=blob, max_seconds=self.max_seconds)
                 if cat is not None else NO_CATALOG)
        facts = catalog_facts(cat, ident)
        det = detect_file(blob, self.detector, max_seconds=self.max_seconds,
                          name=info.filename).model_dump(mode="json")
        with self.db.reader() as s:
            ev, decision = judge(s, scan_id=sid, info=info, result=ident, facts=facts,
                                 detect=det, external_id=external_id, territory=territory,
                                 content_type=content_type)
        return {"evidence": ev.model_dump(mode="json"), "error": None}, decision

    # -- the loop ---------------------------------------------------------------------------
    def housekeeping(self) -> None:
        """Time-driven work: disputes whose response window ran out expire."""
        try:
            disputes = importlib.import_module("earmark.service.disputes")
        except ImportError:  # pragma: no cover - written separately
            return
        n = disputes.expire_due(self.db)
        if n:
            log.info("expired %d disputes", n)

    def run(self, *, idle_s: float = 0.25, max_jobs: int | None = None,
            housekeeping_s: float = 30.0) -> int:
        """Work until :attr:`stop` is set (or ``max_jobs`` are done); returns jobs recorded."""
        next_chores = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_chores:
                next_chores = time.monotonic() + housekeeping_s
                try:
                    self.housekeeping()
                except Exception:
                    log.exception("housekeeping")
            if max_jobs is not None and self.done >= max_jobs:
                break
            try:
                busy = self.run_once()
            except Exception:  # the database went away for a moment: wait, retry
                log.exception("worker loop")
                busy = False
            if not busy:
                self.stop.wait(idle_s)
        return self.done

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None


def run_worker(db: Database, *, home: str | os.PathLike[str], detector: str = "residue",
               max_jobs: int | None = None, stop: threading.Event | None = None,
               max_seconds: float | None = None, lease_s: float = queue.LEASE_S) -> int:
    """Run one worker loop until ``stop`` (or ``max_jobs``); returns jobs recorded."""
    w = Worker(db, home=home, detector=detector, max_seconds=max_seconds, lease_s=lease_s)
    if stop is not None:
        w.stop = stop
    try:
        return w.run(max_jobs=max_jobs)
    finally:
        w.close()
