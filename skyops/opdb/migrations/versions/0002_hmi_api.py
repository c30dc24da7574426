"""Create the HMI's sessions and settings tables.

Revision ID: 0002_hmi_api
Revises: 0001_users
Create Date: 2026-11-22 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_hmi_api"
down_revision: str | None = "0001_users"
branch_labels: str | Sequence[str] | None = ("hmi_api",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hmi_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["username"], ["users.username"], name=op.f("fk_hmi_sessions_username_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_hmi_sessions")),
    )
    op.create_index(op.f("ix_hmi_sessions_username"), "hmi_sessions", ["username"], unique=False)
    op.create_table(
        "hmi_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_hmi_settings")),
    )


def downgrade() -> None:
    op.drop_table("hmi_settings")
    op.drop_index(op.f("ix_hmi_sessions_username"), table_name="hmi_sessions")
    op.drop_table("hmi_sessions")
