# SPDX-License-Identifier: Apache-2.0
"""``earmark scan PATH... [--db DIR] [--json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from earmark.cli import (
    EXIT_FAILED,
    AddressOption,
    DbOption,
    MaxSecondsOption,
    clock,
    load_settings,
    resolve_home,
    stderr,
    stdout,
    user_errors,
)
from earmark.service.catalog import open_catalog
from earmark.service.scan import scan_paths

_STYLE = {"match": "green", "no_match": "yellow", "error": "red"}


def scan(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH", help="Audio or video files to identify (use -- before names that "
        "start with a dash).", show_default=False)],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per input per line on stdout.")] = False,
    max_seconds: MaxSecondsOption = None,
    address: AddressOption = None,
) -> None:
    """Find the catalog references each input contains (matches best first).

    Each input is echoed as given in the result's ``input``.
    """
    settings = load_settings(max_seconds=max_seconds, ray_address=address)
    err = stderr()
    results: list[dict[str, Any]] = []
    with user_errors():
        cat = open_catalog(home=resolve_home(db), write=False, ray_address=settings.ray_address,
                           replicas=settings.index_replicas)
    with cat, Progress(
        TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"), console=err, transient=True,
        redirect_stdout=False, redirect_stderr=False,
        disable=not err.is_terminal or (as_json and sys.stdout.isatty()),
    ) as bar:
        task = bar.add_task("scan", total=len(paths), last="")
        for res in scan_paths(catalog=cat, paths=paths, max_seconds=settings.max_seconds):
            bar.update(task, advance=1, last=Path(res["input"]).name)
            if as_json:
                sys.stdout.write(json.dumps(res, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            results.append({"status": res["status"]} if as_json else res)
    if not as_json:
        stdout().print(_table(results))
    ok = sum(r["status"] != "error" for r in results)
    n_match = sum(r["status"] == "match" for r in results)
    err.print(f"{len(results)} input(s): {n_match} match, {ok - n_match} no match, "
              f"{len(results) - ok} error")
    if ok == 0 and results:
        raise typer.Exit(EXIT_FAILED)


def _table(results: list[dict[str, Any]]) -> Table:
    t = Table("input", "status", "reference", "confidence", "query span", "ref span",
              "speed / pitch / tempo")
    for r in results:
        style = _STYLE[r["status"]]
        if not r["matches"]:
            t.add_row(Text(r["input"]), Text(r["status"], style=style),
                      Text(r["reason"] or "", style="dim"), "", "", "", "")
            continue
        for i, m in enumerate(r["matches"]):
            segs = m["segments"]
            s = segs[0]
            more = f" (+{len(segs) - 1})" if len(segs) > 1 else ""
            t.add_row(
                Text(r["input"] if i == 0 else ""),
                Text(r["status"] if i == 0 else "", style=style),
                Text(m["reference_id"] + (f" — {m['title']}" if m["title"] else "")),
                f"{m['confidence']:.2f}",
                f"{clock(s['query_start_ms'])}–{clock(s['query_end_ms'])}{more}",
                f"{clock(s['ref_start_ms'])}–{clock(s['ref_end_ms'])}",
                f"{s['speed_ratio']:.3f} / {s['pitch_semitones']:+.1f} st / "
                f"{s['tempo_ratio']:.3f}",
            )
    return t
