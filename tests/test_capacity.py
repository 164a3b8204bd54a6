# SPDX-License-Identifier: Apache-2.0
"""The sizing guide: ``earmark bench capacity`` on generated files, and the arithmetic of
``earmark capacity`` on the figures the package ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import Library, needs_ffmpeg
from earmark.bench import sizing
from earmark.bench.capacity import measure, write_report
from earmark.bench.sizing import Assumptions, load_measured, size
from earmark.cli.main import app
from earmark.service import scan


def run(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def test_the_model_windows_as_the_scan_does() -> None:
    assert (sizing.WINDOW_S, sizing.OVERLAP_S) == (scan.WINDOW_S, scan.OVERLAP_S)
    assert sizing._windows(30) == (1, 30)
    assert sizing._windows(180) == (4, 240)  # 0-60, 50-110, 100-160, 150-210 → last at 120


def test_sizes_grow_with_the_load_and_the_catalog() -> None:
    m = load_measured()  # the run shipped with the package
    small = size(m, catalog_hours=1_000, uploads_per_day=10_000)
    more_uploads = size(m, catalog_hours=1_000, uploads_per_day=1_000_000)
    bigger = size(m, catalog_hours=500_000, uploads_per_day=10_000)
    assert more_uploads.cores > 50 * small.cores
    assert bigger.index_gib == pytest.approx(500 * small.index_gib, rel=0.01)
    assert bigger.cpu_s_per_upload["lookup_align"] > small.cpu_s_per_upload["lookup_align"]
    assert small.gpus == 0 and small.nodes >= Assumptions().replicas
    # a faster growth of the lookup can only cost more
    steep = size(m, catalog_hours=500_000, uploads_per_day=10_000,
                 a=Assumptions(growth_exponent=1.0))
    assert steep.cores > bigger.cores and steep.shards >= bigger.shards
    # an unreachable target says so instead of a number of shards
    tight = size(m, catalog_hours=1_000, uploads_per_day=10_000, a=Assumptions(p95_s=0.5))
    assert tight.shards_for_latency is None and "cannot be met" in tight.notes[0]


def test_capacity_cli_prints_the_answer_and_every_assumption() -> None:
    code, out, err = run("capacity", "--catalog-tracks", "10000000", "--uploads-per-day",
                         "1000000", "--p95-s", "10")
    assert code == 0, err
    assert "583,333 catalog hours" in out and "cores" in out and "nodes" in out
    for word in ("burst factor", "utilisation", "extrapolation", "replicas", "63 → 103 → 200"):
        assert word in err
    code, out, _ = run("capacity", "--catalog-hours", "100", "--uploads-per-day", "1000",
                       "--json")
    assert code == 0 and json.loads(out)["gpus"] == 0
    code, _, err = run("capacity", "--uploads-per-day", "10")
    assert code == 2 and "--catalog-hours" in err
    code, _, err = run("capacity", "--catalog-hours", "1", "--uploads-per-day", "1",
                       "--measured", "/nonexistent.json")
    assert code == 2 and "earmark bench capacity" in err


@needs_ffmpeg
def test_bench_capacity_on_generated_files(library: Library, tmp_path: Path) -> None:
    res = measure(corpus=library.folder, query_s=5.0, growth=(2,), per_track=1)
    st = res["stages"]
    for stage in ("decode_8k", "decode_detector", "reference_fingerprint", "detect"):
        assert st[stage]["realtime_per_core"] > 1, stage
    assert res["corpus"]["catalog_tracks"] == 6 and res["index"]["bytes_per_audio_hour"] > 0
    assert [g["multiple"] for g in res["growth"]] == [1, 2]
    j, md = write_report(res, tmp_path, "earmark bench capacity --corpus X")
    assert load_measured(j)["command"] == "earmark bench capacity --corpus X"
    assert "| lookup + alignment" in md.read_text()
    assert size(load_measured(j), catalog_hours=10, uploads_per_day=100).cores >= 1
