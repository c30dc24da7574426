"""Wiring of the logging service for deploy: consumer, intakes and the run-time filter watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from fastapi import APIRouter

from config_db.logging import LoggingConfig
from logging_svc.consumer import LogConsumer
from logging_svc.filter_store import FilterStore, FilterWatcher
from logging_svc.http_intake import HttpIntake, make_router
from logging_svc.syslog_intake import SyslogIntake
from skyops.archive.port import Archive
from skyops.bus import Bus
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)


@dataclass
class LoggingService:
    """The parts of the logging service one process runs; `run` drives them until `stop` is set."""

    consumer: LogConsumer
    http: HttpIntake
    syslog: SyslogIntake | None
    filters: FilterStore
    watcher: FilterWatcher

    def router(self) -> APIRouter:
        """The HTTP intake routes (`POST /logs`), for the HMI app or a stand-alone server to mount."""
        return make_router(self.http)

    async def run(self, stop: asyncio.Event) -> None:
        if self.syslog is not None:
            await self.syslog.start()
        tasks = [asyncio.create_task(self.consumer.run(stop), name="log-consumer"),
                 asyncio.create_task(self._watch(stop), name="log-filter-watcher")]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if self.syslog is not None:
                await self.syslog.stop()

    async def _watch(self, stop: asyncio.Event) -> None:
        # A lost subscription is retried: filters must keep following changes after a Redis restart.
        while not stop.is_set():
            try:
                await self.watcher.run(stop)
            except Exception as exc:  # Redis went away; the consumer keeps its current filters meanwhile
                log.warning("log filter watcher lost its subscription, retrying: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await stop.wait()


def build_logging_service(
    *,
    bus: Bus,
    archive: Archive,
    config: LoggingConfig,
    consumer_name: str,
    clock: Clock | None = None,
    with_syslog: bool = True,
) -> LoggingService:
    """Build (without starting) the consumer, the HTTP and syslog intakes and the filter watcher."""
    clock = clock or SystemClock()
    consumer = LogConsumer(bus, archive, consumer=consumer_name, filters=config.filters)
    http = HttpIntake(bus, config.http, retention=config.retention, clock=clock)
    syslog = SyslogIntake(bus, config.syslog, retention=config.retention, clock=clock) if with_syslog else None
    store = FilterStore(bus)
    watcher = FilterWatcher(store, [consumer.update_filters], config.filters)
    return LoggingService(consumer=consumer, http=http, syslog=syslog, filters=store, watcher=watcher)
