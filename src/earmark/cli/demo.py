# SPDX-License-Identifier: Apache-2.0
"""``earmark demo``: build a catalog from real music and scan edited excerpts of it."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from earmark.cli import clock, stderr, stdout, user_errors


def demo(
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus folder with manifest.csv "
                                         "(scripts/fetch-corpus makes one).")],
    out: Annotated[Path, typer.Option("--out", help="Where the catalog and excerpts go.")] = Path(
        "demo-out"),
    seed: Annotated[int, typer.Option(help="Seed of the split and the excerpts.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1)] = 2,
) -> None:
    """Catalog 80 % of a corpus, cut edited excerpts, scan them, show found vs truth."""
    from earmark.bench.identify import split_manifest
    from earmark.demo import make_excerpts
    from earmark.service.catalog import add_references, open_catalog, stats
    from earmark.service.scan import scan_file

    err = stderr()
    if not (corpus / "manifest.csv").is_file():
        err.print(f"error: {corpus}/manifest.csv not found: run scripts/fetch-corpus --dest "
                  f"{corpus}")
        raise typer.Exit(2)
    cat_rows, non_rows = split_manifest(corpus, seed, None)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "catalog.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "title", "artist", "owner", "isrc"])
        for r in cat_rows:
            w.writerow([r["id"], str((corpus / r["path"]).resolve()), r["id"], "",
                        r["package"], ""])
    err.print(f"catalog: {len(cat_rows)} tracks of {corpus} (the other {len(non_rows)} stay "
              "out of it)")
    t0 = time.monotonic()
    # a fresh catalog each run: one left from another split would hold "non-catalog" music
    shutil.rmtree(out / "earmark-data", ignore_errors=True)
    with user_errors(), open_catalog(home=out / "earmark-data", write=True) as cat:
        with Progress(TextColumn("adding"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("add", total=None)
            rep = add_references(catalog=cat, manifest=manifest, jobs=jobs,
                                 on_start=lambda n: bar.update(task, total=n),
                                 on_item=lambda o: bar.advance(task))
        st = stats(catalog=cat)
        dt = time.monotonic() - t0
        err.print(f"added {rep.added}, skipped {rep.skipped}, failed {rep.failed}: "
                  f"{st['audio_seconds'] / 3600:.2f} h of music in {dt:.1f} s "
                  f"({st['audio_seconds'] / dt:.0f}× realtime), index "
                  f"{st['index_bytes'] / 1e6:.1f} MB")
        exdir = out / "excerpts"
        shutil.rmtree(exdir, ignore_errors=True)
        err.print("cutting edited excerpts …")
        excerpts = make_excerpts(corpus, cat_rows, non_rows, exdir, seed)
        table = Table("excerpt", "truth", "earmark found", "conf.", "query → reference",
                      "speed / pitch / tempo", "", title="earmark scan demo-out/excerpts/*")
        right = 0
        for ex in excerpts:
            t1 = time.perf_counter()
            res = scan_file(catalog=cat, path=exdir / ex.file)
            ms = (time.perf_counter() - t1) * 1000
            found = [m["reference_id"] for m in res["matches"]]
            twins = _same_passage(res["matches"], ex.expect)
            # every expected reference, the best one first, and nothing else but twins
            ok = (not found if not ex.expect else
                  found[0] in ex.expect and set(ex.expect) <= set(found)
                  and all(f in ex.expect or f in twins for f in found))
            right += ok
            mark = Text("✓" if ok else "✗", style="green" if ok else "red")
            if not res["matches"]:
                table.add_row(ex.file, ex.truth, Text(f"{res['status']}: {res['reason']}",
                                                      style="dim"), "", f"{ms:.0f} ms", "", mark)
                continue
            for i, m in enumerate(res["matches"]):
                s = m["segments"][0]
                name = m["reference_id"] + (" (the same passage: a catalog duplicate)"
                                            if m["reference_id"] in twins else "")
                table.add_row(
                    ex.file if i == 0 else "", ex.truth if i == 0 else "", name,
                    f"{m['confidence']:.2f}",
                    f"{s['query_start_ms'] / 1000:.1f}–{s['query_end_ms'] / 1000:.1f} s → "
                    f"{clock(s['ref_start_ms'])}–{clock(s['ref_end_ms'])}",
                    f"{s['speed_ratio']:.2f} / {s['pitch_semitones']:+.1f} st / "
                    f"{s['tempo_ratio']:.2f}", mark if i == 0 else "")
    stdout().print(table)
    err.print(f"{right} of {len(excerpts)} excerpts answered right. Try: .venv/bin/earmark scan "
              f"--db {out / 'earmark-data'} --json '{exdir}'/*")
    _detect_part(corpus, non_rows, out, seed)
    _monitor_part(corpus, cat_rows, non_rows, out, seed)


def _detect_part(corpus: Path, rows: list[dict], out: Path, seed: int) -> None:
    """AI-music detection on real clips and on proxy re-syntheses of them."""
    from earmark.demo import make_ai_excerpts
    from earmark.detect.residue import ResidueDetector
    from earmark.service.detect import detect_file

    err = stderr()
    aidir = out / "ai-excerpts"
    shutil.rmtree(aidir, ignore_errors=True)
    err.print("making AI-detection clips (random-weight decoders: proxies, not commercial "
              "generators) …")
    made = make_ai_excerpts(corpus, rows, aidir, seed)
    det = ResidueDetector()
    table = Table("clip", "what was done", "expected", "label", "AI prob.", "AI spans", "grid", "",
                  title="earmark detect demo-out/ai-excerpts/*")
    right = 0
    for ex in made:
        res = detect_file(aidir / ex.file, det).model_dump()
        # real music: right unless labelled ai; AI: right when labelled ai or when a span
        # lies on the AI part (an "uncertain" with the place a reviewer should listen to)
        a, b = ex.ai_span
        ok = res["label"] != "ai" if ex.expect[0] == "human" else (
            res["label"] == "ai" or any(s["end_ms"] > a and s["start_ms"] < b
                                        for s in res["spans"]))
        right += ok
        spans = ", ".join(f"{clock(s['start_ms'])}–{clock(s['end_ms'])}" for s in res["spans"])
        table.add_row(ex.file, ex.truth, "not ai" if ex.expect[0] == "human" else
                      "ai, or a span there", res["label"],
                      "—" if res["ai_probability"] is None else f"{res['ai_probability']:.2f}",
                      spans, (res["family"] or {}).get("name", ""),
                      Text("✓" if ok else "✗", style="green" if ok else "red"))
    stdout().print(table)
    err.print(f"{right} of {len(made)} clips as expected. Try: .venv/bin/earmark detect "
              f"--plot detect.png '{aidir}/04 partly AI (10–20 s).flac'")


def _monitor_part(corpus: Path, cat_rows: list[dict], non_rows: list[dict], out: Path,
                  seed: int) -> None:
    """A stream of non-catalog music with two catalog excerpts spliced in, watched by the
    same code as `earmark monitor` (played as fast as it decodes)."""
    from earmark.demo import make_stream
    from earmark.live.events import LiveEvent
    from earmark.live.monitor import watch
    from earmark.live.sources import AudioSource
    from earmark.service.catalog import open_catalog

    err = stderr()
    path, truth = make_stream(corpus, cat_rows, non_rows, out, seed)
    err.print(f"watching {path} (a non-catalog recording with catalog excerpts spliced in) …")
    events: list[LiveEvent] = []
    with open_catalog(home=out / "earmark-data") as cat:
        watch([AudioSource(str(path), id="demo-stream",
                           sr=cat.identifier.fingerprinter.sr)],
              catalog=cat, detector=None, sink=events.append)
    table = Table("spliced in", "at (stream)", "event", "stream time", "reference",
                  "reference time", "", title=f"earmark monitor {path}")
    right = 0
    for t in truth:
        hit = next((e.to_json() for e in events if e.event == "match_started"
                    and e.data.get("reference_id") == t["id"]
                    and abs(e.data["query_start_ms"] - t["at_ms"]) < 2000), None)
        end = next((e.to_json() for e in events if e.event == "match_ended"
                    and e.data.get("reference_id") == t["id"]), None)
        right += hit is not None
        mark = Text("✓" if hit else "✗", style="green" if hit else "red")
        if hit is None:
            table.add_row(t["id"], clock(t["at_ms"]), "no match_started", "", "", "", mark)
            continue
        table.add_row(t["id"], f"{clock(t['at_ms'])}–{clock(t['at_ms'] + t['ms'])}",
                      "match_started", f"{clock(hit['stream_ms'])} "
                      f"(+{(hit['stream_ms'] - t['at_ms']) / 1000:.1f} s)",
                      hit["reference_id"], clock(hit["ref_start_ms"]), mark)
        if end is not None:
            table.add_row("", "", "match_ended", clock(end["stream_ms"]), "",
                          f"{clock(end['query_start_ms'])}–{clock(end['query_end_ms'])} "
                          "matched", "")
    false = [e for e in events if e.event == "match_started"
             and e.data.get("reference_id") not in {t["id"] for t in truth}]
    stdout().print(table)
    err.print(f"{right} of {len(truth)} spliced excerpts detected, {len(false)} false starts. "
              f"Try: .venv/bin/earmark monitor --db {out / 'earmark-data'} --realtime "
              f"'{path}' | jq -c .")


def _same_passage(matches: list[dict], expect: list[str]) -> set[str]:
    """References other than the expected ones that a scan found over the same stretch of
    the query under the same transform as an expected one (tempo within 1 %, pitch within
    0.3 semitone): the catalog holds that passage twice (Drascula's ``track30`` repeats
    most of ``track1``), which is a right answer, not a chance match."""
    def seg(m: dict) -> dict:
        return m["segments"][0]

    truth = [seg(m) for m in matches if m["reference_id"] in expect]
    out = set()
    for m in matches:
        if m["reference_id"] in expect:
            continue
        s = seg(m)
        if any(abs(s["tempo_ratio"] / t["tempo_ratio"] - 1) <= 0.01
               and abs(s["pitch_semitones"] - t["pitch_semitones"]) <= 0.3
               and s["query_start_ms"] < t["query_end_ms"]
               and t["query_start_ms"] < s["query_end_ms"] for t in truth):
            out.add(m["reference_id"])
    return out
