# SPDX-License-Identifier: Apache-2.0
"""The service database on a real PostgreSQL server (``EARMARK_TEST_POSTGRES_URL``, e.g.
``postgresql+psycopg://earmark@127.0.0.1/earmark_test``): migrations, the queue's
``SKIP LOCKED`` claims and fencing, the append-only audit chain, a worker end to end.
Skipped without a server; CI starts one with ``scripts/pg-throwaway``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import Library, excerpt, needs_ffmpeg, needs_postgres, pg_schema, write_audio
from earmark.moderation import audit
from earmark.service.scans import Limits, get_scan, submit_scan
from earmark.service.worker import Worker
from earmark.store import queue
from earmark.store.db import Database, open_db

pytestmark = needs_postgres


@pytest.fixture
def db() -> Iterator[Database]:
    with pg_schema() as url:  # one schema per test: nothing shared, easy cleanup
        d = open_db(home=".", url=url)
        yield d
        d.close()


@needs_ffmpeg
def test_queue_audit_and_worker_on_postgres(db: Database, catalog_home: Path,
                                            library: Library, tmp_path: Path) -> None:
    assert db.engine.dialect.name == "postgresql"
    home = tmp_path / "home"
    shutil.copytree(catalog_home, home)
    clip = write_audio(tmp_path / "c.mp3", excerpt(library.signals["ref1"], 2.0, 8.0))
    ids = []
    for k in range(3):
        with open(clip, "rb") as f:
            ids.append(submit_scan(db, home=home, src=f, filename="c.mp3", limits=Limits(),
                                   external_id=f"e{k}", submitted_by="key:x")[0].id)
    a, b = queue.claim(db, worker="a"), queue.claim(db, worker="b")
    assert a and b and a[0] != b[0]  # SKIP LOCKED / one job per claim
    assert queue.release(db, a[0], a[1], error="retry") and queue.release(db, b[0], b[1],
                                                                          error="retry")
    w = Worker(db, home=home)
    while w.run_once():
        pass
    for sid in ids:
        out = get_scan(db, sid)
        assert out.status == "done" and out.action == "track"
    with db.reader() as s:
        v = audit.verify(s)
        assert v.ok and v.entries == 3
    with pytest.raises(Exception, match="append-only"), db.session() as s:
        s.execute(text("DELETE FROM audit"))
