# SPDX-License-Identifier: Apache-2.0
"""Batch scans into the service database (``earmark scan --record``): on the session's real
local Ray cluster (which declares one logical GPU, so the detector stage is scheduled on it)
and in this process; real catalog, real FFmpeg, real SQLite (and PostgreSQL when
``EARMARK_TEST_POSTGRES_URL`` is set). The scans are read back through the service
functions the API uses."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import SR, Library, excerpt, needs_ffmpeg, needs_postgres, pg_schema, write_audio
from earmark.audio.generators import pink_noise
from earmark.cli.main import app
from earmark.moderation import audit
from earmark.moderation.policy import Manifest, PolicyBody, Rule
from earmark.runners.inputs import InputKey, expand_inputs
from earmark.runners.ray_batch import plan_pools
from earmark.runners.record import Recorder, pending, record_id
from earmark.service.catalog import open_catalog
from earmark.service.policies import save_policy
from earmark.service.reviews import list_reviews
from earmark.service.scans import ScanOut, get_scan, list_scans
from earmark.store.db import Database, open_db
from earmark.store.models import AuditEntry, Scan

pytestmark = needs_ffmpeg

#: owners given to references of the shared catalog (the rest have none)
OWNERS = {"ref0": "label-a", "ref2": "label-b"}


def run(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def _lines(out: str) -> list[dict[str, Any]]:
    return sorted((json.loads(x) for x in out.splitlines()), key=lambda r: r["input"])


@pytest.fixture(scope="module")
def owned_home(catalog_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared catalog whose ref0 belongs to label-a and ref2 to label-b."""
    home = tmp_path_factory.mktemp("owned") / "home"
    shutil.copytree(catalog_home, home)
    with open_catalog(home=home, write=True) as cat:
        for rid, owner in OWNERS.items():
            assert cat.store.update_meta(rid, {"owner": owner}) is not None
    return home


