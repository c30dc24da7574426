"""UTC helpers and the injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from skyops.errors import NaiveDatetimeError
from skyops.timeutil import AcceleratedClock, FakeClock, from_us, require_utc, to_us


def test_microsecond_round_trip_is_exact() -> None:
    t = datetime(2026, 11, 22, 3, 4, 5, 678901, tzinfo=UTC)
    assert from_us(to_us(t)) == t
    assert to_us(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(NaiveDatetimeError, match="no timezone"):
        require_utc(datetime(2026, 1, 1))


def test_aware_datetimes_are_converted() -> None:
    t = datetime(2026, 1, 1, 21, 0, tzinfo=timezone(timedelta(hours=-3)))
    assert require_utc(t) == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)


def test_fake_clock_moves_only_forward() -> None:
    c = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    c.advance(1.5)
    assert c.now() == datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        c.advance(-1)
    with pytest.raises(NaiveDatetimeError):
        FakeClock(datetime(2026, 1, 1))


def test_accelerated_clock_runs_speed_times_faster_from_its_start() -> None:
    wall = [100.0]
    start = datetime(2026, 3, 20, 23, 0, tzinfo=UTC)
    clock = AcceleratedClock(start, 60, monotonic=lambda: wall[0])
    assert clock.now() == start
    wall[0] += 1.5
    assert clock.now() == start + timedelta(seconds=90)
    wall[0] += 60
    assert clock.now() == start + timedelta(minutes=61, seconds=30)
    assert clock.wall_seconds(600) == 10


@pytest.mark.parametrize("speed", [0, -1, float("nan"), float("inf")])
def test_accelerated_clock_refuses_a_speed_that_is_not_a_positive_factor(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        AcceleratedClock(datetime(2026, 1, 1, tzinfo=UTC), speed)


def test_accelerated_clock_refuses_a_naive_start() -> None:
    with pytest.raises(NaiveDatetimeError):
        AcceleratedClock(datetime(2026, 1, 1), 2)
