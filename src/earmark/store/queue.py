# SPDX-License-Identifier: Apache-2.0
"""The durable scan queue, in the service database's ``scans`` table.

Delivery is at-least-once, recording is exactly-once:

- :func:`claim` takes the oldest ``queued`` job, or a ``running`` one whose lease ran out
  (its worker died), in one writing transaction (``BEGIN IMMEDIATE`` on SQLite,
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and hands it out with a fresh ``attempt`` token.
- :func:`heartbeat` extends the lease while the work goes on.
- :func:`complete` records the result only if the job still carries that token, in the same
  transaction as everything the result causes (review, statements, audit, webhooks). A worker
  that lost its lease (it stalled, another took the job over) finds its token gone and
  records nothing, so a job is never recorded twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from earmark.store.db import Database
from earmark.store.models import Scan, utcnow

LEASE_S = 20.0  #: a job not heartbeaten for this long is taken over (beats every third)
MAX_ATTEMPTS = 3  #: a job that failed (or whose worker died) this often fails for good


def claim(db: Database, *, worker: str, lease_s: float = LEASE_S) -> tuple[str, str] | None:
    """Take the next job: ``(scan_id, attempt_token)``, or ``None`` when there is none."""
    now = utcnow()
    with db.session() as s:
        while True:
            q = (select(Scan).where(
                    (Scan.status == "queued")
                    | ((Scan.status == "running") & (Scan.lease_until < now)))
                 .order_by(Scan.created_at).limit(1))
            if not db.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            scan = s.scalars(q).first()
            if scan is None:
                return None
            if scan.attempts < MAX_ATTEMPTS:
                break
            # a worker died on it every time: give up on it rather than loop forever
            scan.status, scan.finished_at, scan.attempt = "failed", now, None
            scan.error = scan.error or f"worker lost {scan.attempts} times (crash on this input?)"
            s.flush()
        now = utcnow()  # the write lock may have taken a while: lease from now
        sid, token = scan.id, uuid.uuid4().hex
        scan.status, scan.attempt, scan.worker = "running", token, worker
        scan.attempts += 1
        scan.started_at = now
        scan.lease_until = now + dt.timedelta(seconds=lease_s)
    return sid, token


def heartbeat(db: Database, scan_id: str, token: str, *, lease_s: float = LEASE_S) -> bool:
    """Extend the lease; ``False`` when the job is no longer ours."""
    with db.session() as s:
        res = s.execute(update(Scan).where(Scan.id == scan_id, Scan.attempt == token,
                                           Scan.status == "running")
                        .values(lease_until=utcnow() + dt.timedelta(seconds=lease_s)))
        return bool(res.rowcount)  # type: ignore[attr-defined]


def complete(db: Database, scan_id: str, token: str, *, status: str = "done",
             fields: dict[str, Any] | None = None,
             also: Callable[[Session, Scan], None] | None = None) -> bool:
    """Record the job's outcome if ``token`` is still its attempt; run ``also`` in the same
    transaction. Returns whether it was recorded."""
    with db.session() as s:
        scan = s.scalars(select(Scan).where(Scan.id == scan_id, Scan.attempt == token,
                                            Scan.status == "running")).first()
        if scan is None:
            return False
        for k, v in (fields or {}).items():
            setattr(scan, k, v)
        scan.status, scan.finished_at, scan.lease_until = status, utcnow(), None
        scan.attempt = None
        if also is not None:
            also(s, scan)
    return True


def release(db: Database, scan_id: str, token: str, *, error: str) -> bool:
    """Give a job back after a failure that may pass (it runs again, up to
    :data:`MAX_ATTEMPTS`); returns whether it was ours."""
    with db.session() as s:
        scan = s.scalars(select(Scan).where(Scan.id == scan_id, Scan.attempt == token)).first()
        if scan is None:
            return False
        scan.error = error
        scan.attempt, scan.lease_until = None, None
        if scan.attempts >= MAX_ATTEMPTS:
            scan.status, scan.finished_at = "failed", utcnow()
        else:
            scan.status = "queued"
    return True


def depth(db: Database) -> dict[str, int]:
    """Jobs by status (the ``queue depth`` metric)."""
    with db.reader() as s:
        rows = s.execute(select(Scan.status, func.count()).group_by(Scan.status)).all()
    return {str(k): int(v) for k, v in rows}