@pytest.fixture(scope="module")
def batch(library: Library, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Uploads named after what the policies below make of them."""
    d = tmp_path_factory.mktemp("batch")
    write_audio(d / "block.mp3", excerpt(library.signals["ref0"], 2.0, 6.0))
    write_audio(d / "review.mp3", excerpt(library.signals["ref2"], 5.0, 6.0))
    write_audio(d / "track.mp3", excerpt(library.signals["ref4"], 1.0, 6.0))  # no owner
    write_audio(d / "allow.wav",
                0.3 * pink_noise(sr=SR, duration=5.0, rng=np.random.default_rng(3)))
    write_audio(d / "silent.wav", np.zeros(3 * SR, np.float32))
    (d / "corrupt.flac").write_bytes(library.files["ref1"].read_bytes()[:300])
    (d / "empty.ogg").write_bytes(b"")
    return d


#: what each upload of :func:`batch` becomes: (status, action)
WANT = {"block.mp3": ("done", "block"), "review.mp3": ("done", "review"),
        "track.mp3": ("done", "track"), "allow.wav": ("done", "allow"),
        "silent.wav": ("done", "allow"),  # the API takes it (it decodes): judged, allowed
        "corrupt.flac": ("failed", None), "empty.ogg": ("failed", None)}  # the API refuses


def policies(db: Database) -> None:
    """label-a blocks any match (a 6 s excerpt is manifest here); label-b asks a person."""
    save_policy(db, owner="label-a", actor="test", body=PolicyBody(
        rules=[Rule(name="block all", action="block")],
        manifest=Manifest(min_confidence=0.5, min_query_match_ms=1000)))
    save_policy(db, owner="label-b", actor="test",
                body=PolicyBody(rules=[Rule(name="check", action="review")]))


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite service database, with the policies, that the CLI records into."""
    url = f"sqlite:///{tmp_path / 'service.sqlite'}"
    monkeypatch.setenv("EARMARK_DATABASE_URL", url)
    monkeypatch.delenv("EARMARK_DETECTOR", raising=False)
    db = open_db(home=tmp_path, url=url)
    policies(db)
    db.close()
    yield url


def scans_by_name(db: Database) -> dict[str, ScanOut]:
    rows = list_scans(db, limit=500)
    names = [s.filename for s in rows]
    assert len(names) == len(set(names)), f"an input recorded twice: {sorted(names)}"
    return {s.filename: get_scan(db, s.id) for s in rows}


def check_recorded(db: Database, folder: Path) -> dict[str, ScanOut]:
    """Every upload of ``folder`` recorded once, as :data:`WANT` says, with its evidence."""
    got = scans_by_name(db)
    assert {n: (s.status, s.action) for n, s in got.items()} == WANT
    for name, s in got.items():
        f = folder / name
        with db.reader() as r:  # the input itself, not a copy
            row = r.get(Scan, s.id)
            assert row is not None and row.blob == os.fspath(f.absolute())
            assert row.submitted_by is None and row.content_type == "upload"
        assert s.external_id == record_id(InputKey.of(os.fspath(f)))
        assert s.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
        assert s.size_bytes == f.stat().st_size
        if s.status == "failed":
            assert s.evidence is None and s.decision is None and s.error
            continue
        ev = s.evidence
        assert ev is not None and ev["input"]["filename"] == name
        assert ev["ai"] is not None and ev["versions"]["detector"].startswith("residue")
        assert ev["versions"]["fingerprinter"] and ev["external_id"] == s.external_id
    assert got["corrupt.flac"].error.startswith("corrupt_input")  # type: ignore[union-attr]
    assert got["empty.ogg"].error.startswith("empty_input")  # type: ignore[union-attr]
    block = got["block.mp3"]
    assert block.evidence["identification"]["matches"][0]["owner"] == "label-a"  # type: ignore[index]
    assert block.decision["policy_versions"]["label-a"] == 1  # type: ignore[index]
    reviews = list_reviews(db)
    assert [(r.filename, r.owners) for r in reviews] == [("review.mp3", ["label-b"])]
    assert got["review.mp3"].reviews[0].status == "pending"
    with db.reader() as r:
        assert audit.verify(r).ok
        decided = r.scalars(select(AuditEntry.subject).where(AuditEntry.action == "decision"))
        assert sorted(decided) == sorted(f"scan:{s.id}" for s in got.values()
                                         if s.status == "done")  # one decision per scan
    return got


def test_plan_pools() -> None:
    # no recording: one stage, as before
    assert plan_pools(cpus=8, gpus=0, workers=None, blocks=100, detect=False).identify == 8
    # a GPU node: one detector actor per GPU, identification on the CPUs left
    p = plan_pools(cpus=16, gpus=2, workers=None, blocks=100, detect=True)
    assert (p.identify, p.detect, p.detect_gpus, p.num_cpus) == (14, 2, True, 1.0)
    # CPU only: a quarter of the actors detect
    p = plan_pools(cpus=8, gpus=0, workers=None, blocks=100, detect=True)
    assert (p.identify, p.detect, p.detect_gpus, p.num_cpus) == (6, 2, False, 1.0)
    # never more actors than batches, and always one per stage (sharing a CPU if need be)
    p = plan_pools(cpus=1, gpus=0, workers=None, blocks=1, detect=True)
    assert (p.identify, p.detect, p.num_cpus) == (1, 1, 0.5)
    p = plan_pools(cpus=2, gpus=1, workers=4, blocks=3, detect=True)
    assert (p.identify, p.detect, p.detect_gpus, p.num_cpus) == (1, 1, True, 1.0)


def test_ray_record_fills_the_service_database_once(
        ray_cluster: Any, owned_home: Path, batch: Path, db_url: str) -> None:
    """The JSON lines of a plain scan; every upload a scan with its evidence and decision;
    the detector stage scheduled on the (logical) GPU; a re-run records nothing."""
    assert ray_cluster.cluster_resources().get("GPU") == 1
    code, plain, err = run("scan", "--db", owned_home, "--json", batch)
    assert code == 0, err
    code, out, err = run("scan", "--runner", "ray", "--record", "--db", owned_home, "--json",
                         "--batch-size", "2", batch)
    assert code == 0, err
    assert _lines(out) == _lines(plain)
    assert "recorded 7 scan(s) in the service database (2 allow, 1 block, 1 review, " \
           "1 track, 2 failed)" in err
    # the detector actors were given the GPU (ray.get_gpu_ids() in the actor); no CUDA
    # behind it here, so the residue detector computed on the CPU
    assert "detector ran on gpu:0/cpu ×5" in err
    db = open_db(home=owned_home, url=db_url)
    try:
        check_recorded(db, batch)
        code, out, err = run("scan", "--runner", "ray", "--record", "--db", owned_home,
                             "--json", batch)
        assert code == 0 and out == "", err
        assert "7 input(s) already recorded in the service database; skipped" in err
        assert len(list_scans(db, limit=500)) == 7
    finally:
        db.close()


def test_local_record_and_a_changed_file(owned_home: Path, batch: Path, db_url: str,
                                         tmp_path: Path, library: Library) -> None:
    """``--runner local --record``, after a run that only wrote ``--results``: the inputs
    are recorded then (skipped only where every sink has them); a file changed since is a
    new upload."""
    results = tmp_path / "results.jsonl"
    code, plain, err = run("scan", "--db", owned_home, "--json", "--results", results, batch)
    assert code == 0, err
    code, out, err = run("scan", "--db", owned_home, "--json", "--results", results,
                         "--record", batch)
    assert code == 0, err
    assert _lines(out) == _lines(plain)
    assert "detector ran on cpu/cpu ×5" in err
    db = open_db(home=owned_home, url=db_url)
    try:
        check_recorded(db, batch)
        code, out, err = run("scan", "--db", owned_home, "--json", "--results", results,
                             "--record", batch)
        assert code == 0 and out == "", err
        assert ("7 input(s) already answered in " in err
                and "and recorded in the service database; skipped" in err)
        # the same name, new content: a new upload, a new scan
        changed = tmp_path / "up"
        changed.mkdir()
        clip = write_audio(changed / "block.mp3", excerpt(library.signals["ref0"], 9.0, 6.0))
        code, out, err = run("scan", "--db", owned_home, "--json", "--record", clip)
        assert code == 0 and len(out.splitlines()) == 1, err
        os.utime(clip, ns=(1, 1))
        code, out, err = run("scan", "--db", owned_home, "--json", "--record", clip, clip)
        assert code == 0 and len(out.splitlines()) == 1, err
        rows = [s for s in list_scans(db, limit=500) if s.filename == "block.mp3"]
        assert len(rows) == 3 and {s.action for s in rows} == {"block"}
        assert len({s.external_id for s in rows}) == 3
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                            marks=needs_postgres)])
def test_ray_detector_on_cpu_actors_records_through_the_recorder(
        ray_cluster: Any, owned_home: Path, batch: Path, tmp_path: Path,
        backend: str) -> None:
    """With no GPU to ask for, the detector stage runs on CPU actors; the driver's
    recorder writes to SQLite or PostgreSQL alike, and records each input once even when
    handed it twice."""
    from earmark.runners.ray_batch import RayBatchRunner

    inputs = expand_inputs([batch])
    runner = RayBatchRunner(home=owned_home, max_seconds=None, batch_size=3,
                            detector="residue", gpus=0)
    assert runner.pools(3, True).detect_gpus is False
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp_path / 'svc.sqlite'}")
    with pg_schema() if backend == "postgresql" else sqlite as url:
        db = open_db(home=tmp_path, url=url)
        try:
            policies(db)
            todo, skipped = pending(inputs, journal=None, db=db)
            assert skipped == 0 and len(todo) == 7
            answers = list(runner.observe([p for p, _ in todo]))
            assert sorted(p for p, _, _ in answers) == list(range(7))
            rec = Recorder(db, flush_every=4)
            for i, (pos, res, obs) in enumerate(answers + answers[:2]):  # two given twice
                key = todo[pos][1]
                assert key is not None and obs is not None
                rec.add(key, res, obs)
                if i == 6:
                    assert rec.devices == {"cpu/cpu": 5}  # the five judged ones
            report = rec.close()
            assert len(report.recorded) == 7 and report.existing == 2
            check_recorded(db, batch)
            assert pending(inputs, journal=None, db=db) == ([], 7)
        finally:
            db.close()


