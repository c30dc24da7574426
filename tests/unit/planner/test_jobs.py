"""The nightly jobs fire on the injected clock: a FakeClock drives them here, an accelerated clock in `skyops up`."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from deploy.clocks import AnchoredClock
from planner.config import SchedulerConfig, SiteConfig
from planner.domain.night import NightGrid
from planner.jobs import AFTERNOON_PLAN, AUTO_CLEAN, MORNING_REPORT, ClockScheduler, Job, build_jobs, clock_speed
from planner.service import PlannerService
from skyops.bus import PAYLOAD_FIELD, Bus
from skyops.messages import decode_plan_event
from skyops.streams import PLAN_EVENTS
from skyops.timeutil import AcceleratedClock, FakeClock
from tests.unit.planner.builders import random_requests
from tests.unit.planner.conftest import NIGHT

CHILE = ZoneInfo("America/Santiago")
MORNING = datetime(2025, 3, 20, 12, 30, tzinfo=UTC)  # 09:30 at La Silla (UTC-3 in March)


class Recorder:
    """A job that notes the clock time of each run."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.at: list[datetime] = []

    async def __call__(self) -> None:
        self.at.append(self.clock.now())


def daily(hour: int) -> CronTrigger:
    return CronTrigger(hour=hour, minute=0, timezone=CHILE)


async def test_a_job_runs_when_the_clock_reaches_its_local_time_and_not_before() -> None:
    clock = FakeClock(MORNING)
    job = Recorder(clock)
    jobs = ClockScheduler(clock, [Job("afternoon", daily(16), job)])

    assert jobs.next_fire_times() == {"afternoon": datetime(2025, 3, 20, 19, 0, tzinfo=UTC)}
    clock.set(datetime(2025, 3, 20, 18, 59, 59, tzinfo=UTC))
    assert await jobs.run_pending() == []
    clock.set(datetime(2025, 3, 20, 19, 0, 30, tzinfo=UTC))
    assert await jobs.run_pending() == ["afternoon"]
    assert await jobs.run_pending() == []  # once per fire time

    assert job.at == [datetime(2025, 3, 20, 19, 0, 30, tzinfo=UTC)]
    assert jobs.next_fire_times()["afternoon"] == datetime(2025, 3, 21, 19, 0, tzinfo=UTC)


async def test_a_fire_time_already_past_at_start_is_not_run() -> None:
    clock = FakeClock(datetime(2025, 3, 20, 19, 10, tzinfo=UTC))  # 16:10 local: today's afternoon job is gone
    job = Recorder(clock)
    jobs = ClockScheduler(clock, [Job("afternoon", daily(16), job)])

    assert await jobs.run_pending() == []
    assert jobs.next_fire_times()["afternoon"] == datetime(2025, 3, 21, 19, 0, tzinfo=UTC)


async def test_several_missed_fire_times_within_the_grace_run_once() -> None:
    clock = FakeClock(MORNING)
    job = Recorder(clock)
    jobs = ClockScheduler(clock, [Job("often", CronTrigger(minute="*/10", timezone=CHILE), job)])
    jobs.next_fire_times()

    clock.advance(timedelta(minutes=35))  # 12:40, 12:50, 13:00 passed
    assert await jobs.run_pending() == ["often"]

    assert len(job.at) == 1
    assert jobs.next_fire_times()["often"] == datetime(2025, 3, 20, 13, 10, tzinfo=UTC)


async def test_a_job_later_than_its_grace_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(MORNING)
    job = Recorder(clock)
    jobs = ClockScheduler(clock, [Job("afternoon", daily(16), job, misfire_grace=timedelta(hours=1))])
    jobs.next_fire_times()

    clock.set(datetime(2025, 3, 20, 20, 30, tzinfo=UTC))  # 90 minutes late
    with caplog.at_level(logging.WARNING, logger="planner.jobs"):
        assert await jobs.run_pending() == []

    assert job.at == []
    assert "job afternoon skipped" in caplog.text
    assert jobs.next_fire_times()["afternoon"] == datetime(2025, 3, 21, 19, 0, tzinfo=UTC)


