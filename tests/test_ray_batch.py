# SPDX-License-Identifier: Apache-2.0
"""Batch scanning on Ray Data (``earmark scan --runner ray``) on the session's real local Ray
cluster: the same JSON lines as the local scan, a resumed run, workers that die mid-run; and
``earmark cluster start | status | stop`` on loopback.

Skipped when Ray is not installed (``pip install 'earmark[ray]'``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SR, Library, excerpt, needs_ffmpeg, write_audio
from earmark.audio.generators import pink_noise
from earmark.cli.main import app
from earmark.errors import ClusterError
from earmark.runners.inputs import ResultsFile, expand_inputs, read_path_manifest

pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'earmark[ray]'")

from earmark.runners.ray_batch import RayBatchRunner, ScanWorker

pytestmark = needs_ffmpeg


def run(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def uploads(library: Library, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of uploads: four excerpts of references (one in a subfolder), outside
    noise, a corrupt file and an empty one."""
    d = tmp_path_factory.mktemp("uploads")
    for i, (rid, start) in enumerate([("ref0", 2.0), ("ref2", 5.0), ("ref4", 1.0),
                                      ("long", 40.0)]):
        sub = d / "day2" if i == 3 else d
        write_audio(sub / f"q{i}.mp3", excerpt(library.signals[rid], start, 6.0))
    write_audio(d / "noise.wav",
                0.3 * pink_noise(sr=SR, duration=5.0, rng=np.random.default_rng(3)))
    (d / "corrupt.flac").write_bytes(library.files["ref1"].read_bytes()[:300])
    (d / "empty.ogg").write_bytes(b"")
    return d


def _lines(out: str) -> list[dict[str, Any]]:
    return sorted((json.loads(x) for x in out.splitlines()), key=lambda r: r["input"])


def test_ray_scan_gives_the_local_json_lines(ray_cluster: Any, catalog_home: Path,
                                            uploads: Path) -> None:
    code, local, err = run("scan", "--db", catalog_home, "--json", uploads)
    assert code == 0, err
    code, on_ray, err = run("scan", "--runner", "ray", "--db", catalog_home, "--json",
                            "--batch-size", "2", uploads)
    assert code == 0, err
    want, got = _lines(local), _lines(on_ray)
    assert got == want
    assert len(got) == 7
    assert {r["status"] for r in got} == {"match", "no_match", "error"}
    by_name = {Path(r["input"]).name: r for r in got}
    assert by_name["corrupt.flac"]["reason"].startswith("corrupt_input")
    assert by_name["empty.ogg"]["reason"].startswith("empty_input")
    assert by_name["q3.mp3"]["matches"][0]["reference_id"] == "long"
    assert "7 input(s): 4 match, 1 no match, 2 error" in err


def test_a_resumed_run_skips_what_is_answered(ray_cluster: Any, catalog_home: Path,
                                             uploads: Path, library: Library,
                                             tmp_path: Path) -> None:
    files = expand_inputs([uploads])
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,owner\n" + "".join(f"{f},x\n" for f in files[:3]))
    assert read_path_manifest(manifest) == files[:3]
    results = tmp_path / "out" / "results.jsonl"
    code, out, err = run("scan", "--runner", "ray", "--db", catalog_home, "--json",
                         "--manifest", manifest, "--results", results)
    assert code == 0, err
    assert len(out.splitlines()) == 3 and len(results.read_text().splitlines()) == 3
    # a crash while the 4th line was written: the part is dropped, the input scanned again
    with open(results, "a") as fh:
        fh.write('{"input": "' + files[3] + '", "sta')
    # a new upload, and one changed since: both are scanned, the rest skipped
    new = write_audio(uploads / "late.wav", excerpt(library.signals["ref3"], 4.0, 6.0))
    os.utime(files[0], ns=(1, 1))
    try:
        code, out, err = run("scan", "--runner", "ray", "--db", catalog_home, "--json",
                             "--results", results, uploads)
        assert code == 0, err
        assert "2 input(s) already answered" in err
        scanned = {Path(r["input"]).name for r in _lines(out)}
        assert scanned == {Path(f).name for f in [files[0], *files[3:], str(new)]}
        rows = [json.loads(x) for x in results.read_text().splitlines()]
        assert len(rows) == 3 + len(scanned)
        assert all(set(r["resume"]) == {"path", "size", "mtime_ns"} for r in rows)
        # the file answers every input now: nothing left to do
        code, out, err = run("scan", "--runner", "ray", "--db", catalog_home, "--json",
                             "--results", results, uploads)
        assert code == 0 and out == "" and "8 input(s) already answered" in err
        assert len(ResultsFile(results).answered) == 9  # q0 before and after its change
    finally:
        new.unlink()


