# SPDX-License-Identifier: Apache-2.0
"""The moderation service's tables (SQLAlchemy 2 declarative; Alembic owns the schema).

One database holds the scan queue and everything decided about a scan: the evidence record,
the decision, reviews, disputes, statements of reasons, policies, keys, users, webhooks and
the audit chain. It lives in ``$EARMARK_HOME/service.sqlite`` by default (WAL, one writer at a
time) or wherever ``EARMARK_DATABASE_URL`` points (PostgreSQL). The catalog's own
``catalog.sqlite`` stays separate: it is written by ``earmark catalog`` alone.

Times are naive UTC datetimes; JSON columns hold the pydantic records of
:mod:`earmark.evidence` and :mod:`earmark.moderation` as plain data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    """Now, in UTC, without tzinfo (the form every table stores)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the service tables."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Scan(Base):
    """One upload to judge: a durable job, then its evidence and decision.

    ``status`` goes ``queued`` → ``running`` → ``done`` (or ``failed`` after
    ``max_attempts``). A running job holds a lease; a job whose lease ran out is taken again
    by the next worker (at-least-once), and only the holder of the current ``attempt`` token
    may record the result (so a job completes once).
    """

    __tablename__ = "scans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    submitted_by: Mapped[str | None] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # display only, never a path
    #: path of the stored upload; of a batch scan (``earmark scan --record``), the input's
    #: own path or URL, not copied
    blob: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(32), default="upload")
    territory: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[str | None] = mapped_column(String(36))  # token of the current attempt
    worker: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    action: Mapped[str | None] = mapped_column(String(16), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(160))  # policy | review:<who> | …

    __table_args__ = (Index("ix_scans_queue", "status", "created_at"),)


class Policy(Base):
    """One version of an owner's policy (rows are never changed: a change is a new version)."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(120), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ux_policies_owner_version", "owner", "version", unique=True),)


class Review(Base):
    """A scan waiting for (or decided by) a person."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), index=True)
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    reason: Mapped[str] = mapped_column(String(64))  # why it was sent: short_match, ai, ...
    owners: Mapped[list[Any]] = mapped_column(JSON, default=list)
    ai_probability: Mapped[float | None] = mapped_column()
    match_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reviewer: Mapped[str | None] = mapped_column(String(120))
    action: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class Dispute(Base):
    """An uploader's dispute of a decision, and its appeal (Content ID's timeline)."""

    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), index=True)
    owner: Mapped[str | None] = mapped_column(String(120), index=True)
    state: Mapped[str] = mapped_column(String(24), index=True)
    opened_by: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    history: Mapped[list[Any]] = mapped_column(JSON, default=list)
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Statement(Base):
    """A DSA statement of reasons (Art. 17) for one restriction."""

    __tablename__ = "statements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(ForeignKey("scans.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored (keys are 256-bit random, so a fast hash is
    enough; a slow password hash protects guessable secrets, which these are not)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # public prefix
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(120))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class User(Base):
    """A person who signs in to the review pages (password hashed with scrypt)."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Exclusion(Base):
    """A stretch of a reference that must never count as a match (public domain, a licensed
    sample, a stock intro)."""

    __tablename__ = "exclusions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference_id: Mapped[str] = mapped_column(String(255), index=True)
    start_ms: Mapped[int] = mapped_column(Integer)
    end_ms: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Webhook(Base):
    """A URL told about events (``decision``, ``review``, ``dispute``), signed with HMAC."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Delivery(Base):
    """The outbox: one event for one webhook, written in the transaction that caused it."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditEntry(Base):
    """One link of the append-only, hash-chained audit log (triggers refuse UPDATE and
    DELETE on SQLite; ``earmark audit verify`` recomputes the chain)."""

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(255), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class LiveEvent(Base):
    """An event of ``earmark monitor`` (match_started, …), kept for the server-sent-events
    endpoint and the review pages; ``seq`` orders them for readers that follow."""

    __tablename__ = "live_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(255), index=True)
    event: Mapped[str] = mapped_column(String(32), index=True)
    stream_ms: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
