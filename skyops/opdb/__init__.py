"""The operational database (users, OBs, plans, VES history): SQLAlchemy models, migrations and stores."""

from __future__ import annotations

from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade
from skyops.opdb.models import Base, Group, User, UTCDateTime
from skyops.opdb.users import UserCreate, UserPublic, UserStore, UserUpdate

__all__ = [
    "Base",
    "Group",
    "UTCDateTime",
    "User",
    "UserCreate",
    "UserPublic",
    "UserStore",
    "UserUpdate",
    "make_engine",
    "make_sessionmaker",
    "upgrade",
]
