"""Live events of ``earmark monitor`` (for the SSE endpoint and the review pages); a wider
``scans.decided_by`` (it names the reviewer).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("stream_ms", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("live_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_live_events_stream"), ["stream"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_events_event"), ["event"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_events_at"), ["at"], unique=False)
    if op.get_bind().dialect.name != "sqlite":  # SQLite does not enforce VARCHAR lengths,
        # and rebuilding `scans` there would trip the foreign keys of reviews and statements
        with op.batch_alter_table("scans", schema=None) as batch_op:
            batch_op.alter_column("decided_by", existing_type=sa.String(length=16),
                                  type_=sa.String(length=160), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("scans", schema=None) as batch_op:
            batch_op.alter_column("decided_by", existing_type=sa.String(length=160),
                                  type_=sa.String(length=16), existing_nullable=True)
    op.drop_table("live_events")
