"""Who may do what in the HMI: login with rate limiting, expiring sessions, role checks, the first admin."""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import SecretStr
from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session, sessionmaker

from hmi_api.models import HmiSession, HmiSetting
from skyops.errors import SkyopsError
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate, UserPublic, UserStore
from skyops.timeutil import Clock

SESSION_TTL_KEY = "session_ttl_s"
DEFAULT_SESSION_TTL = timedelta(hours=12)
MIN_SESSION_TTL, MAX_SESSION_TTL = timedelta(minutes=5), timedelta(days=30)


class AuthError(SkyopsError):
    """The caller is not logged in (no, unknown or expired token; wrong password)."""


class RateLimitedError(AuthError):
    """Too many failed logins from this user and address; try again later."""

    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins; try again in {int(retry_after.total_seconds()) + 1} s")


class PermissionDeniedError(SkyopsError):
    """The logged-in user's group may not perform the action."""


# Every action the HMI offers, and the groups allowed to perform it (SOXS web-app groups).
ALL = frozenset(Group)
PERMISSIONS: Mapping[str, frozenset[Group]] = {
    "read": ALL,
    "alarm.ack": frozenset({Group.ADMINISTRATOR, Group.OPERATOR}),
    "alarm.shelve": frozenset({Group.ADMINISTRATOR, Group.OPERATOR}),
    "alarm.comment": ALL,
    "plan.replan": frozenset({Group.ADMINISTRATOR, Group.OPERATOR, Group.SCIENCE}),
    "ob.edit": frozenset({Group.ADMINISTRATOR, Group.SCIENCE}),
    "ves.edit": frozenset({Group.ADMINISTRATOR, Group.SCIENCE, Group.OPERATOR}),
    "user.manage": frozenset({Group.ADMINISTRATOR}),
    "settings.manage": frozenset({Group.ADMINISTRATOR}),
}


def require(user: UserPublic | None, action: str) -> UserPublic:
    """The user, if logged in and allowed `action`; otherwise an error saying which."""
    if user is None:
        raise AuthError("log in first")
    allowed = PERMISSIONS.get(action)
    if allowed is None:
        raise PermissionDeniedError(f"unknown action {action!r}")
    if user.group not in allowed:
        raise PermissionDeniedError(
            f"{user.username} ({user.group.value}) may not {action}; allowed: "
            + ", ".join(sorted(g.value for g in allowed))
        )
    return user


class LoginRateLimiter:
    """At most `max_failures` failed logins per (user, address) within `window`; the clock is injected."""

    def __init__(self, clock: Clock, *, max_failures: int = 5, window: timedelta = timedelta(minutes=5)) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._failures: dict[tuple[str, str], deque[datetime]] = {}

    def check(self, username: str, address: str) -> None:
        q = self._recent(username, address)
        if len(q) >= self._max:
            raise RateLimitedError(q[0] + self._window - self._clock.now())

    def failed(self, username: str, address: str) -> None:
        self._recent(username, address).append(self._clock.now())

    def succeeded(self, username: str, address: str) -> None:
        self._failures.pop((username, address), None)

    def _recent(self, username: str, address: str) -> deque[datetime]:
        q = self._failures.setdefault((username, address), deque())
        horizon = self._clock.now() - self._window
        while q and q[0] <= horizon:
            q.popleft()
        return q


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    user: UserPublic


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Logs users in and out and resolves tokens to users; blocking DB work, so callers use a thread."""

    def __init__(
        self,
        *,
        users: UserStore,
        sessions: sessionmaker[Session],
        clock: Clock,
        limiter: LoginRateLimiter | None = None,
        new_token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.users = users
        self._sessions = sessions
        self._clock = clock
        self.limiter = limiter or LoginRateLimiter(clock)
        self._new_token = new_token

    def login(self, username: str, password: str, *, address: str) -> IssuedToken:
        self.limiter.check(username, address)
        now = self._clock.now()
        user = self.users.verify_password(username=username, password=password, now=now)
        if user is None:
            self.limiter.failed(username, address)
            raise AuthError("invalid username or password")
        self.limiter.succeeded(username, address)
        token = self._new_token()
        expires = now + self.session_ttl()
        with self._sessions.begin() as s:
            s.add(HmiSession(token_hash=_digest(token), username=user.username, created_at=now, expires_at=expires))
        return IssuedToken(token=token, expires_at=expires, user=user)

    def authenticate(self, token: str | None) -> UserPublic:
        if not token:
            raise AuthError("log in first")
        now = self._clock.now()
        with self._sessions.begin() as s:
            row = s.get(HmiSession, _digest(token))
            if row is None or row.expires_at <= now:
                raise AuthError("session expired or unknown; log in again")
            username = row.username
        user = self.users.get(username=username)
        if user.disabled:
            raise AuthError("this account is disabled")
        return user

    def logout(self, token: str) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(HmiSession).where(HmiSession.token_hash == _digest(token)))

    def purge_expired(self) -> int:
        with self._sessions.begin() as s:
            result = s.execute(delete(HmiSession).where(HmiSession.expires_at <= self._clock.now()))
            return int(cast(CursorResult[Any], result).rowcount)

    def session_ttl(self) -> timedelta:
        with self._sessions() as s:
            row = s.get(HmiSetting, SESSION_TTL_KEY)
        return DEFAULT_SESSION_TTL if row is None else timedelta(seconds=int(row.value))

    def set_session_ttl(self, ttl: timedelta, *, by: str) -> timedelta:
        if not MIN_SESSION_TTL <= ttl <= MAX_SESSION_TTL:
            raise ValueError(f"session duration must be between {MIN_SESSION_TTL} and {MAX_SESSION_TTL}")
        with self._sessions.begin() as s:
            s.merge(HmiSetting(key=SESSION_TTL_KEY, value=str(int(ttl.total_seconds())), updated_at=self._clock.now(),
                               updated_by=by))
        return ttl

    def active_sessions(self) -> int:
        with self._sessions() as s:
            return len(s.scalars(select(HmiSession.token_hash).where(HmiSession.expires_at > self._clock.now())).all())


def ensure_initial_admin(users: UserStore, *, now: datetime) -> str | None:
    """On a first start (no users at all) create `admin` with a generated password and return it once."""
    if users.list():
        return None
    password = secrets.token_urlsafe(12)
    users.create(data=UserCreate(username="admin", full_name="Administrator", group=Group.ADMINISTRATOR,
                                 password=SecretStr(password)), now=now)
    return password