class CrashOnce(ScanWorker):
    """Kills its own process in its first call of the run (a marker file says it did)."""

    marker = ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        m = Path(self.marker)
        if not m.exists():
            m.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


class CrashOn(ScanWorker):
    """Kills its own process on every batch holding an input named ``crash.wav``."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(str(p).endswith("crash.wav") for p in batch["path"]):
            os._exit(1)
        return super().__call__(batch)


def _by_value() -> None:
    """Ray workers cannot import this test module: ship its classes by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _marked(marker: Path) -> type[ScanWorker]:
    return type("CrashOnceHere", (CrashOnce,), {"marker": str(marker)})


def test_a_worker_killed_mid_run_still_answers_each_input_once(
        ray_cluster: Any, catalog_home: Path, uploads: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI: stdout stays the JSON lines though Ray reports the dead worker."""
    _by_value()
    inputs = expand_inputs([uploads]) * 2  # 14 inputs, 7 batches
    _, local, _ = run("scan", "--db", catalog_home, "--json", *inputs)
    marker = tmp_path / "crashed"
    defaults = RayBatchRunner.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "worker_cls", _marked(marker))
    code, out, err = run("scan", "--runner", "ray", "--db", catalog_home, "--json",
                         "--batch-size", "2", "--max-retries", "2", *inputs)
    assert code == 0, err
    assert marker.exists()  # a worker did die
    assert _lines(out) == _lines(local)
    assert "14 input(s)" in err


def test_a_batch_that_kills_its_worker_every_time_is_an_error(
        ray_cluster: Any, catalog_home: Path, uploads: Path, tmp_path: Path) -> None:
    _by_value()
    crash = tmp_path / "crash.wav"
    crash.write_bytes(b"")
    inputs = [*[f for f in expand_inputs([uploads]) if Path(f).name[0] == "q"][:3],
              str(crash)]
    runner = RayBatchRunner(home=catalog_home, max_seconds=None, batch_size=1,
                            max_retries=1, worker_cls=CrashOn)
    got = dict(runner.scan(inputs))
    assert sorted(got) == [0, 1, 2, 3]
    assert got[3]["status"] == "error" and got[3]["reason"].startswith("worker_lost: ")
    assert all(got[i]["status"] != "error" for i in range(3))


class NoCatalogHere(ScanWorker):
    """A node without the catalog folder."""

    def __init__(self, home: str, max_seconds: float | None) -> None:
        super().__init__(home + "-not-on-this-node", max_seconds)


def test_workers_that_cannot_open_the_catalog_stop_the_run_with_a_hint(
        ray_cluster: Any, catalog_home: Path, uploads: Path) -> None:
    _by_value()
    runner = RayBatchRunner(home=catalog_home, max_seconds=None, worker_cls=NoCatalogHere)
    with pytest.raises(ClusterError, match=r"catalog at .*re-run goes on"):
        list(runner.scan(expand_inputs([uploads])))


def test_no_catalog_is_one_line_before_any_work(ray_cluster: Any, tmp_path: Path,
                                                uploads: Path) -> None:
    code, out, err = run("scan", "--runner", "ray", "--db", tmp_path / "none", uploads)
    assert code == 2 and out == "" and err.startswith("error: ")
    code, _, err = run("scan", "--runner", "spark", uploads)
    assert code == 2 and "--runner local or --runner ray" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_cluster_start_status_stop_on_loopback() -> None:
    """A second, separate cluster: its own folder (short, for Ray's socket paths) and port;
    the CLI runs in subprocesses (this process is connected to the session's cluster)."""
    folder = Path(tempfile.mkdtemp(prefix="emc-", dir="/tmp"))
    cmd = [sys.executable, "-m", "earmark.cli.main", "cluster"]
    port = _free_port()
    kw: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 120}
    try:
        p = subprocess.run([*cmd, "start", "--port", str(port), "--num-cpus", "1",
                            "--dir", folder], **kw)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == f"export EARMARK_RAY_ADDRESS=127.0.0.1:{port}"
        again = subprocess.run([*cmd, "start", "--port", str(port), "--dir", folder], **kw)
        assert again.returncode == 2 and "already runs" in again.stderr
        st = subprocess.run([*cmd, "status", "--json", "--dir", folder], **kw)
        assert st.returncode == 0, st.stderr
        info = json.loads(st.stdout)
        assert info["nodes"] == 1 and info["resources"]["CPU"] == 1
    finally:
        stop = subprocess.run([*cmd, "stop", "--dir", folder], **kw)
    assert stop.returncode == 0 and "stopped the cluster" in stop.stderr
    assert not (folder / "cluster.json").exists()
    gone = subprocess.run([*cmd, "status", "--dir", folder], **kw)
    assert gone.returncode == 2 and "no cluster" in gone.stderr
