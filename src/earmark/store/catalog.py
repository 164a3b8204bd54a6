# SPDX-License-Identifier: Apache-2.0
"""The catalog database: one row per reference, in SQLite (WAL, ``synchronous=FULL``).

A reference's integer ``key`` is the ``ref_key`` the index knows it by; keys are never reused
(``AUTOINCREMENT``), so a stale index entry can never be mistaken for a newer reference.
A row is ``pending`` from the moment it is committed until its hashes are in the index, then
``ready``; :meth:`earmark.service.catalog.Catalog.repair` resolves the pending rows a crash
leaves behind. All writes go through one process at a time (the service holds a writer lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

Status = Literal["pending", "ready"]
PENDING: Status = "pending"
READY: Status = "ready"

#: seconds a connection waits for another writer before failing with "database is locked"
BUSY_TIMEOUT_S = 30.0


def utcnow() -> dt.datetime:
    """Now, in UTC, without tzinfo (SQLite stores naive datetimes)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of earmark's tables."""


class Reference(Base):
    """One catalog recording."""

    __tablename__ = "references"
    __table_args__ = ({"sqlite_autoincrement": True},)

    key: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, index=True)
    title: Mapped[str | None] = mapped_column(String, default=None)
    artist: Mapped[str | None] = mapped_column(String, default=None)
    owner: Mapped[str | None] = mapped_column(String, default=None)
    isrc: Mapped[str | None] = mapped_column(String, default=None)
    source: Mapped[str] = mapped_column(String)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(8), default=PENDING, index=True)
    shard: Mapped[str] = mapped_column(String)

    def __repr__(self) -> str:
        return f"Reference(key={self.key}, id={self.id!r}, status={self.status!r})"


class Sketch(Base):
    """A reference's spectral sketch (:mod:`earmark.identify.verify`), packed 4-bit.

    Written in the transaction that inserts the reference's row and deleted with it; catalogs
    built before sketches have none, and identify without the ``agreement`` feature.
    """

    __tablename__ = "sketches"

    key: Mapped[int] = mapped_column(Integer, ForeignKey("references.key", ondelete="CASCADE"),
                                     primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


def _engine(path: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{os.fspath(path)}", connect_args={"timeout": BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    return engine


class CatalogStore:
    """A small repository over the ``references`` table of ``<home>/catalog.sqlite``.

    Parameters
    ----------
    path : path-like
        The SQLite file; created (with its tables) if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.engine = _engine(self.path)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions() as s, s.begin():
            yield s

    # -- reads --------------------------------------------------------------------------------
    def get(self, reference_id: str) -> Reference | None:
        with self._sessions() as s:
            return s.scalars(select(Reference).where(Reference.id == reference_id)).first()

    def by_sha256(self, sha256: str) -> Reference | None:
        with self._sessions() as s:
            return s.scalars(select(Reference).where(Reference.sha256 == sha256)).first()

    def by_keys(self, keys: Iterable[int]) -> dict[int, Reference]:
        keys = sorted({int(k) for k in keys})
        if not keys:
            return {}
        with self._sessions() as s:
            rows = s.scalars(select(Reference).where(Reference.key.in_(keys))).all()
        return {r.key: r for r in rows}

    def all(self, *, status: Status | None = READY) -> list[Reference]:
        """References ordered by id; only those of ``status`` unless it is ``None``."""
        q = select(Reference).order_by(Reference.id)
        if status is not None:
            q = q.where(Reference.status == status)
        with self._sessions() as s:
            return list(s.scalars(q).all())

    def keys(self, *, status: Status | None = None) -> set[int]:
        q = select(Reference.key)
        if status is not None:
            q = q.where(Reference.status == status)
        with self._sessions() as s:
            return set(s.scalars(q).all())

    def totals(self) -> tuple[int, int]:
        """(number of ready references, their total duration in ms)."""
        q = select(func.count(Reference.key), func.coalesce(func.sum(Reference.duration_ms), 0))
        with self._sessions() as s:
            n, ms = s.execute(q.where(Reference.status == READY)).one()
        return int(n), int(ms)

    def sketch_bytes(self) -> int:
        """Bytes of the packed sketches of all references."""
        with self._sessions() as s:
            return int(s.execute(select(func.coalesce(func.sum(func.length(Sketch.data)), 0))
                                 ).scalar_one())

    def db_bytes(self) -> int:
        """Size on disk of the database with its WAL and shared-memory files."""
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )

    # -- writes -------------------------------------------------------------------------------
    def insert_pending(self, rows: Sequence[Reference],
                       sketches: Sequence[bytes | None] = ()) -> list[int]:
        """Insert ``rows`` as ``pending`` in one transaction, with their packed sketches
        (``sketches[i]`` of ``rows[i]``; None or missing: none); returns their new keys."""
        with self.session() as s:
            for r in rows:
                r.status = PENDING
                s.add(r)
            s.flush()
            keys = [r.key for r in rows]
            for k, blob in zip(keys, sketches, strict=False):
                if blob is not None:
                    s.add(Sketch(key=k, data=blob))
        return keys

    def sketches(self, keys: Iterable[int]) -> dict[int, bytes]:
        """Packed sketches of the references ``keys`` that have one."""
        keys = sorted({int(k) for k in keys})
        if not keys:
            return {}
        with self._sessions() as s:
            rows = s.execute(select(Sketch.key, Sketch.data).where(Sketch.key.in_(keys))).all()
        return {int(k): bytes(d) for k, d in rows}

    def set_status(self, keys: Iterable[int], status: Status) -> int:
        keys = [int(k) for k in keys]
        if not keys:
            return 0
        with self.session() as s:
            res = s.execute(update(Reference).where(Reference.key.in_(keys)).values(status=status))
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def delete_keys(self, keys: Iterable[int]) -> int:
        keys = [int(k) for k in keys]
        if not keys:
            return 0
        with self.session() as s:
            s.execute(delete(Sketch).where(Sketch.key.in_(keys)))
            res = s.execute(delete(Reference).where(Reference.key.in_(keys)))
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def update_meta(self, reference_id: str, values: dict[str, str | None]) -> Reference | None:
        """Change a reference's metadata (title, artist, owner, isrc); ``None`` if unknown."""
        allowed = {k: v for k, v in values.items() if k in ("title", "artist", "owner", "isrc")}
        with self.session() as s:
            row = s.scalars(select(Reference).where(Reference.id == reference_id)).first()
            if row is None:
                return None
            for k, v in allowed.items():
                setattr(row, k, v)
            s.flush()
            return row

    def close(self) -> None:
        self.engine.dispose()
