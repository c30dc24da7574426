"""User accounts of the HMI: pydantic schemas and `UserStore`, which keeps them with bcrypt hashes."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Annotated

import bcrypt
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
)
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from skyops.errors import ConflictError, NotFoundError
from skyops.opdb.models import FULL_NAME_MAX, USERNAME_MAX, USERNAME_MIN, Group, User
from skyops.timeutil import require_utc

__all__ = [
    "PASSWORD_MIN_CHARS",
    "Group",
    "Password",
    "UserCreate",
    "UserPublic",
    "UserStore",
    "UserUpdate",
]

PASSWORD_MIN_CHARS = 10
# bcrypt only reads the first 72 bytes; a longer password would silently match any string sharing them.
PASSWORD_MAX_BYTES = 72
DEFAULT_BCRYPT_ROUNDS = 12


def _check_password(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    if len(secret) < PASSWORD_MIN_CHARS:
        raise ValueError(f"password must have at least {PASSWORD_MIN_CHARS} characters")
    if len(secret.encode("utf-8")) > PASSWORD_MAX_BYTES:
        raise ValueError(f"password must fit in {PASSWORD_MAX_BYTES} bytes of UTF-8")
    return value


Username = Annotated[
    str,
    StringConstraints(min_length=USERNAME_MIN, max_length=USERNAME_MAX, pattern=r"^[a-z0-9._-]+$"),
    Field(description="3 to 64 characters: lowercase letters, digits, '.', '_' or '-'"),
]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=FULL_NAME_MAX)]
Password = Annotated[SecretStr, AfterValidator(_check_password)]

_password_adapter: TypeAdapter[SecretStr] = TypeAdapter(Password)


class UserCreate(BaseModel):
    """What an administrator gives to open an account."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    full_name: FullName
    group: Group
    password: Password
    disabled: bool = False


class UserUpdate(BaseModel):
    """Changes to an account; fields left out (or None) stay as they are. See also `set_password`."""

    model_config = ConfigDict(extra="forbid")

    full_name: FullName | None = None
    group: Group | None = None
    disabled: bool | None = None


