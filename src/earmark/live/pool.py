# SPDX-License-Identifier: Apache-2.0
"""Streams spread over worker processes (``earmark monitor --jobs N``).

One process reads its streams in threads and matches them all in one loop (much of the
per-window work is Python and NumPy glue that holds the interpreter lock), so one process
saturates about one core. With
more streams than a core can carry, :func:`watch_parallel` deals the sources out to
``jobs`` processes (round robin), each with its own catalog reader, matcher and detector,
and funnels their events back to the caller's sink in arrival order. A process that dies
is reported as ``stream_error`` on each of its streams; the others go on.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earmark.live.events import LiveEvent, Sink
from earmark.live.monitor import LagHook, WatchParams, watch
from earmark.live.sources import AudioSource, RawFormat
from earmark.moderation.policy import PolicyVersion


@dataclass(frozen=True)
class SourceSpec:
    """What a worker process needs to open one source (picklable)."""

    spec: str
    id: str
    sr: int
    realtime: bool = False
    reconnect: bool | None = None
    raw: RawFormat | None = None

    def open(self) -> AudioSource:
        return AudioSource(self.spec, id=self.id, sr=self.sr, realtime=self.realtime,
                           reconnect=self.reconnect, raw=self.raw)


def _child(specs: list[SourceSpec], home: str | None, detector: str | None,
           params: WatchParams, policies: dict[str, PolicyVersion], q: Any, stop: Any,
           lag: bool) -> None:
    from earmark.detect.base import get_detector
    from earmark.service.catalog import open_catalog

    cat = open_catalog(home=home) if home else None
    det = get_detector(detector) if detector else None
    halt = threading.Event()

    def watcher() -> None:
        # poll, never wait(): a multiprocessing waiter that exits unwoken would block the
        # parent's set() for good
        while not stop.is_set() and not halt.is_set():
            time.sleep(0.2)
        halt.set()

    threading.Thread(target=watcher, daemon=True).start()
    try:
        watch([s.open() for s in specs], catalog=cat, detector=det,
              sink=lambda e: q.put(("event", e.to_json())), params=params, policies=policies,
              stop=halt, on_lag=(lambda *a: q.put(("lag", a))) if lag else None)
    finally:
        halt.set()
        if cat is not None:
            cat.close()
        q.put(("done", os.getpid()))


def _event(d: dict[str, Any]) -> LiveEvent:
    rest = {k: v for k, v in d.items() if k not in ("event", "stream", "stream_ms",
                                                      "wall_time")}
    wall = dt.datetime.fromisoformat(d["wall_time"].replace("Z", "+00:00"))
    return LiveEvent(d["event"], d["stream"], int(d["stream_ms"]), rest, wall)


def watch_parallel(specs: Sequence[SourceSpec], *, home: Path | None, detector: str | None,
                   sink: Sink, jobs: int, params: WatchParams = WatchParams(),
                   policies: Mapping[str, PolicyVersion] | None = None,
                   stop: threading.Event | None = None,
                   on_lag: LagHook | None = None) -> None:
    """Watch ``specs`` in ``jobs`` processes until every stream has ended (or ``stop``)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    halt = ctx.Event()
    groups = [list(specs[i::jobs]) for i in range(jobs) if specs[i::jobs]]
    procs = [ctx.Process(target=_child, args=(g, str(home) if home else None, detector,
                                              params, dict(policies or {}), q, halt,
                                              on_lag is not None),
                         name=f"earmark-monitor-{i}", daemon=True)
             for i, g in enumerate(groups)]
    for p in procs:
        p.start()
    done: set[int] = set()
    ended: set[str] = set()
    try:
        while len(done) < len(procs):
            if stop is not None and stop.is_set():
                halt.set()
            try:
                kind, payload = q.get(timeout=0.2)
            except queue.Empty:
                for p, g in zip(procs, groups, strict=True):
                    if p.pid not in done and not p.is_alive() and p.exitcode not in (0, None):
                        done.add(p.pid or -1)
                        for s in g:  # the process died: say so for each of its streams
                            if s.id not in ended:
                                sink(LiveEvent("stream_error", s.id, 0, {
                                    "detail": f"monitor process died (exit {p.exitcode})"}))
                continue
            if kind == "event":
                if payload["event"] == "stream_ended":
                    ended.add(payload["stream"])
                sink(_event(payload))
            elif kind == "lag" and on_lag is not None:
                on_lag(*payload)
            elif kind == "done":
                done.add(payload)
    finally:
        halt.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
