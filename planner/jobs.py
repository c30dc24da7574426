"""The planner's nightly jobs (the afternoon plan, autoCleanOBs, the morning report), fired on the injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from planner.config import SiteConfig
from planner.service import PlannerService
from skyops.timeutil import Clock, require_utc

log = logging.getLogger(__name__)

AFTERNOON_PLAN = "afternoon-plan"
AUTO_CLEAN = "auto-clean-obs"
MORNING_REPORT = "morning-report"
MISFIRE_GRACE = timedelta(hours=1)
# A clock may be set or stepped (a FakeClock, an operator's --start): never trust one long sleep.
MAX_WAIT_S = 30.0

JobFunc = Callable[[], Awaitable[object] | object]
Wait = Callable[[asyncio.Event, float], Awaitable[None]]


@dataclass(frozen=True)
class Job:
    """A job and when it fires: apscheduler's cron trigger does the calendar (local site time, DST)."""

    id: str
    trigger: CronTrigger
    func: JobFunc
    misfire_grace: timedelta = MISFIRE_GRACE

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (UTC), or None if the trigger is exhausted."""
        fire = self.trigger.get_next_fire_time(None, require_utc(after) + timedelta(microseconds=1))
        return None if fire is None else require_utc(fire)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def clock_speed(clock: Clock) -> float:
    """How many clock seconds pass per wall second: accelerated clocks say so by their `speed` (1 otherwise)."""
    speed = getattr(clock, "speed", 1.0)
    return float(speed) if isinstance(speed, int | float) and speed > 0 else 1.0


class ClockScheduler:
    """Fires jobs when the injected clock reaches their time, so `skyops up --speed 60` runs them 60× sooner.

    Like apscheduler's coalescing: a job late by several fire times runs once; one later than its misfire
    grace (clock time) is skipped with a warning. A job that raises is logged and fires again next time.
    Jobs run one after the other; synchronous ones in a worker thread, so the event loop stays free.
    """

    def __init__(self, clock: Clock, jobs: list[Job], *, speed: float | None = None,
                 max_wait_s: float = MAX_WAIT_S, wait: Wait = _wait_or_stop) -> None:
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"job ids must be unique: {ids}")
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        if not max_wait_s > 0:
            raise ValueError(f"max_wait_s must be positive, got {max_wait_s!r}")
        self._clock = clock
        self._jobs = list(jobs)
        self._speed = speed if speed is not None else clock_speed(clock)
        self._max_wait_s = max_wait_s
        self._wait = wait
        self._next: dict[str, datetime | None] = {}
        self.runs: dict[str, int] = dict.fromkeys(ids, 0)
        self.failures: dict[str, int] = dict.fromkeys(ids, 0)

    def get_jobs(self) -> list[Job]:
        return list(self._jobs)

    def next_fire_times(self) -> dict[str, datetime | None]:
        """When each job fires next (clock time, UTC); computed from now on the first call."""
        self._arm()
        return dict(self._next)

    def _arm(self) -> None:
        if not self._next:
            # The first fire at or after now, as apscheduler does at start: a time already past is not run.
            now = self._clock.now() - timedelta(microseconds=1)
            self._next = {j.id: j.next_fire(now) for j in self._jobs}

    async def run_pending(self) -> list[str]:
        """Run the jobs due at the clock's now; returns the ids of those that ran."""
        self._arm()
        now = require_utc(self._clock.now())
        ran = []
        for job in self._jobs:
            fire = self._next[job.id]
            if fire is None or fire > now:
                continue
            self._next[job.id] = job.next_fire(now)
            if now - fire > job.misfire_grace:
                log.warning("job %s skipped: due at %s, now %s is past its %s grace", job.id, fire.isoformat(),
                            now.isoformat(), job.misfire_grace)
                continue
            await self._execute(job)
            ran.append(job.id)
        return ran

    async def _execute(self, job: Job) -> None:
        try:
            if inspect.iscoroutinefunction(job.func):
                await job.func()
            else:
                result = await asyncio.to_thread(job.func)
                if inspect.isawaitable(result):
                    await result
            self.runs[job.id] += 1
        except Exception:  # a failed nightly job must not stop the planner; it fires again next time
            self.failures[job.id] += 1
            log.exception("job %s failed", job.id)

    def wall_seconds_to_next(self) -> float:
        """Real seconds until the next fire time, at the clock's speed, at most `max_wait_s`."""
        self._arm()
        pending = [f for f in self._next.values() if f is not None]
        if not pending:
            return self._max_wait_s
        ahead = (min(pending) - self._clock.now()).total_seconds()
        return min(max(ahead, 0.0) / self._speed, self._max_wait_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire the jobs on time until `stop` is set."""
        while not stop.is_set():
            await self.run_pending()
            if stop.is_set():
                break
            await self._wait(stop, self.wall_seconds_to_next())


def build_jobs(
    service: PlannerService,
    site: SiteConfig,
    *,
    clock: Clock | None = None,
    afternoon_hour: int = 16,
    clean_hour: int = 12,
    report_hour: int = 9,
) -> ClockScheduler:
    """The three jobs at local site time, on `clock` (default: the service's); `run(stop)` fires them."""
    zone = ZoneInfo(site.timezone)

    def daily(hour: int) -> CronTrigger:
        return CronTrigger(hour=hour, minute=0, timezone=zone)

    async def morning_report() -> None:
        await _log_morning_report(service)

    jobs = [
        Job(AFTERNOON_PLAN, daily(afternoon_hour), service.afternoon_plan),
        Job(AUTO_CLEAN, daily(clean_hour), service.auto_clean),
        Job(MORNING_REPORT, daily(report_hour), morning_report),
    ]
    return ClockScheduler(clock or service.clock, jobs)


async def _log_morning_report(service: PlannerService) -> None:
    summary = service.morning_report()
    if summary is None:
        log.info("morning report: last night was not planned")
    else:
        log.info("morning report %s, as planned: %s", summary.night, summary.as_dict())
    # What was executed (recorded in P2 or seen on the telescope), which is what management reads.
    executed = await asyncio.to_thread(service.executed_report)
    if executed is not None:
        log.info("morning report %s, as executed: %s", executed.start.date().isoformat(), executed.as_dict())
