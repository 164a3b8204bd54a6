# SPDX-License-Identifier: Apache-2.0
"""``earmark serve`` (the API, review pages and in-process workers) and ``earmark worker``."""

from __future__ import annotations

import secrets
import signal
import threading
from typing import Annotated

import typer

from earmark.cli import DbOption, die, load_settings, resolve_home, stderr, user_errors


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="In-process scan workers (0: leave the queue to "
        "`earmark worker` processes).")] = 1,
    dev: Annotated[bool, typer.Option(
        "--dev", help="Development mode: a throw-away secret, and an admin key and a "
        "reviewer login printed at start. Never on a public address.")] = False,
    log_json: Annotated[bool, typer.Option("--log-json/--log-text",
                                           help="Log lines as JSON objects.")] = True,
) -> None:
    """Run the moderation service: REST API (OpenAPI at /docs), review pages, workers."""
    import uvicorn

    from earmark.api.app import create_app, make_context
    from earmark.api.observe import setup_logging
    from earmark.service.access import add_user, create_key

    settings = load_settings()
    if dev and host not in ("127.0.0.1", "localhost", "::1"):
        die("--dev listens on loopback only; drop --dev and set EARMARK_SECRET to serve "
            f"on {host}")
    setup_logging(as_json=log_json)
    with user_errors():
        ctx = make_context(settings, home=resolve_home(db), dev=dev)
    err = stderr()
    if dev:
        _, key = create_key(ctx.db, name="dev admin", role="admin", actor="serve --dev")
        pw = secrets.token_urlsafe(9)
        add_user(ctx.db, name="reviewer", password=pw, role="moderator", actor="serve --dev")
        err.print(f"[bold]dev mode[/] admin key: {key}\n"
                  f"review pages: http://{host}:{port}/ui  (login reviewer / {pw})")
    app = create_app(ctx, workers=workers)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


def worker(
    db: DbOption = None,
    max_jobs: Annotated[int | None, typer.Option(
        "--max-jobs", min=1, help="Exit after this many scans (default: run until stopped).")
    ] = None,
    lease_s: Annotated[float, typer.Option(
        "--lease-s", min=1.0, help="Seconds a job stays ours without a heartbeat; after a "
        "crash, other workers take its jobs over this long after.")] = 20.0,
    log_json: Annotated[bool, typer.Option("--log-json/--log-text")] = True,
) -> None:
    """Take scan jobs from the service database's queue until stopped (SIGTERM / Ctrl-C)."""
    from earmark.api.observe import setup_logging
    from earmark.service.worker import run_worker
    from earmark.store.db import open_db

    settings = load_settings()
    setup_logging(as_json=log_json)
    with user_errors():
        database = open_db(home=resolve_home(db), url=settings.database_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    n = run_worker(database, home=resolve_home(db), detector=settings.detector,
                   max_jobs=max_jobs, stop=stop, max_seconds=settings.max_upload_seconds,
                   lease_s=lease_s)
    stderr().print(f"worker: {n} scans recorded")
