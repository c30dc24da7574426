"""Add the VES executor's outbox: execution reports P2 has not accepted yet, kept across a crash.

Revision ID: 0003_ves_sync_outbox
Revises: 0002_ves_sync
Create Date: 2026-11-22 11:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_ves_sync_outbox"
down_revision: str | None = "0002_ves_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ves_sync_execution_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("p2_ob_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("night", sa.String(length=10), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ves_sync_execution_outbox")),
        sa.UniqueConstraint("p2_ob_id", "start", name=op.f("uq_ves_sync_execution_outbox_p2_ob_id_start")),
    )


def downgrade() -> None:
    op.drop_table("ves_sync_execution_outbox")
