# SPDX-License-Identifier: Apache-2.0
"""Observability: Prometheus metrics, JSON logs, the health check.

Metrics that describe the whole site (queue depth, decisions by action, upload-to-decision
latency) are read from the database when Prometheus scrapes, so they are right however many
worker processes there are; request counts and durations are this process's own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from earmark.store.db import Database
from earmark.store.models import Scan

log = logging.getLogger("earmark.http")


class SiteCollector(Collector):
    """Queue depth, decisions by action and scan latency, from the service database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Any]:
        with self.db.reader() as s:
            depth = dict(s.execute(select(Scan.status, func.count()).group_by(Scan.status)).all())
            actions = dict(s.execute(select(Scan.action, func.count())
                                     .where(Scan.action.is_not(None)).group_by(Scan.action)).all())
            rows = s.execute(select(Scan.created_at, Scan.finished_at)
                             .where(Scan.status == "done")
                             .order_by(Scan.finished_at.desc()).limit(1000)).all()
        g = GaugeMetricFamily("earmark_queue_jobs", "Scan jobs by status", labels=["status"])
        for st in ("queued", "running", "done", "failed"):
            g.add_metric([st], float(depth.get(st, 0)))
        yield g
        c = CounterMetricFamily("earmark_decisions", "Scans decided, by current action",
                                labels=["action"])
        for a, n in sorted(actions.items()):
            c.add_metric([str(a)], float(n))
        yield c
        lat = sorted((f - c0).total_seconds() for c0, f in rows if f is not None)
        sm = SummaryMetricFamily("earmark_scan_latency_seconds",
                                 "Upload to recorded decision, last 1000 scans")
        sm.add_metric([], count_value=len(lat), sum_value=sum(lat))
        yield sm
        q = GaugeMetricFamily("earmark_scan_latency_quantile_seconds",
                              "Quantiles of upload-to-decision time, last 1000 scans",
                              labels=["quantile"])
        for p in (0.5, 0.95, 0.99):
            if lat:
                q.add_metric([str(p)], lat[min(len(lat) - 1, int(p * len(lat)))])
        yield q


class Metrics:
    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(SiteCollector(db))
        self.requests = Counter("earmark_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("earmark_http_request_seconds", "HTTP request duration",
                                 ["method", "route"], registry=self.registry)

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            dt = time.perf_counter() - t0
            route = getattr(request.scope.get("route"), "path", "unmatched")
            self.requests.labels(request.method, route, str(status)).inc()
            self.seconds.labels(request.method, route).observe(dt)
            log.info("request", extra={"method": request.method, "route": route,
                                       "status": status, "ms": round(dt * 1000, 1)})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _std = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in self._std})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", *, as_json: bool = True) -> None:
    h = logging.StreamHandler()
    h.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("earmark")
    root.handlers[:] = [h]
    root.setLevel(level)
    root.propagate = False
    logging.Formatter.converter = time.gmtime
