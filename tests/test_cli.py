# SPDX-License-Identifier: Apache-2.0
"""The command line as a contract: names, JSON shapes, exit codes, odd paths, ``kill -9``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SR, Library, excerpt, music, needs_ffmpeg, write_audio
from earmark.audio.generators import pink_noise
from earmark.cli.main import app
from earmark.service.catalog import open_catalog

pytestmark = needs_ffmpeg

MATCH_KEYS = {"reference_id", "title", "confidence", "query_match_ms", "query_match_pct",
              "ref_match_ms", "ref_match_pct", "segments"}
SEGMENT_KEYS = {"query_start_ms", "query_end_ms", "ref_start_ms", "ref_end_ms", "speed_ratio",
                "pitch_semitones", "tempo_ratio"}


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def earmark_cmd() -> list[str]:
    script = Path(sys.executable).parent / "earmark"
    return [str(script)] if script.exists() else [sys.executable, "-m", "earmark.cli.main"]


def check_contract(line: dict) -> None:
    assert list(line) == ["input", "status", "reason", "duration_ms", "matches"]
    assert isinstance(line["input"], str)
    assert line["status"] in {"match", "no_match", "error"}
    assert isinstance(line["matches"], list)
    if line["status"] == "match":
        assert line["reason"] is None and line["matches"]
        assert isinstance(line["duration_ms"], int)
    else:
        assert isinstance(line["reason"], str) and line["reason"]
        assert line["matches"] == []
        if line["status"] == "no_match":
            assert isinstance(line["duration_ms"], int)
    confs = [m["confidence"] for m in line["matches"]]
    assert confs == sorted(confs, reverse=True)
    for m in line["matches"]:
        assert set(m) == MATCH_KEYS
        assert isinstance(m["reference_id"], str)
        assert m["title"] is None or isinstance(m["title"], str)
        assert isinstance(m["confidence"], float) and 0.0 <= m["confidence"] <= 1.0
        for k in ("query_match_ms", "ref_match_ms"):
            assert isinstance(m[k], int) and m[k] >= 0
        for k in ("query_match_pct", "ref_match_pct"):
            assert isinstance(m[k], int | float) and 0.0 <= m[k] <= 100.0
        assert m["segments"]
        for s in m["segments"]:
            assert set(s) == SEGMENT_KEYS
            for k in ("query_start_ms", "query_end_ms", "ref_start_ms", "ref_end_ms"):
                assert isinstance(s[k], int)
            for k in ("speed_ratio", "pitch_semitones", "tempo_ratio"):
                assert isinstance(s[k], int | float)


def test_command_names() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "catalog" in out and "scan" in out
    code, out, _ = run("catalog", "--help")
    assert code == 0 and all(c in out for c in ("add", "list", "remove", "stats"))


def test_scan_json_contract_and_bad_input(catalog_home: Path, library: Library,
                                          tmp_path: Path) -> None:
    good = write_audio(tmp_path / "clip.mp3", excerpt(library.signals["ref1"], 2.0, 6.0))
    noise = write_audio(tmp_path / "noise.wav",
                        0.3 * pink_noise(sr=SR, duration=6.0, rng=np.random.default_rng(1)))
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(library.files["ref1"].read_bytes()[:200])
    (tmp_path / "empty.ogg").write_bytes(b"")
    (tmp_path / "readme.mp3").write_text("this is a text file\n")
    inputs = [corrupt, good, tmp_path / "empty.ogg", noise, tmp_path / "readme.mp3",
              tmp_path / "gone.wav"]
    code, out, err = run("scan", "--db", catalog_home, "--json", *inputs)
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["input"] for x in lines] == [str(p) for p in inputs]
    for x in lines:
        check_contract(x)
    assert [x["status"] for x in lines] == ["error", "match", "error", "no_match", "error",
                                            "error"]
    assert lines[1]["matches"][0]["reference_id"] == "ref1"
    assert [lines[i]["reason"].split(":")[0] for i in (0, 2, 4, 5)] == [
        "corrupt_input", "empty_input", "unsupported_format", "file_missing"]
    assert "6 input(s): 1 match, 1 no match, 4 error" in err


def test_scan_exit_code_when_nothing_succeeds(catalog_home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    code, out, _ = run("scan", "--db", catalog_home, "--json", tmp_path / "empty.wav",
                       tmp_path / "missing.wav")
    assert code == 1
    assert [json.loads(x)["status"] for x in out.splitlines()] == ["error", "error"]
    # a no_match is a success
    short = write_audio(tmp_path / "short.wav", music(5, 0.5))
    assert run("scan", "--db", catalog_home, "--json", short, tmp_path / "empty.wav")[0] == 0
    # silence is a typed error, like every unusable input
    quiet = write_audio(tmp_path / "quiet.wav", np.zeros(4 * SR))
    code, out, _ = run("scan", "--db", catalog_home, "--json", quiet)
    assert code == 1 and json.loads(out)["reason"].startswith("silent_input: ")


def test_scan_table(catalog_home: Path, library: Library, tmp_path: Path) -> None:
    q = write_audio(tmp_path / "q.wav", excerpt(library.signals["ref0"], 7.0, 5.0))
    code, out, _ = run("scan", "--db", catalog_home, q, tmp_path / "nope.wav")
    assert code == 0
    for word in ("ref0", "match", "error", "file_missing", "0:07"):
        assert word in out


def test_catalog_commands(library: Library, tmp_path: Path) -> None:
    db = tmp_path / "cat"
    (tmp_path / "readme.mp3").write_text("text\n")
    code, out, err = run("catalog", "add", "--db", db, "--jobs", "1", library.files["ref0"],
                         library.files["ref1"], tmp_path / "readme.mp3")
    assert code == 0 and out == ""
    assert "added 2, skipped 0, failed 1" in err
    assert "readme.mp3: unsupported_format" in err
    code, _, err = run("catalog", "add", "--db", db, library.files["ref0"])
    assert code == 0 and "added 0, skipped 1, failed 0" in err
    # nothing succeeded and something failed
    assert run("catalog", "add", "--db", db, tmp_path / "readme.mp3")[0] == 1
    assert run("catalog", "add", "--db", db, tmp_path / "nothing-here")[0] == 1
    code, _, err = run("catalog", "add", "--db", db)
    assert code == 2 and err.startswith("error: nothing to add")

    code, out, _ = run("catalog", "list", "--db", db, "--json")
    refs = json.loads(out)
    assert code == 0 and [r["id"] for r in refs] == ["ref0", "ref1"]
    assert {"id", "title", "duration_ms", "sha256", "created_at"} <= set(refs[0])
    code, out, _ = run("catalog", "list", "--db", db)
    assert code == 0 and "ref1" in out

    code, out, _ = run("catalog", "stats", "--db", db, "--json")
    s = json.loads(out)
    assert code == 0 and s["references"] == 2
    assert {"references", "audio_seconds", "index_bytes"} <= set(s)
    assert isinstance(s["audio_seconds"], float) and isinstance(s["index_bytes"], int)
    code, out, _ = run("catalog", "stats", "--db", db)
    assert code == 0 and "index_bytes" in out

    code, _, err = run("catalog", "remove", "--db", db, "ref0")
    assert code == 0 and "removed ref0" in err
    code, _, err = run("catalog", "remove", "--db", db, "ref0")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: unknown_reference: ")
    assert "earmark catalog list" in err
    assert [r["id"] for r in json.loads(run("catalog", "list", "--db", db, "--json")[1])] == [
        "ref1"]


def test_db_defaults(catalog_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run("catalog", "stats", "--json", env={"EARMARK_HOME": str(catalog_home)})
    assert code == 0 and json.loads(out)["home"] == str(catalog_home.resolve())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EARMARK_HOME", raising=False)
    code, _, err = run("scan", "x.wav")
    assert code == 2 and err.count("\n") == 1 and "no catalog at 'earmark-data'" in err
    shutil.copytree(catalog_home, tmp_path / "earmark-data")
    assert json.loads(run("catalog", "stats", "--json")[1])["references"] > 0


def test_odd_file_names(library: Library, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Spaces, unicode and a leading dash, through the real entry point."""
    monkeypatch.chdir(tmp_path)
    name = "-dash ü 名前.flac"
    shutil.copy(library.files["ref1"], tmp_path / name)
    code, _, err = run("catalog", "add", "--db", "db", "--jobs", "1", "--", name)
    assert code == 0 and "added 1" in err, err
    write_audio(tmp_path / "-clip ü 名前.wav", excerpt(library.signals["ref1"], 3.0, 5.0))
    proc = subprocess.run(
        [*earmark_cmd(), "scan", "--db", "db", "--json", "--", "-clip ü 名前.wav",
         "./-clip ü 名前.wav"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["input"] for x in lines] == ["-clip ü 名前.wav", "./-clip ü 名前.wav"]
    assert [x["matches"][0]["reference_id"] for x in lines] == ["-dash ü 名前"] * 2
    code, _, err = run("catalog", "remove", "--db", "db", "--", "-dash ü 名前")
    assert code == 0, err


@pytest.mark.parametrize("delay", [0.0, 0.15])
def test_kill_9_during_add_leaves_a_consistent_catalog(tmp_path: Path, delay: float) -> None:
    """SIGKILL ``catalog add`` as soon as its first index segment file appears (typically
    between the segment's rename and the manifest commit), or a little later (while the
    second batch is fingerprinted); then check the catalog and complete it.

    The crash states that are too brief to hit from outside (pending rows during the index
    add, or after it) are built directly in ``test_repair_resolves_every_crash_state``.
    """
    n = 40  # batches of 16: later ones are still to come at the kill
    src = tmp_path / "src"
    for i in range(n):
        write_audio(src / f"track {i:02d}.wav", music(200 + i, 12.0))
    home = tmp_path / "cat"
    shard = home / "index" / "shard-0000"
    proc = subprocess.Popen(
        [*earmark_cmd(), "catalog", "add", str(src), "--db", str(home), "--jobs", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(shard.glob("seg-*.keys.npy")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the add made no progress"
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "finished before the kill"

    with open_catalog(home=home, write=True) as cat:  # repairs
        ready = cat.store.keys(status="ready")
        assert cat.store.keys(status="pending") == set()
        assert ready == cat.index.ref_keys()
        # whole batches only: 0 when the kill fell between the first segment's rename and
        # its manifest commit
        assert len(ready) in (0, 16, 32)
        with sqlite3.connect(shard / "manifest.sqlite") as db:
            live = {r[0] for r in db.execute("SELECT id FROM segments")}
        files = sorted(p.name for p in shard.glob("seg-*"))
        assert files == sorted(f"seg-{s:06d}.{k}.npy" for s in live for k in ("keys", "vals"))
    code, _, err = run("catalog", "add", src, "--db", home, "--jobs", "1")
    assert code == 0
    assert f"added {n - len(ready)}, skipped {len(ready)}, failed 0" in err
    with open_catalog(home=home) as cat:
        assert cat.store.keys(status="ready") == cat.index.ref_keys()
        assert len(cat.index.ref_keys()) == n
        assert sorted(r.id for r in cat.store.all()) == [f"track {i:02d}" for i in range(n)]


def test_python_dash_m_entry_point(catalog_home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "earmark.cli.main", "catalog", "stats",
                           "--json", "--db", str(catalog_home)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EARMARK_HOME": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["references"] == 7
