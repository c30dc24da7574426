"""UTC time helpers and the injectable clock every service takes instead of calling now()."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from skyops.errors import NaiveDatetimeError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S


def require_utc(value: datetime, *, what: str = "timestamp") -> datetime:
    """Return `value` converted to UTC; a naive datetime is refused, never guessed."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(f"{what} {value.isoformat()} has no timezone; skyops needs UTC-aware times")
    return value.astimezone(UTC)


def to_us(value: datetime, *, what: str = "timestamp") -> int:
    """Microseconds since the Unix epoch for an aware datetime (exact, no float rounding)."""
    delta = require_utc(value, what=what) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def from_us(us: int) -> datetime:
    """The UTC datetime for microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=int(us))


class Clock(Protocol):
    """Where services read the time; tests inject a `FakeClock` instead of sleeping."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to: replayed input series stay deterministic."""

    def __init__(self, start: datetime) -> None:
        self._now = require_utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock does not run backwards")
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        when = require_utc(when)
        if when < self._now:
            raise ValueError("a clock does not run backwards")
        self._now = when


class AcceleratedClock:
    """Time running `speed` times faster than the wall, from `start`: a night watched in minutes (`--speed 60`).

    Built on a monotonic source, so a wall-clock step (NTP) never makes it jump or run backwards.
    """

    def __init__(self, start: datetime, speed: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0 or speed != speed or speed == float("inf"):
            raise ValueError(f"speed must be a positive finite factor, got {speed!r}")
        self.start = require_utc(start, what="start")
        self.speed = float(speed)
        self._monotonic = monotonic
        self._t0 = monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(self._monotonic() - self._t0) * self.speed)

    def wall_seconds(self, clock_seconds: float) -> float:
        """The real time for `clock_seconds` of this clock's time (to wait for it)."""
        return clock_seconds / self.speed
