"""Operational-DB tables of the HMI: login sessions and the settings administrators change at run time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from skyops.opdb.models import Base, UTCDateTime


class HmiSession(Base):
    """A logged-in session; only the SHA-256 of the token is kept, so a leaked table grants nothing."""

    __tablename__ = "hmi_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.username", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class HmiSetting(Base):
    """A run-time setting (e.g. the session duration), with who changed it last."""

    __tablename__ = "hmi_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(64))
