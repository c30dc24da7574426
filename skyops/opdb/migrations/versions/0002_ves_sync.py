"""Create the VES sync's tables: OB links to P2, synced nights, VES change history.

Revision ID: 0002_ves_sync
Revises: 0001_users
Create Date: 2026-11-22 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ves_sync"
down_revision: str | None = "0001_users"
branch_labels: str | Sequence[str] | None = ("ves_sync",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ves_sync_obs",
        sa.Column("ob_id", sa.String(length=100), nullable=False),
        sa.Column("p2_ob_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("p2_ob_json", sa.Text(), nullable=False),
        sa.Column("p2_etag", sa.String(length=200), nullable=False),
        sa.Column("p2_status", sa.String(length=4), nullable=False),
        sa.Column("template_json", sa.Text(), nullable=False),
        sa.Column("template_etag", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ob_id", name=op.f("pk_ves_sync_obs")),
        sa.UniqueConstraint("p2_ob_id", name=op.f("uq_ves_sync_obs_p2_ob_id")),
    )
    op.create_table(
        "ves_sync_nights",
        sa.Column("night", sa.String(length=10), nullable=False),
        sa.Column("plan_id", sa.String(length=200), nullable=False),
        sa.Column("plan_created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("night", name=op.f("pk_ves_sync_nights")),
    )
    op.create_table(
        "ves_sync_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instrument", sa.String(length=32), nullable=False),
        sa.Column("written_by", sa.String(length=64), nullable=False),
        sa.Column("night", sa.String(length=10), nullable=False),
        sa.Column("plan_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("trigger_kind", sa.String(length=32), nullable=True),
        sa.Column("alarm_id", sa.String(length=200), nullable=True),
        sa.Column("too_ob_id", sa.String(length=100), nullable=True),
        sa.Column("before_ob_ids", sa.Text(), nullable=False),
        sa.Column("after_ob_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ves_sync_changes")),
    )


def downgrade() -> None:
    op.drop_table("ves_sync_changes")
    op.drop_table("ves_sync_nights")
    op.drop_table("ves_sync_obs")