async def test_a_failing_job_is_logged_and_fires_again_the_next_day(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(MORNING)
    calls: list[datetime] = []

    async def broken() -> None:
        calls.append(clock.now())
        raise RuntimeError("the OB store is locked")

    jobs = ClockScheduler(clock, [Job("afternoon", daily(16), broken)])
    jobs.next_fire_times()
    clock.set(datetime(2025, 3, 20, 19, 0, tzinfo=UTC))
    with caplog.at_level(logging.ERROR, logger="planner.jobs"):
        assert await jobs.run_pending() == ["afternoon"]
    clock.set(datetime(2025, 3, 21, 19, 0, tzinfo=UTC))
    await jobs.run_pending()

    assert len(calls) == 2
    assert jobs.failures == {"afternoon": 2} and jobs.runs == {"afternoon": 0}
    assert "job afternoon failed" in caplog.text and "the OB store is locked" in caplog.text


async def test_a_synchronous_job_runs_off_the_event_loop_thread() -> None:
    clock = FakeClock(MORNING)
    threads: list[int] = []
    jobs = ClockScheduler(clock, [Job("clean", daily(12), lambda: threads.append(threading.get_ident()))])
    jobs.next_fire_times()
    clock.set(datetime(2025, 3, 20, 15, 0, tzinfo=UTC))  # noon local

    assert await jobs.run_pending() == ["clean"]
    assert threads and threads[0] != threading.get_ident()


async def test_the_loop_waits_in_wall_seconds_at_the_clock_speed_and_fires_each_day() -> None:
    """At speed 60 a day of clock time is 24 wall minutes: the loop asks to wait 1/60 of the clock time left
    (never more than its cap, so a clock set by hand is noticed), and the job fires every clock day."""
    clock = FakeClock(MORNING)
    job = Recorder(clock)
    stop = asyncio.Event()
    waits: list[tuple[int, float]] = []  # (runs so far, wall seconds asked for)

    async def wait(stop_event: asyncio.Event, seconds: float) -> None:
        waits.append((len(job.at), seconds))
        clock.advance(seconds * 60)  # the wall time the loop asked for, as the accelerated clock lives it
        if len(job.at) == 3:
            stop_event.set()

    jobs = ClockScheduler(clock, [Job("afternoon", daily(16), job)], speed=60, max_wait_s=30, wait=wait)
    await asyncio.wait_for(jobs.run(stop), timeout=10)

    assert [t.date() for t in job.at] == [date(2025, 3, 20), date(2025, 3, 21), date(2025, 3, 22)]
    assert all(datetime(2025, 3, 20, 19, tzinfo=UTC) <= t - timedelta(days=i) < datetime(2025, 3, 20, 19, 1,
                                                                                           tzinfo=UTC)
               for i, t in enumerate(job.at))
    # 6.5 h of clock time to the first fire at 60x: 390 wall seconds, in waits of at most the 30 s cap.
    before_first = [w for runs, w in waits if runs == 0]
    assert max(before_first) == 30
    assert sum(before_first) == pytest.approx(390, abs=1e-3)
    # Then a clock day between fires: 1440 wall seconds.
    assert sum(w for runs, w in waits if runs == 1) == pytest.approx(1440, abs=1e-3)


async def test_the_loop_stops_at_once_when_asked() -> None:
    clock = FakeClock(MORNING)
    stop = asyncio.Event()
    stop.set()
    jobs = ClockScheduler(clock, [Job("afternoon", daily(16), Recorder(clock))])

    await asyncio.wait_for(jobs.run(stop), timeout=5)


def test_the_speed_comes_from_an_accelerated_clock() -> None:
    assert clock_speed(AcceleratedClock(MORNING, 60)) == 60
    assert clock_speed(FakeClock(MORNING)) == 1
    # `skyops run` processes share an anchored clock (SKYOPS_CLOCK_SPEED): the planner's jobs follow it too.
    assert clock_speed(AnchoredClock(MORNING, MORNING, 20)) == 20
    jobs = ClockScheduler(AcceleratedClock(MORNING, 60), [], max_wait_s=1000)
    assert jobs.wall_seconds_to_next() == 1000  # no job: only the cap


def test_bad_scheduler_settings_are_refused() -> None:
    clock = FakeClock(MORNING)
    job = Job("a", daily(16), Recorder(clock))
    with pytest.raises(ValueError, match="unique"):
        ClockScheduler(clock, [job, job])
    with pytest.raises(ValueError, match="speed"):
        ClockScheduler(clock, [job], speed=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        ClockScheduler(clock, [job], max_wait_s=0)


async def test_the_afternoon_plan_job_publishes_the_night_when_the_clock_gets_there(
    site: SiteConfig, config: SchedulerConfig, night: NightGrid,
) -> None:
    bus = Bus(FakeRedis(server=FakeServer(), decode_responses=False))
    clock = FakeClock(datetime(2025, 3, 20, 15, 0, tzinfo=UTC))  # noon at La Silla
    requests = random_requests(60, seed=3)
    service = PlannerService(bus=bus, site=site, config=config, clock=clock, obs=lambda: requests,
                             nights=lambda d: night)
    jobs = build_jobs(service, site)
    assert {j.id for j in jobs.get_jobs()} == {AFTERNOON_PLAN, AUTO_CLEAN, MORNING_REPORT}

    clock.set(datetime(2025, 3, 20, 18, 59, tzinfo=UTC))
    assert await jobs.run_pending() == []
    clock.set(datetime(2025, 3, 20, 19, 0, 5, tzinfo=UTC))  # 16:00 local
    assert await jobs.run_pending() == [AFTERNOON_PLAN]

    plans = [decode_plan_event(f[PAYLOAD_FIELD]) for _, f in await bus.redis.xrange(PLAN_EVENTS)]
    assert [(p.night, p.reason) for p in plans] == [(NIGHT.isoformat(), "afternoon plan")]


async def test_jobs_built_on_an_accelerated_clock_wait_at_its_speed(
    site: SiteConfig, config: SchedulerConfig, night: NightGrid,
) -> None:
    """`skyops up --speed 60` hands the planner an AcceleratedClock: the 16:00 job is 1/60 of the way away."""
    bus = Bus(FakeRedis(server=FakeServer(), decode_responses=False))
    noon = datetime(2025, 3, 20, 15, 0, tzinfo=UTC)
    wall = [0.0]
    clock = AcceleratedClock(noon, 60, monotonic=lambda: wall[0])
    service = PlannerService(bus=bus, site=site, config=config, clock=clock, obs=list, nights=lambda d: night)
    jobs = build_jobs(service, site)

    # The morning report (09:00) is past; the auto-clean (12:00) is now; then the afternoon plan (16:00).
    assert await jobs.run_pending() == [AUTO_CLEAN]
    wall[0] += 239.0  # 4 clock hours at 60x are 240 wall seconds
    assert await jobs.run_pending() == []
    assert jobs.wall_seconds_to_next() == pytest.approx(1.0)
    wall[0] += 1.0
    assert await jobs.run_pending() == [AFTERNOON_PLAN]
