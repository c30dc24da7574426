"""ORM tables of the operational database; every table hangs off the one `Base` so Alembic sees them all."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, Dialect, Enum, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from skyops.timeutil import require_utc

# Constraint names must be deterministic: Alembic can only alter or drop a constraint it can name, and
# PostgreSQL and SQLite would otherwise each invent their own.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USERNAME_MIN = 3
USERNAME_MAX = 64
FULL_NAME_MAX = 200


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is UTC-aware in Python on every backend; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = require_utc(value)
        # SQLite has no timezone type and would keep whatever offset it got as text; storing naive UTC
        # keeps its string ordering equal to time ordering.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL answers in the session's TimeZone setting, which need not be UTC.
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every operational-database table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Group(StrEnum):
    """A user's role group; the HMI grants actions per group."""

    ADMINISTRATOR = "Administrator"
    SCIENCE = "Science"
    OPERATOR = "Operator"


class User(Base):
    """A person who can log in to the HMI."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            f"length(username) >= {USERNAME_MIN} AND length(username) <= {USERNAME_MAX}",
            name="username_length",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    full_name: Mapped[str] = mapped_column(String(FULL_NAME_MAX))
    group: Mapped[Group] = mapped_column(
        Enum(
            Group,
            name="group",
            native_enum=False,
            create_constraint=True,
            # Store "Administrator", not the member name "ADMINISTRATOR": the value is what people read.
            values_callable=lambda enum: [member.value for member in enum],
            length=32,
            validate_strings=True,
        )
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r}, group={self.group.value!r})"
