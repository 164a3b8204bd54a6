# SPDX-License-Identifier: Apache-2.0
"""``earmark detect PATH... [--json] [--segment-ms MS] [--plot FILE]``."""

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
    DbOption,
    MaxSecondsOption,
    clock,
    load_settings,
    resolve_home,
    stderr,
    stdout,
    user_errors,
)
from earmark.detect.registry import Registry
from earmark.service.detect import detect_paths

_STYLE = {"ai": "red", "human": "green", "uncertain": "yellow"}


def detect(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH", help="Audio or video files to check (use -- before names that start "
        "with a dash).", show_default=False)],
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per input per line on stdout.")] = False,
    segment_ms: Annotated[int, typer.Option(
        "--segment-ms", min=1000, help="Segment length, ms.")] = 5000,
    detector: Annotated[str | None, typer.Option(
        "--detector", help="Detector or model id (default: the active one of `earmark models "
        "list`; 'residue' is the built-in that needs no training).")] = None,
    db: DbOption = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE", help="Also draw the score over time on the spectrogram "
        "(PNG; with several inputs, FILE gets -1, -2, ... before its suffix).")] = None,
    max_seconds: MaxSecondsOption = None,
) -> None:
    """Score how likely each input (and each segment of it) is AI-generated.

    Probabilities are calibrated on PROXY generators built locally (see docs/detect.md),
    not on commercial generators.
    """
    settings = load_settings(max_seconds=max_seconds)
    err = stderr()
    with user_errors():
        reg = Registry(resolve_home(db))
        det = reg.detector(detector)
        shadow = reg.shadow_detector() if detector is None else None
    results: list[dict[str, Any]] = []
    with Progress(
        TextColumn("detecting"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"), console=err, transient=True,
        redirect_stdout=False, redirect_stderr=False,
        disable=not err.is_terminal or (as_json and sys.stdout.isatty()),
    ) as bar:
        task = bar.add_task("detect", total=len(paths), last="")
        results_iter = detect_paths(paths, detector=det, shadow=shadow, segment_ms=segment_ms,
                                    max_seconds=settings.max_seconds)
        for i, res in enumerate(results_iter):
            bar.update(task, advance=1, last=Path(res["input"]).name)
            if as_json:
                sys.stdout.write(json.dumps(res, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            if plot is not None and res["status"] == "ok":
                target = plot if len(paths) == 1 else \
                    plot.with_name(f"{plot.stem}-{i + 1}{plot.suffix or '.png'}")
                from earmark.detect.plot import plot_detection

                plot_detection(res["input"], res, target, sr=det.sr)
                err.print(f"plot: {target}")
            results.append(res)
    if not as_json:
        stdout().print(_table(results))
    ok = [r for r in results if r["status"] == "ok"]
    counts = {k: sum(r["label"] == k for r in ok) for k in ("ai", "uncertain", "human")}
    err.print(f"{len(results)} input(s): {counts['ai']} ai, {counts['uncertain']} uncertain, "
              f"{counts['human']} human, {len(results) - len(ok)} error "
              f"(detector {det.name} v{det.version})")
    if results and not ok:
        raise typer.Exit(EXIT_FAILED)


def _table(results: list[dict[str, Any]]) -> Table:
    t = Table("input", "label", "AI probability", "AI segments", "AI spans", "family / reason")
    for r in results:
        if r["status"] == "error":
            t.add_row(Text(r["input"]), Text("error", style="red"), "", "", "",
                      Text(r["reason"] or "", style="dim"))
            continue
        segs = r["segments"]
        n_ai = sum((s["ai_probability"] or 0) >= 0.9 for s in segs)
        spans = ", ".join(f"{clock(s['start_ms'])}–{clock(s['end_ms'])}" for s in r["spans"][:3])
        if len(r["spans"]) > 3:
            spans += f" (+{len(r['spans']) - 3})"
        p = r["ai_probability"]
        t.add_row(Text(r["input"]), Text(r["label"], style=_STYLE[r["label"]]),
                  "—" if p is None else f"{p:.2f}", f"{n_ai}/{len(segs)}", spans,
                  Text((r["family"] or {}).get("name") or r["reason"] or "", style="dim"))
    return t
