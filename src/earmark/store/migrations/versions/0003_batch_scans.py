"""Batch scans recorded in place (``earmark scan --record``): ``scans.blob`` holds the
input's own path or URL, so it is wider; ``scans.size_bytes`` holds files over 2 GiB.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":  # SQLite enforces neither VARCHAR lengths nor
        # integer widths, and rebuilding `scans` there would trip the foreign keys
        with op.batch_alter_table("scans", schema=None) as batch_op:
            batch_op.alter_column("blob", existing_type=sa.String(length=255),
                                  type_=sa.String(length=4096), existing_nullable=False)
            batch_op.alter_column("size_bytes", existing_type=sa.Integer(),
                                  type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        with op.batch_alter_table("scans", schema=None) as batch_op:
            batch_op.alter_column("size_bytes", existing_type=sa.BigInteger(),
                                  type_=sa.Integer(), existing_nullable=False)
            batch_op.alter_column("blob", existing_type=sa.String(length=4096),
                                  type_=sa.String(length=255), existing_nullable=False)
