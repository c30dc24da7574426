"""`--speed` and `--start`: the clock a process runs on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deploy.clocks import AnchoredClock, ClockSettings, evening_start, make_clock, parse_start
from planner.config import load_site
from planner.service import night_of
from skyops.timeutil import AcceleratedClock, FakeClock, SystemClock

SITE = load_site()
MORNING = datetime(2026, 3, 21, 14, 0, tzinfo=UTC)  # 11:00 at La Silla: the night is over
MIDNIGHT = datetime(2026, 3, 21, 4, 0, tzinfo=UTC)  # 01:00 at La Silla: the night is under way


def test_evening_is_the_next_twilight_after_a_finished_night() -> None:
    start = evening_start(SITE, MORNING)
    assert MORNING < start < MORNING + timedelta(hours=12)
    assert night_of(SITE, start) == night_of(SITE, MORNING) + timedelta(days=1)
    assert start.hour >= 22 or start.hour <= 1  # 19:00-22:00 local: the evening twilight


def test_evening_during_a_night_is_now() -> None:
    assert evening_start(SITE, MIDNIGHT) == MIDNIGHT


@pytest.mark.parametrize(("text", "expected"), [
    ("now", MORNING),
    ("2026-03-21T23:30:00+00:00", datetime(2026, 3, 21, 23, 30, tzinfo=UTC)),
    ("2026-03-21T23:30", datetime(2026, 3, 21, 23, 30, tzinfo=UTC)),  # bare: UTC
    ("2026-03-21T20:30-03:00", datetime(2026, 3, 21, 23, 30, tzinfo=UTC)),
])
def test_start_times(text: str, expected: datetime) -> None:
    assert parse_start(text, now=MORNING, site=SITE) == expected


def test_a_start_that_is_not_a_time_is_refused() -> None:
    with pytest.raises(ValueError, match="'tomorrow' is not 'now', 'evening' or an ISO 8601 time"):
        parse_start("tomorrow", now=MORNING, site=SITE)


def test_speed_one_from_now_is_the_wall_clock_else_accelerated() -> None:
    assert isinstance(make_clock(speed=1, start=None, now=MORNING), SystemClock)
    fast = make_clock(speed=60, start=MIDNIGHT, now=MORNING)
    assert isinstance(fast, AcceleratedClock) and fast.speed == 60
    assert MIDNIGHT <= fast.now() < MIDNIGHT + timedelta(minutes=5)
    assert isinstance(make_clock(speed=1, start=MIDNIGHT, now=MORNING), AcceleratedClock)  # replaying a night


def test_processes_sharing_start_anchor_and_speed_read_the_same_time() -> None:
    wall = FakeClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    night = datetime(2026, 3, 21, 3, 0, tzinfo=UTC)
    a = AnchoredClock(night, wall.now(), 60, wall=wall)
    wall.advance(30)
    b = AnchoredClock(night, wall.now() - timedelta(seconds=30), 60, wall=wall)  # started later, same anchor
    assert a.now() == b.now() == night + timedelta(minutes=30)


def test_clock_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(ClockSettings().clock(), SystemClock)
    monkeypatch.setenv("SKYOPS_CLOCK_START", "2026-03-21T03:00:00Z")
    monkeypatch.setenv("SKYOPS_CLOCK_ANCHOR", "2026-11-22T09:00:00Z")
    clock = ClockSettings().clock()
    assert isinstance(clock, AnchoredClock) and clock.start == datetime(2026, 3, 21, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("env", [{"SKYOPS_CLOCK_START": "2026-03-21T03:00:00Z"}, {"SKYOPS_CLOCK_SPEED": "60"},
                                 {"SKYOPS_CLOCK_START": "2026-03-21T03:00:00", "SKYOPS_CLOCK_ANCHOR": "2026-03-21"}])
def test_incomplete_or_naive_clock_settings_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=r"SKYOPS_CLOCK|timezone|start|anchor"):
        ClockSettings()
