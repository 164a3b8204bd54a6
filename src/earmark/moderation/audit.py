# SPDX-License-Identifier: Apache-2.0
"""The audit log: append-only and hash-chained.

Each entry's ``hash`` is the SHA-256 of the previous entry's hash and the entry's own
canonical JSON (sequence number, time, actor, action, subject, data), so changing, removing
or re-ordering any entry breaks every hash after it; :func:`verify` recomputes the chain
(``earmark audit verify``). The database refuses ``UPDATE`` and ``DELETE`` on the table
(triggers made by the first migration). Entries are written in the same transaction as the
change they record, so there is never a decision without its audit entry or the reverse.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from earmark.store.models import AuditEntry, utcnow

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """Sorted, compact JSON; datetimes as ISO 8601 (the form hashed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=lambda o: o.isoformat() if isinstance(o, dt.datetime) else str(o))


def entry_hash(prev_hash: str, *, seq: int, at: dt.datetime, actor: str, action: str,
               subject: str | None, data: dict[str, Any]) -> str:
    body = canonical({"seq": seq, "at": at.isoformat(timespec="microseconds"),
                      "actor": actor, "action": action, "subject": subject, "data": data})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def append(s: Session, *, actor: str, action: str, subject: str | None = None,
           data: dict[str, Any] | None = None) -> AuditEntry:
    """Add one entry in the session's transaction (which must be a writing one)."""
    if s.get_bind().dialect.name == "postgresql":  # serialise appenders; SQLite has one writer
        s.execute(text("SELECT pg_advisory_xact_lock(4242)"))
    last = s.execute(select(AuditEntry.seq, AuditEntry.hash)
                     .order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = utcnow()
    data = json.loads(canonical(data or {}))  # what is stored is exactly what was hashed
    e = AuditEntry(seq=seq, at=at, actor=actor, action=action, subject=subject, data=data,
                   prev_hash=prev,
                   hash=entry_hash(prev, seq=seq, at=at, actor=actor, action=action,
                                   subject=subject, data=data))
    s.add(e)
    s.flush()
    return e


@dataclass
class Verification:
    ok: bool
    entries: int
    first_bad: int | None = None
    problem: str | None = None
    head: str = GENESIS


def iter_entries(s: Session, *, batch: int = 1000) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.seq > after)
                         .order_by(AuditEntry.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def verify(s: Session) -> Verification:
    """Recompute the chain; the first entry that does not fit is reported."""
    prev, n, expect = GENESIS, 0, 1
    for e in iter_entries(s):
        n += 1
        if e.seq != expect:
            return Verification(False, n, e.seq, f"entry {expect} is missing", prev)
        if e.prev_hash != prev:
            return Verification(False, n, e.seq, "prev_hash does not name the entry before",
                                prev)
        h = entry_hash(prev, seq=e.seq, at=e.at, actor=e.actor, action=e.action,
                       subject=e.subject, data=e.data)
        if h != e.hash:
            return Verification(False, n, e.seq, "hash does not match the entry's content",
                                prev)
        prev, expect = e.hash, expect + 1
    return Verification(True, n, head=prev)
