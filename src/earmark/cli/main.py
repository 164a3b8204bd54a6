# SPDX-License-Identifier: Apache-2.0
"""``earmark``: the command-line entry point (``earmark.cli.main:main``)."""

from __future__ import annotations

import typer

from earmark import __version__
from earmark.cli import admin as _admin
from earmark.cli import capacity as _capacity
from earmark.cli import catalog as _catalog
from earmark.cli import cluster as _cluster
from earmark.cli import demo as _demo
from earmark.cli import demo_serve as _demo_serve
from earmark.cli import detect as _detect
from earmark.cli import models as _models
from earmark.cli import monitor as _monitor
from earmark.cli import scan as _scan
from earmark.cli import serve as _serve

app = typer.Typer(
    name="earmark",
    help="On-premise music moderation: identify catalog music in uploads, detect AI music.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(_catalog.app, name="catalog")
app.command("scan")(_scan.scan)
app.command("detect")(_detect.detect)
app.command("monitor")(_monitor.monitor)
app.command("train")(_models.train)
app.add_typer(_models.app, name="models")
app.command("demo")(_demo.demo)
app.command("serve")(_serve.serve)
app.command("demo-serve")(_demo_serve.demo_serve)
app.command("worker")(_serve.worker)
app.add_typer(_admin.keys_app, name="keys")
app.add_typer(_admin.users_app, name="users")
app.add_typer(_admin.policy_app, name="policy")
app.add_typer(_admin.audit_app, name="audit")
app.add_typer(_admin.db_app, name="db")
app.add_typer(_cluster.app, name="cluster")
app.command("capacity")(_capacity.capacity)

try:  # written separately; the CLI works without it
    from earmark.cli import bench as _bench
except ImportError:  # pragma: no cover - depends on what is installed
    _bench = None  # type: ignore[assignment]
if _bench is not None and hasattr(_bench, "app"):
    app.add_typer(_bench.app, name="bench")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"earmark {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """On-premise music identification: build a catalog, scan uploads against it."""


def main() -> None:
    """Run the ``earmark`` command."""
    app()


if __name__ == "__main__":
    main()
