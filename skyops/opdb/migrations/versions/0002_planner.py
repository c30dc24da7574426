"""Create the planner's tables: OBs and the history of every change to them.

Revision ID: 0002_planner
Revises: 0001_users
Create Date: 2026-11-22 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_planner"
down_revision: str | None = "0001_users"
branch_labels: str | Sequence[str] | None = ("planner",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Spelled out rather than derived from today's models, so this revision stays what it was.
    op.create_table(
        "planner_obs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ob_type", sa.String(length=16), nullable=False),
        sa.Column("mid", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("target_name", sa.String(length=100), nullable=False),
        sa.Column("ra_deg", sa.Double(), nullable=False),
        sa.Column("dec_deg", sa.Double(), nullable=False),
        sa.Column("magnitude", sa.Double(), nullable=True),
        sa.Column("mag_filter", sa.String(length=16), nullable=True),
        sa.Column("exposure_s", sa.Double(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("max_airmass", sa.Double(), nullable=False),
        sa.Column("twilight", sa.String(length=16), nullable=False),
        sa.Column("min_moon_separation_deg", sa.Double(), nullable=False),
        sa.Column("max_moon_illumination", sa.Double(), nullable=False),
        sa.Column("max_seeing_arcsec", sa.Double(), nullable=False),
        sa.Column("programme", sa.String(length=64), nullable=False),
        sa.Column("time_share", sa.String(length=16), nullable=False),
        sa.Column("setup", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("p2_ob_id", sa.Integer(), nullable=True),
        sa.Column("p2_version", sa.String(length=200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("ob_type IN ('CTOB', 'FUOB', 'ESO', 'ToO')", name=op.f("ck_planner_obs_ob_type")),
        sa.CheckConstraint("twilight IN ('astronomical', 'nautical', 'civil')", name=op.f("ck_planner_obs_twilight")),
        sa.CheckConstraint("time_share IN ('GTO', 'ESO')", name=op.f("ck_planner_obs_time_share")),
        sa.CheckConstraint(
            "state IN ('queued', 'scheduled', 'observed', 'failed', 'expired', 'deleted')",
            name=op.f("ck_planner_obs_ob_state"),
        ),
        sa.CheckConstraint("dec_deg >= -90 AND dec_deg <= 90", name=op.f("ck_planner_obs_dec_range")),
        sa.CheckConstraint("exposure_s > 0", name=op.f("ck_planner_obs_exposure_positive")),
        sa.CheckConstraint("priority >= 1", name=op.f("ck_planner_obs_priority_positive")),
        sa.CheckConstraint("ra_deg >= 0 AND ra_deg < 360", name=op.f("ck_planner_obs_ra_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planner_obs")),
    )
    op.create_index("ix_planner_obs_mid", "planner_obs", ["mid"], unique=False)
    op.create_index("ix_planner_obs_state", "planner_obs", ["state"], unique=False)
    op.create_table(
        "planner_ob_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ob_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["ob_id"], ["planner_obs.id"], name=op.f("fk_planner_ob_history_ob_id_planner_obs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planner_ob_history")),
    )
    op.create_index("ix_planner_ob_history_ob_id", "planner_ob_history", ["ob_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_planner_ob_history_ob_id", table_name="planner_ob_history")
    op.drop_table("planner_ob_history")
    op.drop_index("ix_planner_obs_state", table_name="planner_obs")
    op.drop_index("ix_planner_obs_mid", table_name="planner_obs")
    op.drop_table("planner_obs")
