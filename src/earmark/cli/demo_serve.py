# SPDX-License-Identifier: Apache-2.0
"""``earmark demo-serve``: the moderation service on the demo's catalog, with owner policies,
the demo's excerpts submitted as uploads, and the review page open in a browser."""

from __future__ import annotations

import csv
import secrets
import shutil
import threading
import time
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from earmark.cli import die, load_settings, stderr, user_errors

#: the owner policy of the demo: what a label would plausibly ask for
DEMO_POLICY = {
    "rules": [
        {"name": "full use", "when": {"min_query_match_ms": 10000, "min_confidence": 0.95},
         "action": "block"},
        {"name": "edited (nightcore, pitch)", "when": {"speed_modified": True},
         "action": "monetize"},
        {"name": "short clip", "when": {"max_query_match_ms": 9999}, "action": "review"},
    ],
    "default_action": "track",
}
PLATFORM_POLICY = {
    "rules": [
        {"name": "AI-generated", "when": {"ai_label": ["ai"]}, "action": "label"},
        {"name": "maybe AI", "when": {"min_ai_probability": 0.5}, "action": "review"},
    ],
    "default_action": "allow",
}


def demo_serve(
    out: Annotated[Path, typer.Option("--out", help="The folder `earmark demo` filled.")] = Path(
        "demo-out"),
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open/--no-open",
                                               help="Open the review page.")] = True,
) -> None:
    """Serve the demo: seeded catalog, policies, uploads decided, review page open."""
    import uvicorn

    from earmark.api.app import create_app, make_context
    from earmark.api.observe import setup_logging
    from earmark.moderation.policy import PLATFORM, PolicyBody
    from earmark.service.access import add_user, create_key
    from earmark.service.policies import save_policy
    from earmark.service.scans import Limits, submit_scan

    src = out / "earmark-data"
    if not (src / "catalog.sqlite").is_file():
        die(f"no demo catalog in {out}: run scripts/demo (or `earmark demo`) first")
    home = out / "service"
    shutil.rmtree(home, ignore_errors=True)  # a fresh service each run, on a copy
    shutil.copytree(src, home, ignore=shutil.ignore_patterns(".writer.lock"))
    setup_logging(as_json=False, level="WARNING")
    err = stderr()
    with user_errors():
        ctx = make_context(load_settings(home=home), home=home, dev=True)
    with open(out / "catalog.csv", newline="") as fh:
        owners = sorted({r["owner"] for r in csv.DictReader(fh) if r.get("owner")})
    for owner in owners:
        save_policy(ctx.db, owner=owner, body=PolicyBody.model_validate(DEMO_POLICY),
                    actor="demo")
    save_policy(ctx.db, owner=PLATFORM, body=PolicyBody.model_validate(PLATFORM_POLICY),
                actor="demo")
    _, key = create_key(ctx.db, name="demo admin", role="admin", actor="demo")
    _, up_key = create_key(ctx.db, name="demo uploader", role="uploader", actor="demo")
    password = secrets.token_urlsafe(9)
    add_user(ctx.db, name="reviewer", password=password, role="moderator", actor="demo")
    files = sorted(p for d in ("excerpts", "ai-excerpts") if (out / d).is_dir()
                   for p in (out / d).iterdir() if p.is_file())
    for i, p in enumerate(files):
        with open(p, "rb") as f:
            submit_scan(ctx.db, home=home, src=f, filename=p.name, limits=Limits(),
                        external_id=f"demo-{i}", territory="DE", submitted_by="demo")
    err.print(f"service: {len(files)} demo uploads queued; policies for {', '.join(owners)} "
              "and the platform (label AI music)")
    app = create_app(ctx, workers=1)
    url = f"http://127.0.0.1:{port}"
    err.print(f"[bold]review pages[/]: {url}/ui  — login [bold]reviewer[/] / {password}\n"
              f"API: {url}/docs  — admin key {key}\n"
              f"      uploader key {up_key}\n"
              f"try:  curl -s -H 'Authorization: Bearer {up_key}' -F file=@SOME.mp3 "
              f"{url}/v1/scans\nCtrl-C stops the service.")
    if open_browser:
        threading.Thread(target=_open_later, args=(f"{url}/ui",), daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def _open_later(url: str) -> None:
    time.sleep(1.5)
    try:
        webbrowser.open(url)
    except Exception:  # no browser on a server: the URL is printed
        pass
