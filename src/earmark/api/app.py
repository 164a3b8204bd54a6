# SPDX-License-Identifier: Apache-2.0
"""The FastAPI application of ``earmark serve``.

:func:`create_app` builds it over a :class:`~earmark.api.deps.Context`; its lifespan starts
the in-process scan workers (the single-box default; ``workers=0`` leaves the queue to
separate ``earmark worker`` processes) and the webhook deliverer, and stops them on shutdown.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.sessions import SessionMiddleware

from earmark import __version__
from earmark.api import problems
from earmark.api.deps import Context
from earmark.api.observe import Metrics
from earmark.api.routes import admin, live, policies, references, reviews, scans
from earmark.config import Settings
from earmark.errors import EarmarkError
from earmark.service.scans import Limits
from earmark.service.webhooks import run_deliverer
from earmark.service.worker import Worker
from earmark.store import queue
from earmark.store.db import open_db


class ConfigError(EarmarkError):
    code = "config_error"


def make_context(settings: Settings, *, home: Path | None = None, dev: bool = False) -> Context:
    """Open the database (migrating it) and bundle what the routes need."""
    if not settings.secret and not dev:
        raise ConfigError(
            "no secret: set EARMARK_SECRET to 32+ random characters (e.g. `python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))'`), or use --dev for a "
            "throw-away one on a development machine")
    home = Path(home or settings.home)
    db = open_db(home=home, url=settings.database_url)
    limits = Limits(max_bytes=int(settings.max_upload_mb * 1e6),
                    max_seconds=settings.max_upload_seconds)
    return Context(settings=settings, db=db, home=home, limits=limits, dev=dev)


def create_app(ctx: Context, *, workers: int = 1, webhooks: bool = True) -> FastAPI:
    """The application; ``workers`` in-process scan workers run while it serves."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for i in range(workers):
            w = Worker(ctx.db, home=ctx.home, detector=ctx.settings.detector,
                       max_seconds=ctx.limits.max_seconds, name=f"serve-{i}")
            w.stop = stop
            threads.append(threading.Thread(target=w.run, name=f"earmark-worker-{i}",
                                            daemon=True))
        if webhooks:
            threads.append(threading.Thread(target=run_deliverer, args=(ctx.db, stop),
                                            name="earmark-webhooks", daemon=True))
        for t in threads:
            t.start()
        try:
            yield
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

    app = FastAPI(
        title="earmark", version=__version__, lifespan=lifespan,
        summary="On-premise music moderation: catalog identification, AI-music detection, "
                "owner policies, review, disputes, DSA statements.",
        description="Authenticate with an API key (`Authorization: Bearer em_…`). Errors are "
                    "`application/problem+json` (RFC 9457).",
    )
    app.state.ctx = ctx
    problems.install(app)
    metrics = Metrics(ctx.db)
    app.middleware("http")(metrics.middleware)
    app.add_middleware(SessionMiddleware, secret_key=ctx.settings.secret or secrets.token_hex(32),
                       session_cookie="earmark_session", same_site="strict",
                       https_only=False, max_age=12 * 3600)
    for r in (scans.router, references.router, policies.router, reviews.router, admin.router,
              live.router):
        app.include_router(r)
    _optional_routers(app)

    @app.get("/healthz", tags=["health"])
    def health() -> dict[str, Any]:
        """Liveness and readiness: the database answers; queue depth; catalog presence."""
        depth = queue.depth(ctx.db)
        return {"status": "ok", "version": __version__, "queue": depth,
                "catalog": (ctx.home / "catalog.sqlite").exists(),
                "workers": sum(t.is_alive() for t in threads if "worker" in t.name)}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    return app


def _optional_routers(app: FastAPI) -> None:
    """Routers of resources that live in their own modules (disputes, statements, the
    review pages), included when present."""
    import importlib

    for name in ("earmark.api.routes.disputes", "earmark.api.routes.statements",
                 "earmark.api.ui"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.install(app) if hasattr(mod, "install") else app.include_router(mod.router)
