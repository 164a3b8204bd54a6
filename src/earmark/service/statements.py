# SPDX-License-Identifier: Apache-2.0
"""Statements of reasons as stored, and their export to the DSA Transparency Database.

:func:`~earmark.service.decisions.record_decision` writes one statement per restriction
(:func:`earmark.moderation.statements.build_statement`). Here they are read — the uploader
sees the statements of its scans, an owner those of scans that match its references,
moderators all — and exported: :func:`export` gives the body of one submission to the
database's "multiple statements" endpoint (``{"statements": [...]}``, at most 100 per call),
holding the database's attributes only (:func:`~earmark.moderation.statements.export_body`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import select

from earmark.errors import EarmarkError
from earmark.moderation.statements import check, export_body
from earmark.service.access import Principal
from earmark.store.db import Database
from earmark.store.models import Scan, Statement
from earmark.utc import UtcDatetime

#: the Transparency Database takes at most this many statements per call
EXPORT_MAX = 100
_PAGE = 500


class StatementNotFound(EarmarkError):
    code = "statement_not_found"


class StatementOut(BaseModel):
    id: int
    scan_id: str
    action: str
    created_at: UtcDatetime
    body: dict[str, Any]


class Export(BaseModel):
    """One submission's body, and where the next one starts."""

    statements: list[dict[str, Any]]
    next_after: int | None  #: pass as ``after`` for the next batch (None: no more)
    skipped: list[int]  #: statements not for the database (outside the EU/EEA) or invalid


def _sees(who: Principal, scan: Scan) -> bool:
    if who.at_least("moderator"):
        return True
    if scan.submitted_by is not None and scan.submitted_by == who.id:
        return True
    return who.owns_a_match(scan.evidence)


def _out(st: Statement) -> StatementOut:
    return StatementOut(id=st.id, scan_id=st.scan_id, action=st.action,
                        created_at=st.created_at, body=dict(st.body))


def _window(q: Any, since: dt.datetime | None, until: dt.datetime | None) -> Any:
    if since is not None:
        q = q.where(Statement.created_at >= _naive(since))
    if until is not None:
        q = q.where(Statement.created_at < _naive(until))
    return q


def _naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def list_statements(db: Database, *, who: Principal, scan_id: str | None = None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None,
                    limit: int = 100) -> list[StatementOut]:
    """Newest first, those the caller may see; ``since`` ≤ created_at < ``until``."""
    q = _window(select(Statement, Scan).join(Scan, Scan.id == Statement.scan_id)
                .order_by(Statement.created_at.desc(), Statement.id.desc()), since, until)
    if scan_id:
        q = q.where(Statement.scan_id == scan_id)
    if who.role == "uploader":
        q = q.where(Scan.submitted_by == who.id)
    limit = max(1, min(limit, 1000))
    out: list[StatementOut] = []
    with db.reader() as s:
        offset = 0
        while len(out) < limit:  # owners' visibility is decided on the evidence, in batches
            rows = cast("list[tuple[Statement, Scan]]",
                        s.execute(q.offset(offset).limit(_PAGE)).all())
            out += [_out(st) for st, scan in rows if _sees(who, scan)]
            if len(rows) < _PAGE:
                break
            offset += _PAGE
    return out[:limit]


def get_statement(db: Database, statement_id: int, *, who: Principal) -> StatementOut:
    with db.reader() as s:
        st = s.get(Statement, statement_id)
        scan = s.get(Scan, st.scan_id) if st is not None else None
        if st is None or scan is None or not _sees(who, scan):
            raise StatementNotFound(f"no statement {statement_id}")
        return _out(st)


def export(db: Database, *, since: dt.datetime | None = None,
           until: dt.datetime | None = None, after: int = 0,
           limit: int = EXPORT_MAX) -> Export:
    """The next submission: statements with id > ``after`` in the time window, oldest
    first, in the Transparency Database's shape and nothing else.

    A stored statement whose export fails :func:`~earmark.moderation.statements.check`
    (or lies outside the EU/EEA) is left out and listed in ``skipped``.
    """
    limit = max(1, min(limit, EXPORT_MAX))
    q = _window(select(Statement).where(Statement.id > after).order_by(Statement.id),
                since, until)
    with db.reader() as s:
        rows = s.scalars(q.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out: list[dict[str, Any]] = []
    skipped: list[int] = []
    for st in rows:
        body = export_body(st.body)
        if body is None or check(body):
            skipped.append(st.id)
        else:
            out.append(body)
    return Export(statements=out, next_after=rows[-1].id if more and rows else None,
                  skipped=skipped)
