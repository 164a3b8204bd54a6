# SPDX-License-Identifier: Apache-2.0
"""The events of ``earmark monitor`` and where they go.

Every event is one JSON object: ``event`` (``match_started``, ``match_updated``,
``match_ended``, ``ai_suspected``, ``escalation``, ``stream_error``, ``stream_reconnected``,
``stream_ended``), ``stream`` (the stream id), ``stream_ms`` (the stream time it happened,
integer ms), ``wall_time`` (UTC, ISO 8601) and the event's own fields. Sinks: JSON lines on
stdout (:class:`JsonLines`) and, where a service database exists, the ``live_events`` table
and the webhook outbox (:class:`ServiceSink`), which ``earmark serve`` streams as
server-sent events.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from earmark.store.db import Database

EVENTS = ("match_started", "match_updated", "match_ended", "ai_suspected", "escalation",
          "stream_error", "stream_reconnected", "stream_ended")


@dataclass(frozen=True)
class LiveEvent:
    event: str
    stream: str
    stream_ms: int
    data: dict[str, Any] = field(default_factory=dict)
    wall_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "stream": self.stream, "stream_ms": int(self.stream_ms),
                "wall_time": self.wall_time.isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"), **self.data}


Sink = Callable[[LiveEvent], None]


class JsonLines:
    """One JSON object per line on ``out``, flushed, safe from many stream threads."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, ev: LiveEvent) -> None:
        line = json.dumps(ev.to_json(), ensure_ascii=False)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


class ServiceSink:
    """Events into the service database (``live_events``) and the webhook outbox."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, ev: LiveEvent) -> None:
        from earmark.service.decisions import emit
        from earmark.store.models import LiveEvent as Row

        body = ev.to_json()
        with self.db.session() as s:
            s.add(Row(stream=ev.stream, event=ev.event, stream_ms=int(ev.stream_ms),
                      at=ev.wall_time.replace(tzinfo=None), data=body))
            emit(s, "live", body)


class Fanout:
    """Send each event to several sinks; a failing sink is reported once on ``errors`` and
    does not stop the others (the monitor must keep watching)."""

    def __init__(self, *sinks: Sink, errors: Callable[[str], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.errors = errors
        self._failed: set[int] = set()

    def __call__(self, ev: LiveEvent) -> None:
        for i, s in enumerate(self.sinks):
            try:
                s(ev)
            except Exception as exc:
                if i not in self._failed and self.errors is not None:
                    self.errors(f"event sink {type(s).__name__} failed: {exc}")
                self._failed.add(i)
