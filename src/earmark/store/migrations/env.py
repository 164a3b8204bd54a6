# SPDX-License-Identifier: Apache-2.0
"""Alembic environment: runs on the connection :func:`earmark.store.db.upgrade` passes in,
or on ``sqlalchemy.url`` when Alembic's own command line is used."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from earmark.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, target_metadata=target_metadata,
                          render_as_batch=True)
        context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.begin() as c:
        context.configure(connection=c, target_metadata=target_metadata, render_as_batch=True)
        context.run_migrations()


run()
