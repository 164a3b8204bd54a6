# SPDX-License-Identifier: Apache-2.0
"""``earmark capacity``: the sizing guide's arithmetic (docs/scaling.md, "Sizing guide")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from earmark.bench.sizing import Assumptions, as_dict, assumption_lines, load_measured, size
from earmark.cli import die, stderr, stdout, user_errors


def capacity(
    uploads_per_day: Annotated[float, typer.Option(
        "--uploads-per-day", min=0, help="Uploads scanned per day.", show_default=False)],
    catalog_hours: Annotated[float | None, typer.Option(
        "--catalog-hours", min=0, help="Audio hours in the catalog.")] = None,
    catalog_tracks: Annotated[float | None, typer.Option(
        "--catalog-tracks", min=0, help="Tracks in the catalog (with --track-minutes).")] = None,
    track_minutes: Annotated[float, typer.Option(
        "--track-minutes", min=0, help="Mean track length, minutes.")] = 3.5,
    upload_s: Annotated[float, typer.Option(
        "--upload-seconds", min=1, help="Mean upload length, seconds.")] = 180.0,
    p95_s: Annotated[float, typer.Option(
        "--p95-s", min=0.1, help="Target p95 of upload → decision, seconds.")] = 10.0,
    burst: Annotated[float, typer.Option("--burst", min=1,
                                         help="Peak-hour rate / mean rate.")] = 3.0,
    utilisation: Annotated[float, typer.Option(
        "--utilisation", min=0.05, max=1.0, help="Target CPU utilisation at the peak.")] = 0.6,
    match_share: Annotated[float, typer.Option(
        "--match-share", min=0, max=1, help="Share of uploads that match the catalog.")] = 0.2,
    replicas: Annotated[int, typer.Option("--replicas", min=1,
                                          help="Actors per index shard.")] = 2,
    node_cores: Annotated[int, typer.Option("--node-cores", min=1,
                                            help="Cores per node.")] = 64,
    node_mem_gib: Annotated[float, typer.Option("--node-mem-gib", min=1,
                                                help="Memory per node, GiB.")] = 512.0,
    growth_exponent: Annotated[float | None, typer.Option(
        "--growth-exponent", min=0, help="Lookup CPU ∝ hours^this. Default: measured.")] = None,
    measured: Annotated[Path | None, typer.Option(
        "--measured", metavar="FILE", help="capacity.json of earmark bench capacity. "
        "Default: the run shipped with earmark.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Nodes, cores, memory and GPUs for a catalog size and an upload rate, from measured
    per-core throughput; every assumption is printed."""
    if (catalog_hours is None) == (catalog_tracks is None):
        die("give the catalog's size: --catalog-hours H, or --catalog-tracks N "
            "[--track-minutes M]")
    hours = catalog_hours if catalog_hours is not None else (
        (catalog_tracks or 0) * track_minutes / 60)
    a = Assumptions(upload_s=upload_s, p95_s=p95_s, burst=burst, utilisation=utilisation,
                    match_share=match_share, replicas=replicas, node_cores=node_cores,
                    node_mem_gib=node_mem_gib, growth_exponent=growth_exponent)
    with user_errors():
        m = load_measured(measured)
    s = size(m, catalog_hours=hours, uploads_per_day=uploads_per_day, a=a)
    lines = assumption_lines(m, a, hours)
    if as_json:
        typer.echo(json.dumps({**as_dict(s), "assumptions": lines}))
        return
    title = (f"{hours:,.0f} catalog hours, {uploads_per_day:,.0f} uploads/day of "
             f"{upload_s:g} s, p95 ≤ {p95_s:g} s")
    t = Table(show_header=False, title=title, title_justify="left")
    cpu = s.cpu_s_per_upload
    t.add_row("CPU per upload", f"{sum(cpu.values()):.2f} s (" + ", ".join(
        f"{k.replace('_', ' ')} {v:.2f}" for k, v in cpu.items()) + ")")
    t.add_row("cores", f"{s.cores:,}")
    t.add_row("index", f"{s.index_gib:,.1f} GiB in {s.shards:,} shard(s) × {replicas} "
                       f"replica(s) (memory needs {s.shards_for_memory:,}, latency "
                       f"{s.shards_for_latency if s.shards_for_latency else 'unreachable'})")
    t.add_row("memory", f"{s.memory_gib:,.0f} GiB")
    t.add_row("nodes", f"{s.nodes:,} × {node_cores} cores, {node_mem_gib:g} GiB")
    t.add_row("GPUs", str(s.gpus))
    t.add_row("p95 decision (model)", f"{s.p95_s_estimate:.1f} s; lookup "
                                      f"{s.lookup_cpu_ms_per_window:,.0f} ms CPU per window")
    stdout().print(t)
    err = stderr()
    for n in s.notes:
        err.print("note: " + n, markup=False)
    err.print("assumptions:", markup=False)
    for line in lines:
        err.print("  - " + line, markup=False)