class UserPublic(BaseModel):
    """An account as the rest of the platform may see it: never the password hash."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, frozen=True)

    id: int
    username: str
    full_name: str
    group: Group
    disabled: bool
    created_at: AwareDatetime
    updated_at: AwareDatetime
    last_login_at: AwareDatetime | None


class UserStore:
    """Keeps user accounts in the operational database; every method is one transaction."""

    def __init__(
        self, sessions: sessionmaker[Session], *, bcrypt_rounds: int = DEFAULT_BCRYPT_ROUNDS
    ) -> None:
        if not 4 <= bcrypt_rounds <= 31:
            raise ValueError("bcrypt_rounds must be between 4 and 31")
        self._sessions = sessions
        self._rounds = bcrypt_rounds
        self._dummy_hash: bytes | None = None

    def create(self, *, data: UserCreate, now: datetime) -> UserPublic:
        """Open an account; a username that is already taken raises ConflictError."""
        now = require_utc(now, what="now")
        user = User(
            username=data.username,
            full_name=data.full_name,
            group=data.group,
            password_hash=self._hash(data.password),
            disabled=data.disabled,
            created_at=now,
            updated_at=now,
            last_login_at=None,
        )
        try:
            with self._sessions.begin() as session:
                if self._find(session, data.username) is not None:
                    raise ConflictError(f"user {data.username!r} already exists")
                session.add(user)
                session.flush()
                return UserPublic.model_validate(user)
        except IntegrityError as exc:
            # Another writer took the name between our check and our insert.
            raise ConflictError(f"user {data.username!r} already exists") from exc

    def get(self, *, username: str) -> UserPublic:
        """The account named `username`, or NotFoundError."""
        with self._sessions() as session:
            return UserPublic.model_validate(self._require(session, username))

    def list(self) -> builtins.list[UserPublic]:
        """Every account, ordered by username."""
        with self._sessions() as session:
            rows = session.scalars(select(User)).all()
            users = [UserPublic.model_validate(row) for row in rows]
        # Sorted here, not in SQL: PostgreSQL's order follows the database's collation (en_US ignores
        # '.', '_' and '-'), and the same listing must read the same on every backend.
        return sorted(users, key=lambda user: user.username)

    def update(self, *, username: str, data: UserUpdate, now: datetime) -> UserPublic:
        """Apply `data` to the account; refused if it would leave no enabled administrator."""
        now = require_utc(now, what="now")
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        with self._sessions.begin() as session:
            user = self._require(session, username)
            loses_admin = (
                user.group is Group.ADMINISTRATOR
                and not user.disabled
                and (
                    changes.get("group", user.group) is not Group.ADMINISTRATOR
                    or changes.get("disabled", False)
                )
            )
            if loses_admin:
                self._keep_an_administrator(session, user)
            for field, value in changes.items():
                setattr(user, field, value)
            user.updated_at = now
            session.flush()
            return UserPublic.model_validate(user)

    def set_password(self, *, username: str, password: str | SecretStr, now: datetime) -> None:
        """Replace the account's password; a weak one raises pydantic's ValidationError."""
        now = require_utc(now, what="now")
        checked = _password_adapter.validate_python(
            password if isinstance(password, SecretStr) else SecretStr(password)
        )
        password_hash = self._hash(checked)
        with self._sessions.begin() as session:
            user = self._require(session, username)
            user.password_hash = password_hash
            user.updated_at = now

    def verify_password(
        self, *, username: str, password: str | SecretStr, now: datetime | None = None
    ) -> UserPublic | None:
        """The account if `password` is right and the account enabled, else None; `now` records the login.

        Unknown users, wrong passwords and disabled accounts cost the same bcrypt work and give the same
        answer, so neither timing nor result tells which usernames exist.
        """
        if now is not None:
            now = require_utc(now, what="now")
        plain = password.get_secret_value() if isinstance(password, SecretStr) else password
        secret = plain.encode("utf-8")
        too_long = len(secret) > PASSWORD_MAX_BYTES
        with self._sessions.begin() as session:
            user = self._find(session, username)
            stored = user.password_hash.encode("ascii") if user is not None else self._dummy()
            # bcrypt 5 refuses over-long input; no stored password is that long, so it cannot match,
            # but the check still runs to cost the same time.
            matches = bcrypt.checkpw(b"" if too_long else secret, stored) and not too_long
            if user is None or not matches or user.disabled:
                return None
            if now is not None:
                user.last_login_at = now
                session.flush()
            return UserPublic.model_validate(user)

    def delete(self, *, username: str) -> None:
        """Remove the account; refused if it is the last enabled administrator."""
        with self._sessions.begin() as session:
            user = self._require(session, username)
            if user.group is Group.ADMINISTRATOR and not user.disabled:
                self._keep_an_administrator(session, user)
            session.delete(user)

    def _hash(self, password: SecretStr) -> str:
        salt = bcrypt.gensalt(rounds=self._rounds)
        return bcrypt.hashpw(password.get_secret_value().encode("utf-8"), salt).decode("ascii")

    def _dummy(self) -> bytes:
        # Built on first use rather than at import: hashing costs as much as a real check, by design.
        if self._dummy_hash is None:
            self._dummy_hash = bcrypt.hashpw(b"no such user, no such password", bcrypt.gensalt(self._rounds))
        return self._dummy_hash

    @staticmethod
    def _find(session: Session, username: str) -> User | None:
        return session.scalars(select(User).where(User.username == username)).one_or_none()

    @classmethod
    def _require(cls, session: Session, username: str) -> User:
        user = cls._find(session, username)
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        return user

    @staticmethod
    def _keep_an_administrator(session: Session, user: User) -> None:
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.group == Group.ADMINISTRATOR, User.disabled.is_(False), User.id != user.id)
        )
        if not others:
            raise ConflictError(
                f"user {user.username!r} is the last enabled administrator; make another administrator first"
            )
