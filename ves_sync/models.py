"""Operational-DB tables of the VES sync: our OB id → P2 OB, the last plan synced per night, the VES history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from skyops.opdb.models import Base

OB_ID_MAX = 100


class P2ObLink(Base):
    """Which P2 OB holds one of our OBs, and what we last wrote into it."""

    __tablename__ = "ves_sync_obs"

    ob_id: Mapped[str] = mapped_column(String(OB_ID_MAX), primary_key=True)
    p2_ob_id: Mapped[int] = mapped_column(Integer, unique=True)
    container_id: Mapped[int] = mapped_column(Integer)
    content_digest: Mapped[str] = mapped_column(String(64))
    p2_ob_json: Mapped[str] = mapped_column(Text)
    p2_etag: Mapped[str] = mapped_column(String(200))
    p2_status: Mapped[str] = mapped_column(String(4))
    # The science template as P2 last returned it, and its ETag: a changed exposure is then one PUT.
    template_json: Mapped[str] = mapped_column(Text, default="")
    template_etag: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime]


class SyncedNight(Base):
    """The newest plan of a night that reached P2: older plans arriving later must not overwrite it."""

    __tablename__ = "ves_sync_nights"

    night: Mapped[str] = mapped_column(String(10), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(200))
    plan_created: Mapped[datetime]
    synced_at: Mapped[datetime]


class VesChangeRow(Base):
    """One change of the operator's VES: who, when, why (plan, alarm, ToO) and the sequence before and after."""

    __tablename__ = "ves_sync_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime]
    instrument: Mapped[str] = mapped_column(String(32))
    written_by: Mapped[str] = mapped_column(String(64))
    night: Mapped[str] = mapped_column(String(10))
    plan_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    trigger_kind: Mapped[str | None] = mapped_column(String(32))
    alarm_id: Mapped[str | None] = mapped_column(String(200))
    too_ob_id: Mapped[str | None] = mapped_column(String(OB_ID_MAX))
    before_ob_ids: Mapped[str] = mapped_column(Text)
    after_ob_ids: Mapped[str] = mapped_column(Text)


class QueuedExecutionRow(Base):
    """An execution report P2 has not accepted yet: kept across a crash so the next executor sends it.

    Named like P2 names executions (OB and start): the end of an OB replaces its unsent start.
    """

    __tablename__ = "ves_sync_execution_outbox"
    __table_args__ = (UniqueConstraint("p2_ob_id", "start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    p2_ob_id: Mapped[int] = mapped_column(Integer)
    start: Mapped[datetime]
    night: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(16))
    end: Mapped[datetime | None]
    queued_at: Mapped[datetime]
