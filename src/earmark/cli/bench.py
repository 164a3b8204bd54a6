# SPDX-License-Identifier: Apache-2.0
"""``earmark bench …``: benchmarks that anyone can rerun (not tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(help="Benchmarks: accuracy, false positives, speed, size.", no_args_is_help=True)
err = Console(stderr=True)


@app.command("identify")
def identify(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus folder with manifest.csv "
                                "(see fetch-dev-corpus)."),
    out: Path = typer.Option(Path("bench-out/identify"), "--out", help="Where the report goes."),
    seed: int = typer.Option(0, help="Seed of the split and the queries."),
    per_cell: int = typer.Option(30, help="Queries per (edit, length) cell."),
    lengths: str = typer.Option("1,2,3,5,10", help="Query lengths in seconds, comma-separated."),
    non_catalog: int = typer.Option(160, help="Non-catalog queries (false-positive rate)."),
    jobs: int = typer.Option(2, help="Processes for catalog building."),
    baselines: bool = typer.Option(True, help="Run the open matchers on the same queries."),
    growth: str = typer.Option("30,100", help="Catalog hours to grow to with distractors."),
    max_tracks: int = typer.Option(0, help="Use only this many corpus tracks (0: all)."),
    calibration_queries: int = typer.Option(
        800, min=60, help="Queries of the calibration pass (its own seed): about half from "
        "the catalog side over the edit grid, half from the calibration half of the "
        "non-catalog tracks, whose 99th percentile sets the threshold."),
    save_calibration: bool = typer.Option(
        False, help="Also write the fitted calibration into the package (developers)."),
) -> None:
    """Seeded 80/20 split, edit grid × query lengths, baselines, latency growth → report."""
    from earmark.bench.identify import BenchConfig, run

    if not (corpus / "manifest.csv").is_file():
        err.print(f"[red]error:[/] {corpus}/manifest.csv not found — build a corpus with "
                  "shared/corpus/fetch-dev-corpus --full --dest DIR")
        raise typer.Exit(2)
    cfg = BenchConfig(
        corpus=corpus, out=out, seed=seed, per_cell=per_cell, non_catalog=non_catalog,
        lengths=tuple(float(x) for x in lengths.split(",") if x),
        jobs=jobs, baselines=baselines,
        growth_hours=tuple(float(x) for x in growth.split(",") if x),
        max_tracks=max_tracks or None, calibration_queries=calibration_queries,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err) as bar:
        def progress(name: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(name, total=total)
            return lambda n: bar.advance(task, n)

        result = run(cfg, log=lambda m: bar.console.print(m), progress=progress)
    if save_calibration:
        import shutil

        import earmark.identify as pkg

        shutil.copy(out / "calibration.json", Path(pkg.__file__).parent / "calibration.json")
    from earmark.bench.report import summary

    s = summary(result)
    err.print(f"pooled core top-1 at 5 s: {s['pooled_core_5s']:.3f}; false positives "
              f"{s['fp_rate']:.3f}; 5 s query p50 {s['latency_p50_ms']:.1f} ms")
    err.print(f"report: {out / 'report.md'}")


@app.command("synthetic")
def synthetic(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus folder with manifest.csv "
                                "(real, human-made music)."),
    out: Path = typer.Option(Path("bench-out/synthetic"), "--out", help="Where the report goes."),
    seed: int = typer.Option(0, help="Seed of the split, the excerpts and the proxies."),
    train_steps: int = typer.Option(400, help="Training steps of the 'trained' proxies."),
    per_family: int = typer.Option(16, help="30 s test excerpts per proxy."),
    max_tracks: int = typer.Option(0, help="Use only this many corpus tracks (0: all)."),
    save_calibration: bool = typer.Option(
        False, help="Also write the fitted calibration into the package (developers)."),
) -> None:
    """AI-detection benchmark on locally built PROXY generators (needs the bench extra)."""
    from earmark.bench.synthetic import SynthConfig, run

    if not (corpus / "manifest.csv").is_file():
        err.print(f"[red]error:[/] {corpus}/manifest.csv not found — build a corpus with "
                  "shared/corpus/fetch-dev-corpus --full --dest DIR")
        raise typer.Exit(2)
    cfg = SynthConfig(corpus=corpus, out=out, seed=seed, train_steps=train_steps,
                      per_family=per_family, max_tracks=max_tracks or None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err) as bar:
        def progress(name: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(name, total=total)
            return lambda n: bar.advance(task, n)

        result = run(cfg, log=lambda m: bar.console.print(m), progress=progress)
    if save_calibration:
        import shutil

        import earmark.detect as pkg

        shutil.copy(out / "residue.json", Path(pkg.__file__).parent / "residue.json")
    real = result["real"]
    err.print(f"real music labelled ai: {real['ai_label_rate_5s']:.4f} of 5 s segments; "
              f"speed {result['speed']['score_x_realtime_per_core']:.0f}× realtime per core")
    err.print(f"report: {out / 'report.md'} (PROXY generators, not commercial ones)")


@app.command("trainable")
def trainable(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus folder with manifest.csv."),
    out: Path = typer.Option(Path("bench-out/synthetic"), "--out",
                             help="Report folder (reuses the proxies of bench synthetic)."),
    seed: int = typer.Option(0, help="Seed (the same as bench synthetic's)."),
    epochs: int = typer.Option(3, help="Training epochs per held-out family."),
    max_tracks: int = typer.Option(0, help="Use only this many corpus tracks (0: all)."),
) -> None:
    """The trainable CNN detector, leave one PROXY family out (needs torch)."""
    from earmark.bench.synthetic import SynthConfig
    from earmark.bench.trainable import run

    cfg = SynthConfig(corpus=corpus, out=out, seed=seed, max_tracks=max_tracks or None)
    run(cfg, log=err.print, epochs=epochs)
    err.print(f"report: {out / 'trainable.md'} (PROXY generators, not commercial ones)")


@app.command("service")
def service(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus folder with manifest.csv."),
    out: Path = typer.Option(Path("bench-out/service"), "--out", help="Where the report goes."),
    clients: int = typer.Option(50, min=1, help="Concurrent clients (closed loop)."),
    duration: float = typer.Option(600.0, min=1.0, help="Seconds of load."),
    kill_worker_at: float | None = typer.Option(
        None, "--kill-worker-at", help="Seconds into the load at which the worker gets "
        "SIGKILL (a new one starts at once)."),
    seed: int = typer.Option(0, help="Seed of the split, the clips and the clients."),
    clips: int = typer.Option(96, min=4, help="Clips in the upload pool (5–30 s each)."),
    lease_s: float = typer.Option(60.0, "--lease-s", min=1.0,
                                  help="The worker's job lease (earmark worker --lease-s)."),
    resend: float = typer.Option(0.05, min=0.0, max=1.0,
                                 help="Share of uploads sent twice with one external_id."),
    max_tracks: int = typer.Option(0, help="Use only this many corpus tracks (0: all)."),
    keep: bool = typer.Option(False, help="Keep the service home and clips (a temp folder)."),
) -> None:
    """Load the moderation service (serve + a separate worker) and check no job is lost."""
    from earmark.bench.service import ServiceBenchConfig, run

    if not (corpus / "manifest.csv").is_file():
        err.print(f"[red]error:[/] {corpus}/manifest.csv not found")
        raise typer.Exit(2)
    cfg = ServiceBenchConfig(corpus=corpus, out=out, clients=clients, duration_s=duration,
                             kill_worker_at=kill_worker_at, seed=seed, clips=clips,
                             lease_s=lease_s, resend=resend, max_tracks=max_tracks or None,
                             keep=keep)
    r = run(cfg, log=lambda m: err.print(m, markup=False, highlight=False))
    c = r["checks"]
    err.print(f"{r['accepted']} uploads, {r['throughput_per_min']} scans/min; upload → "
              f"decision p50 {c['latency_db_s']['p50']} s, p95 {c['latency_db_s']['p95']} s; "
              f"lost {c['lost']}, duplicated {c['duplicated']}, audit chain "
              f"{'intact' if c['audit_chain_ok'] else 'BROKEN'}")
    err.print(f"report: {out / 'report.md'}")
    if c["lost"] or c["duplicated"] or not c["audit_chain_ok"]:
        raise typer.Exit(1)


@app.command("live")
def live(
    corpus: Path = typer.Option(..., "--corpus", help="Corpus folder with manifest.csv."),
    out: Path = typer.Option(Path("bench-out/live"), "--out", help="Report folder."),
    per_edit: int = typer.Option(25, min=1, help="Streams per core edit (first detection)."),
    fp_hours: float = typer.Option(1.0, min=0.0, help="Hours of non-catalog music and speech."),
    streams: str = typer.Option("20,40,60", help="Concurrent real-time stream counts."),
    concurrency_s: float = typer.Option(60.0, min=5.0, help="Seconds of each concurrent run."),
    catalog: Path | None = typer.Option(None, help="Reuse this catalog (80 % split)."),
    seed: int = typer.Option(0, help="Seed of the split and the streams."),
    no_talk_over: bool = typer.Option(False, "--no-talk-over",
                                      help="Measure the monitor without its talk-over search."),
    detector: str = typer.Option("residue", "--detector", metavar="NAME|none",
                                 help="AI detector of the concurrent streams (the monitor's "
                                      "default); none: the catalog alone."),
    stream_jobs: int | None = typer.Option(None, "--stream-jobs", min=1,
                                           help="Processes of the concurrent streams "
                                                "(monitor --jobs; default one per core)."),
) -> None:
    """Live monitoring: first detection per core edit, false starts, concurrent streams."""
    from earmark.bench.live import LiveBenchConfig, run

    if not (corpus / "manifest.csv").is_file():
        err.print(f"[red]error:[/] {corpus}/manifest.csv not found")
        raise typer.Exit(2)
    n = tuple(int(x) for x in streams.split(",") if x.strip())
    run(LiveBenchConfig(corpus=corpus, out=out, per_edit=per_edit, fp_hours=fp_hours,
                        streams=n, concurrency_s=concurrency_s, catalog=catalog, seed=seed,
                        talk_over=not no_talk_over,
                        detector=None if detector == "none" else detector,
                        stream_jobs=stream_jobs),
        log=lambda m: err.print(m, markup=False, highlight=False))
    err.print(f"report: {out / 'report.md'}")


@app.command("capacity")
def capacity(
    corpus: Path = typer.Option(..., "--corpus", help="Folder with manifest.csv, or of "
                                "audio files (scripts/fetch-corpus --small)."),
    out: Path = typer.Option(Path("bench-out/capacity"), "--out", help="Where the report goes."),
    max_tracks: int = typer.Option(0, help="Use only this many tracks (0: all)."),
    query_s: float = typer.Option(10.0, "--query-s", help="Length of the query excerpts, s."),
    seed: int = typer.Option(0, help="Seed of the split and the excerpts."),
    growth: str = typer.Option("4,16,64", help="Catalog sizes to time lookup at, as multiples "
                               "of the real catalog (key-permuted copies)."),
) -> None:
    """Per-core throughput of each scan stage and index bytes per audio hour (sizing guide)."""
    import shlex
    import sys

    from earmark.bench.capacity import measure, write_report
    from earmark.errors import EarmarkError

    try:
        res = measure(corpus=corpus, max_tracks=max_tracks or None, query_s=query_s, seed=seed,
                      growth=tuple(int(x) for x in growth.split(",") if x),
                      log=lambda m: err.print(m, markup=False, highlight=False))
    except EarmarkError as exc:
        err.print(f"[red]error:[/] {exc.reason}")
        raise typer.Exit(2) from None
    cmd = "earmark bench capacity " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    j, md = write_report(res, out, cmd)
    st = res["stages"]
    err.print(f"decode {st['decode_8k']['realtime_per_core']:g}×, reference fingerprint "
              f"{st['reference_fingerprint']['realtime_per_core']:g}×, detector "
              f"{st['detect']['realtime_per_core']:g}× realtime per core; lookup p50 "
              f"{st['lookup_align']['cpu_ms_p50']:g} ms CPU at "
              f"{st['lookup_align']['catalog_hours']:g} h; index "
              f"{res['index']['bytes_per_audio_hour'] / 1e6:.2f} MB per audio hour")
    err.print(f"report: {md} and {j} (earmark capacity --measured {j})", markup=False)