@needs_ffmpeg
def test_url_inputs_are_read_over_http_and_recorded(owned_home: Path, library: Library,
                                                    db_url: str, tmp_path: Path) -> None:
    """A manifest of object URLs (an object store's, a presigned link): FFmpeg streams each
    over HTTP, and ``--record`` hashes the body it serves; a missing object is
    ``file_missing`` (a failed scan), an unreachable server a clear error."""
    import functools
    import http.server
    import threading

    root = tmp_path / "bucket"
    root.mkdir()
    clip = write_audio(root / "up 1.mp3", excerpt(library.signals["ref0"], 4.0, 6.0))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        manifest = tmp_path / "objects.txt"
        manifest.write_text(f"{base}/up%201.mp3?X-Signature=secret\n{base}/gone.mp3\n"
                            "http://127.0.0.1:9/refused.mp3\n")
        code, out, err = run("scan", "--db", owned_home, "--json", "--record",
                             "--manifest", manifest)
    finally:
        server.shutdown()
    assert code == 0, err
    by = {r["input"].rsplit("/", 1)[1]: r for r in _lines(out)}
    up = by["up%201.mp3?X-Signature=secret"]
    assert up["status"] == "match" and up["matches"][0]["reference_id"] == "ref0", up
    assert by["gone.mp3"]["reason"].startswith("file_missing")
    assert "HTTP 404" in by["gone.mp3"]["reason"]
    assert by["refused.mp3"]["status"] == "error"
    assert "reachable" in by["refused.mp3"]["reason"]
    db = open_db(home=owned_home, url=db_url)
    try:
        rows = {s.blob: s for s in db_rows(db)}
    finally:
        db.close()
    got = rows[f"{base}/up%201.mp3?X-Signature=secret"]
    assert got.status == "done" and got.action == "block"
    assert got.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert rows[f"{base}/gone.mp3"].status == "failed"


def db_rows(db: Database) -> list[Scan]:
    with db.reader() as s:
        return list(s.scalars(select(Scan)).all())
