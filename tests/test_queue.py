# SPDX-License-Identifier: Apache-2.0
"""The durable scan queue and its workers: real SQLite, real files, real processes."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import Library, excerpt, needs_ffmpeg, write_audio
from earmark.moderation import audit
from earmark.service.scans import Limits, get_scan, submit_scan
from earmark.service.worker import Worker
from earmark.store import queue
from earmark.store.db import Database, open_db
from earmark.store.models import AuditEntry, Scan


@pytest.fixture
def home(catalog_home: Path, tmp_path: Path) -> Path:
    """A copy of the shared catalog with an empty service database beside it."""
    h = tmp_path / "home"
    shutil.copytree(catalog_home, h)
    return h


@pytest.fixture
def db(home: Path) -> Iterator[Database]:
    d = open_db(home=home)
    yield d
    d.close()


def clip(library: Library, tmp: Path, rid: str = "ref1", start: float = 3.0,
         dur: float = 8.0, ext: str = "mp3") -> Path:
    return write_audio(tmp / f"{rid}-{start}.{ext}", excerpt(library.signals[rid], start, dur))


def decisions_of(db: Database, sid: str) -> int:
    with db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "decision", AuditEntry.subject == f"scan:{sid}")) or 0)


def submit(db: Database, home: Path, path: Path, **kw: object) -> str:
    with open(path, "rb") as f:
        scan, created = submit_scan(db, home=home, src=f, filename=path.name,
                                    limits=Limits(), **kw)  # type: ignore[arg-type]
    assert created
    return scan.id


@needs_ffmpeg
def test_a_worker_identifies_detects_decides_and_records_once(
        db: Database, home: Path, library: Library, tmp_path: Path) -> None:
    sid = submit(db, home, clip(library, tmp_path), external_id="up-1", territory="fr")
    w = Worker(db, home=home)
    assert w.run_once() and not w.run_once()  # one job, then an empty queue
    out = get_scan(db, sid)
    assert out.status == "done" and out.attempts == 1
    ev = out.evidence
    assert ev is not None and ev["identification"]["matches"][0]["reference_id"] == "ref1"
    assert ev["ai"]["status"] == "ok" and ev["territory"] == "FR"
    assert ev["versions"]["fingerprinter"] and ev["versions"]["detector"].startswith("residue")
    assert out.decision is not None and out.action == "track"  # the built-in default
    assert decisions_of(db, sid) == 1
    with db.reader() as s:
        assert audit.verify(s).ok


def test_a_stale_attempt_cannot_record(db: Database, home: Path, library: Library,
                                       tmp_path: Path) -> None:
    sid = submit(db, home, clip(library, tmp_path))
    first = queue.claim(db, worker="a", lease_s=0.05)
    assert first is not None and first[0] == sid
    time.sleep(0.1)  # the lease runs out: the job goes to the next worker
    second = queue.claim(db, worker="b", lease_s=30)
    assert second is not None and second[0] == sid and second[1] != first[1]
    assert not queue.heartbeat(db, sid, first[1])
    assert not queue.complete(db, sid, first[1], fields={"error": "stale"})
    assert queue.complete(db, sid, second[1])
    assert not queue.complete(db, sid, second[1])  # and only once
    with db.reader() as s:
        row = s.get(Scan, sid)
        assert row is not None and row.status == "done" and row.attempts == 2
        assert row.error is None


def test_released_jobs_retry_then_fail_for_good(db: Database, home: Path, library: Library,
                                                tmp_path: Path) -> None:
    sid = submit(db, home, clip(library, tmp_path))
    for i in range(queue.MAX_ATTEMPTS):
        got = queue.claim(db, worker="w")
        assert got is not None, i
        assert queue.release(db, sid, got[1], error="boom")
    assert queue.claim(db, worker="w") is None
    assert get_scan(db, sid).status == "failed"


def test_jobs_whose_worker_always_dies_end_failed(db: Database, home: Path, library: Library,
                                                  tmp_path: Path) -> None:
    sid = submit(db, home, clip(library, tmp_path))
    for _ in range(queue.MAX_ATTEMPTS):
        assert queue.claim(db, worker="dies", lease_s=0.01) is not None
        time.sleep(0.02)
    assert queue.claim(db, worker="w") is None
    out = get_scan(db, sid)
    assert out.status == "failed" and "worker lost" in (out.error or "")


def test_bad_uploads_are_refused_and_leave_nothing(db: Database, home: Path,
                                                   tmp_path: Path) -> None:
    from earmark.errors import EmptyInput, UnsupportedFormat
    from earmark.service.scans import UploadTooLarge

    cases = [(b"", EmptyInput), (b"this is not audio at all" * 100, UnsupportedFormat),
             (os.urandom(5000), UnsupportedFormat)]
    for data, err in cases:
        with pytest.raises(err):
            submit_scan(db, home=home, src=io.BytesIO(data), filename="x.mp3", limits=Limits())
    with pytest.raises(UploadTooLarge):
        submit_scan(db, home=home, src=io.BytesIO(b"\0" * 5000), filename="x.wav",
                    limits=Limits(max_bytes=1000))
    assert list((home / "uploads").iterdir()) == []
    with db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Scan)) == 0


@needs_ffmpeg
def test_hostile_names_are_shown_never_used_as_paths(db: Database, home: Path,
                                                     library: Library, tmp_path: Path) -> None:
    path = clip(library, tmp_path)
    with open(path, "rb") as f:
        scan, _ = submit_scan(db, home=home, src=f, filename="../../etc/pass\x00wd\n.mp3",
                              limits=Limits())
    assert scan.filename == "passwd.mp3"
    with db.reader() as s:
        row = s.get(Scan, scan.id)
        assert row is not None and Path(row.blob) == home / "uploads" / scan.id


@needs_ffmpeg
def test_external_id_makes_submission_idempotent(db: Database, home: Path, library: Library,
                                                 tmp_path: Path) -> None:
    path = clip(library, tmp_path)
    with open(path, "rb") as f:
        a, created_a = submit_scan(db, home=home, src=f, filename="a.mp3", limits=Limits(),
                                   external_id="same")
    with open(path, "rb") as f:
        b, created_b = submit_scan(db, home=home, src=f, filename="b.mp3", limits=Limits(),
                                   external_id="same")
    assert created_a and not created_b and a.id == b.id
    assert len(list((home / "uploads").iterdir())) == 1


@needs_ffmpeg
def test_kill_9_mid_job_the_next_worker_completes_it_once(
        db: Database, home: Path, library: Library, tmp_path: Path) -> None:
    """A worker process killed while it holds a job: the job is re-run after its lease
    and recorded exactly once."""
    # a long input so that the job is surely still running when the worker is killed
    long = write_audio(tmp_path / "long.flac", library.signals["long"])
    sid = submit(db, home, long, external_id="long-1")
    cmd = [sys.executable, "-m", "earmark.cli.main", "worker", "--db", str(home),
           "--lease-s", "2", "--log-text"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while get_scan(db, sid).status != "running":
            assert time.monotonic() < deadline and p.poll() is None, p.stderr
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert get_scan(db, sid).status == "running"  # held by a dead worker
    assert decisions_of(db, sid) == 0
    w = Worker(db, home=home, lease_s=2)
    t0 = time.monotonic()
    while not w.run_once():  # nothing to take until the dead worker's lease runs out
        assert time.monotonic() - t0 < 10
        time.sleep(0.1)
    out = get_scan(db, sid)
    assert out.status == "done" and out.attempts == 2
    assert out.evidence is not None
    assert out.evidence["identification"]["matches"][0]["reference_id"] == "long"
    assert decisions_of(db, sid) == 1
