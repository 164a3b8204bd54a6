# SPDX-License-Identifier: Apache-2.0
"""``earmark scan PATH... [--db DIR] [--json] [--runner local|ray] [--manifest FILE]
[--results FILE] [--record] [--kafka-topic TOPIC --kafka-bootstrap HOST:PORT
[--kafka-group G] [--kafka-config FILE]]``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO, cast

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
    die,
    load_settings,
    resolve_home,
    stderr,
    stdout,
    user_errors,
)
from earmark.runners import RunnerName, open_runner
from earmark.runners.inputs import ResultsFile, expand_inputs
from earmark.runners.kafka import TopicRead, read_topic
from earmark.runners.kafka_settings import load_client_config
from earmark.runners.record import Recorder, pending
from earmark.store.db import open_db

_STYLE = {"match": "green", "no_match": "yellow", "error": "red"}


RunnerOption = Annotated[str, typer.Option(
    "--runner", metavar="local|ray",
    help="Where the scans run: 'local' (this process) or 'ray' (Ray Data workers on the "
         "cluster of --address; docs/scaling.md).")]


def scan(
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH", help="Audio or video files, or folders (scanned recursively), to "
        "identify (use -- before names that start with a dash).", show_default=False)] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per input per line on stdout.")] = False,
    max_seconds: MaxSecondsOption = None,
    address: AddressOption = None,
    runner: RunnerOption = "local",
    manifest: Annotated[Path | None, typer.Option(
        "--manifest", metavar="FILE",
        help="More inputs: one path per line, or CSV with a 'path' column.")] = None,
    results_file: Annotated[Path | None, typer.Option(
        "--results", metavar="FILE",
        help="Append each result here (JSON lines); a re-run skips the inputs already "
             "answered there (same path, size and modification time).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="--runner ray: scanning actors (one CPU each). "
                                 "Default: the cluster's CPUs.")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="--runner ray: inputs per task.")] = 4,
    max_retries: Annotated[int, typer.Option(
        "--max-retries", min=0, help="--runner ray: times a batch is sent again after "
                                     "its worker died.")] = 3,
    kafka_topic: Annotated[str | None, typer.Option(
        "--kafka-topic", metavar="TOPIC",
        help="More inputs: this Kafka topic's messages, from its beginning (or "
             "--kafka-group's offsets) to its end when the scan starts; each a path or URL, "
             "or a JSON object with a 'path' field (docs/scaling.md).")] = None,
    kafka_bootstrap: Annotated[str | None, typer.Option(
        "--kafka-bootstrap", metavar="HOST:PORT[,...]", envvar="EARMARK_KAFKA_BOOTSTRAP",
        show_envvar=False, help="--kafka-topic: brokers of the cluster. "
                                "Default: $EARMARK_KAFKA_BOOTSTRAP.")] = None,
    kafka_group: Annotated[str | None, typer.Option(
        "--kafka-group", metavar="GROUP",
        help="--kafka-topic: start at this consumer group's offsets, and commit them as "
             "results are written (needs --json or --results); a re-run goes on from "
             "there.")] = None,
    kafka_config: Annotated[Path | None, typer.Option(
        "--kafka-config", metavar="FILE", envvar="EARMARK_KAFKA_CONFIG", show_envvar=False,
        help="--kafka-topic: client properties file (key=value lines: security.protocol, "
             "sasl.*, ssl.*, ...) for a cluster with TLS or SASL. Default: "
             "$EARMARK_KAFKA_CONFIG.")] = None,
    record: Annotated[bool, typer.Option(
        "--record", help="Also record each input in the service database "
        "($EARMARK_DATABASE_URL, else service.sqlite in --db) as an API upload would be: a "
        "scan with evidence, a decision by the owners' policies, reviews; a re-run records "
        "nothing twice (docs/scaling.md).")] = False,
) -> None:
    """Find the catalog references each input contains (matches best first).

    Each input is echoed as given in the result's ``input``. With --kafka-topic, each message
    up to the topic's end when the scan starts is an input; one that names no path is an
    error result whose ``input`` is ``kafka://TOPIC/PARTITION/OFFSET``.
    """
    out = sys.stdout
    # stdout is the results' alone: Ray prints its workers' failures on sys.stdout from a
    # thread of its own, at any time, so that goes to stderr for the rest of the command
    with contextlib.redirect_stdout(sys.stderr):
        _scan(out, paths or [], db=db, as_json=as_json, max_seconds=max_seconds,
              address=address, runner=runner, manifest=manifest, results_file=results_file,
              workers=workers, batch_size=batch_size, max_retries=max_retries,
              kafka=(kafka_topic, kafka_bootstrap, kafka_group, kafka_config),
              record=record)


def _scan(out: TextIO, paths: list[str], *, db: Path | None, as_json: bool,
          max_seconds: float | None, address: str | None, runner: str,
          manifest: Path | None, results_file: Path | None, workers: int | None,
          batch_size: int, max_retries: int,
          kafka: tuple[str | None, str | None, str | None, Path | None] = (
              None, None, None, None),
          record: bool = False) -> None:
    if runner not in ("local", "ray"):
        die(f"unknown runner {runner!r}; use --runner local or --runner ray")
    topic, bootstrap, group, client_config = kafka
    if topic is None and group is not None:
        die("--kafka-group needs --kafka-topic")
    if topic is not None and not bootstrap:
        die("--kafka-topic needs --kafka-bootstrap HOST:PORT (or $EARMARK_KAFKA_BOOTSTRAP)")
    if group is not None and not as_json and results_file is None:
        die("--kafka-group commits the offsets of messages whose results are written: "
            "add --json or --results FILE")
    feed: TopicRead | None = None
    settings = load_settings(max_seconds=max_seconds, ray_address=address)
    err = stderr()
    with user_errors():
        inputs = expand_inputs(paths, manifest)
        if topic is not None:
            assert bootstrap is not None
            feed = read_topic(bootstrap=bootstrap, topic=topic, group=group,
                              config=load_client_config(client_config)
                              if client_config is not None else None)
            for note in feed.notes:
                err.print(f"kafka: {note}", markup=False)
            inputs += feed.inputs
            if not inputs:
                feed.close()
                err.print(f"nothing new on Kafka topic {topic}", markup=False)
                return
        if not inputs:
            die("nothing to scan: give files, folders, --manifest FILE or --kafka-topic")
        journal = ResultsFile(results_file) if results_file is not None else None
        database = (open_db(home=resolve_home(db), url=settings.database_url)
                    if record else None)
        todo, skipped = pending(inputs, journal=journal, db=database)
        if skipped:
            where = " and ".join([f"answered in {results_file}"] * (journal is not None)
                                 + ["recorded in the service database"] * record)
            err.print(f"{skipped} input(s) already {where}; skipped", markup=False)
        run = open_runner(cast(RunnerName, runner), home=resolve_home(db),
                          max_seconds=settings.max_seconds, ray_address=settings.ray_address,
                          replicas=settings.index_replicas, workers=workers,
                          batch_size=batch_size, max_retries=max_retries,
                          detector=settings.detector if record else None)
        if feed is not None:  # answers bad messages; closes the Kafka client with the runner
            run = feed.runner(run, sync=journal.sync if journal is not None else None)
    recorder = Recorder(database) if database is not None else None
    results: list[tuple[int, dict[str, Any]]] = []
    try:
        with user_errors(), Progress(
            TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"), console=err, transient=True,
            redirect_stdout=False, redirect_stderr=False,
            disable=not err.is_terminal or (as_json and out.isatty()),
        ) as bar:
            task = bar.add_task("scan", total=len(todo), last="")
            names = [p for p, _ in todo]
            answers = (run.observe(names) if recorder is not None
                       else ((i, r, None) for i, r in run.scan(names)))
            for pos, res, observed in answers:
                bar.update(task, advance=1, last=Path(res["input"]).name)
                key = todo[pos][1]
                if journal is not None:
                    assert key is not None
                    journal.append(res, key)
                if recorder is not None and not (feed is not None and res["input"] in feed.bad):
                    assert key is not None  # (a bad Kafka message names no upload to record)
                    recorder.add(key, res, observed)
                if as_json:
                    out.write(json.dumps(res, ensure_ascii=False) + "\n")
                    out.flush()
                results.append((pos, {"status": res["status"]} if as_json else res))
                if feed is not None:
                    feed.answered(pos)  # its result is written (--kafka-group: commit)
            if feed is not None:
                feed.commit()
    finally:
        run.close()
        if journal is not None:
            journal.close()
        if recorder is not None:
            with user_errors():
                recorder.close()
            err.print(recorder.summary(), markup=False)
        if database is not None:
            database.close()
    done = [r for _, r in sorted(results, key=lambda x: x[0])]
    if not as_json:
        stdout(out).print(_table(done))
    ok = sum(r["status"] != "error" for r in done)
    n_match = sum(r["status"] == "match" for r in done)
    err.print(f"{len(done)} input(s): {n_match} match, {ok - n_match} no match, "
              f"{len(done) - ok} error")
    if ok == 0 and done:
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
