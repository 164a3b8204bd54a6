# SPDX-License-Identifier: Apache-2.0
"""The service database: engine from a URL, sessions, and the Alembic upgrade on open.

SQLite (the single-box default, ``$EARMARK_HOME/service.sqlite``) runs in WAL mode with
``synchronous=FULL`` and a busy timeout, so readers never block the one writer and a crash
loses no committed transaction; ``EARMARK_DATABASE_URL`` selects PostgreSQL instead.
:func:`open_db` brings the schema to the newest migration before anything reads it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: seconds a SQLite connection waits for the writer before "database is locked"
BUSY_TIMEOUT_S = 30.0
_MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(home: str | os.PathLike[str], url: str | None = None) -> str:
    """``url`` when given (``EARMARK_DATABASE_URL``), else SQLite in ``home``."""
    if url:
        return url
    Path(home).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(home).resolve() / 'service.sqlite'}"


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """An engine; SQLite connections get WAL, ``synchronous=FULL`` and a busy timeout.

    pysqlite's own transaction handling is switched off and ``BEGIN IMMEDIATE`` issued
    instead (``immediate``), so a transaction that will write takes the write lock at its
    start (two workers can never both read a queued job and then both claim it). The
    engine for reads issues a plain (deferred) ``BEGIN``: in WAL mode readers never wait
    for the writer.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S,
                                              "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration the database lacks (a no-op when current)."""
    cfg = Config()
    cfg.set_main_option("script_location", os.fspath(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An open service database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL (see :func:`database_url`).
    migrate : bool
        Upgrade the schema on open (the default; tests and tools that only read may skip).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = make_engine(url, immediate=False) if self.is_sqlite else self.engine
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions() as s, s.begin():
            yield s

    def reader(self) -> Session:
        """A session for reads only (the caller closes it); it never takes the write lock."""
        return self._readers()

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def open_db(*, home: str | os.PathLike[str], url: str | None = None,
            migrate: bool = True) -> Database:
    """The service database of ``home`` (or at ``url``), upgraded to the newest schema."""
    return Database(database_url(home, url), migrate=migrate)
