"""Wiring of the planner service: OB store, service, stream consumers and nightly jobs (`deploy` calls it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from planner.config import SchedulerConfig, load_site
from planner.jobs import ClockScheduler, build_jobs
from planner.service import PlannerService, store_obs
from planner.store import ObStore
from skyops.bus import Bus
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.settings import Settings
from skyops.timeutil import Clock


@dataclass
class Planner:
    """The planner's parts, built but not started."""

    service: PlannerService
    store: ObStore
    engine: Engine
    jobs: ClockScheduler

    async def run(self, stop: asyncio.Event, *, consumer: str = "planner-1") -> None:
        """Consume triggers and monitoring samples and run the nightly jobs (on the clock) until `stop` is set."""
        await asyncio.gather(
            self.service.consumer(consumer=consumer).run(stop),
            self.service.samples_consumer(consumer=consumer).run(stop),
            self.service.p2_consumer(consumer=consumer).run(stop),
            self.jobs.run(stop),
        )

    def close(self) -> None:
        self.engine.dispose()


def build(
    settings: Settings,
    *,
    bus: Bus,
    clock: Clock,
    site_path: Path | None = None,
    config: SchedulerConfig | None = None,
) -> Planner:
    """The planner on the operational DB of `settings` (migrated here) and the given bus."""
    site = load_site(site_path)
    engine = make_engine(settings.effective_sql_url)
    upgrade(engine)
    store = ObStore(make_sessionmaker(engine), site=site)
    service = PlannerService(
        bus=bus, site=site, config=config or SchedulerConfig(), clock=clock, obs=store_obs(store), store=store
    )
    return Planner(service=service, store=store, engine=engine, jobs=build_jobs(service, site, clock=clock))
