# SPDX-License-Identifier: Apache-2.0
"""``earmark catalog add | list | remove | stats``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from earmark.cli import (
    EXIT_FAILED,
    AddressOption,
    DbOption,
    MaxSecondsOption,
    clock,
    die,
    load_settings,
    resolve_home,
    stderr,
    stdout,
    user_errors,
)
from earmark.service.catalog import (
    AddOutcome,
    Catalog,
    add_references,
    list_references,
    open_catalog,
    remove_reference,
    stats,
)

app = typer.Typer(help="Build and inspect the reference catalog.", no_args_is_help=True)


def _open(db: Path | None, *, write: bool, address: str | None = None) -> Catalog:
    home = resolve_home(db)
    settings = load_settings(ray_address=address)
    with user_errors():
        cat = open_catalog(home=home, write=write, ray_address=settings.ray_address,
                           replicas=settings.index_replicas)
    if cat.repaired:
        r = cat.repaired
        stderr().print(
            f"repaired {home} after an interrupted run: {r.completed} completed, "
            f"{r.dropped} unfinished dropped, {r.lost} lost, {r.orphans} index orphans removed",
            markup=False,
        )
    return cat


@app.command("add")
def add(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH", help="Audio or video files, or folders (searched recursively).",
        show_default=False)] = None,
    db: DbOption = None,
    manifest: Annotated[Path | None, typer.Option(
        "--manifest", metavar="CSV",
        help="CSV with columns id,path,title,artist,owner,isrc (paths relative to the CSV).",
    )] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, metavar="N",
        help="Fingerprinting processes. Default: $EARMARK_JOBS, else one per core.")] = None,
    max_seconds: MaxSecondsOption = None,
    address: AddressOption = None,
) -> None:
    """Add references: the id is the file name without extension unless the manifest says."""
    if not paths and manifest is None:
        die("nothing to add: give files or folders (earmark catalog add PATH...) or --manifest")
    settings = load_settings(jobs=jobs, max_seconds=max_seconds)
    err = stderr()
    t0 = time.monotonic()
    with _open(db, write=True, address=address) as cat, Progress(
        TextColumn("adding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[last]}"), console=err, transient=True,
        redirect_stdout=False, redirect_stderr=False, disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("add", total=None, last="")

        def on_item(o: AddOutcome) -> None:
            bar.update(task, advance=1, last=o.id or "")

        with user_errors():
            report = add_references(
                catalog=cat, paths=paths or [], manifest=manifest, jobs=settings.jobs,
                max_seconds=settings.max_seconds,
                on_start=lambda n: bar.update(task, total=n), on_item=on_item,
            )
    dt = time.monotonic() - t0
    err.print(f"added {report.added}, skipped {report.skipped}, failed {report.failed} "
              f"({dt:.1f} s)")
    for o in report.items:
        if o.status == "failed":
            err.print(f"  failed  {o.input}: {o.reason}", markup=False)
    if report.added + report.skipped == 0 and report.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command("list")
def list_(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")] = False,
) -> None:
    """List the references."""
    with _open(db, write=False) as cat:
        refs = list_references(catalog=cat)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in refs], ensure_ascii=False))
        return
    table = Table("id", "title", "artist", "owner", "isrc", "duration", "added (UTC)")
    for r in refs:
        table.add_row(r.id, r.title or "", r.artist or "", r.owner or "", r.isrc or "",
                      clock(r.duration_ms), r.created_at.strftime("%Y-%m-%d %H:%M"))
    stdout().print(table)
    stderr().print(f"{len(refs)} reference(s)")


@app.command("remove")
def remove(
    reference_id: Annotated[str, typer.Argument(metavar="ID", help="Reference id (see list).")],
    db: DbOption = None,
) -> None:
    """Remove a reference from the catalog and its index."""
    with _open(db, write=True) as cat, user_errors():
        ref = remove_reference(catalog=cat, reference_id=reference_id)
    stderr().print(f"removed {ref.id}", markup=False)


@app.command("stats")
def stats_(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Size of the catalog: references, audio hours, index size."""
    with _open(db, write=False) as cat:
        s = stats(catalog=cat)
    if as_json:
        typer.echo(json.dumps(s, ensure_ascii=False))
        return
    table = Table("", "", show_header=False)
    for k, v in s.items():
        table.add_row(k, "—" if v is None else str(v))
    stdout().print(table)


@app.command("reshard")
def reshard(
    shards: Annotated[int, typer.Option(
        "--shards", min=1, metavar="N", help="Number of index shards (ranges of references).")],
    db: DbOption = None,
) -> None:
    """Split the index into N shards of about equal size (copies the stored hashes)."""
    from earmark.service.shards import reshard_catalog

    t0 = time.monotonic()
    with _open(db, write=True) as cat, user_errors():
        rep = reshard_catalog(catalog=cat, shards=shards)
    stderr().print(f"{rep.references} reference(s), {rep.entries} entries in {rep.shards} "
                   f"shard(s) ({time.monotonic() - t0:.1f} s)", markup=False)
