"""Wiring of the monitoring subsystem: collectors, dispatcher and manager over a bus and an archive."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from collectors.asm import AsmClient, AsmPoller
from collectors.dispatcher import Dispatcher, LiveFanout
from collectors.domain.processing import PointProcessor
from collectors.health import HealthCollector
from collectors.manager import Component, MonitorManager
from collectors.opcua import OpcUaCollector
from collectors.publisher import SamplePublisher
from config_db.monitoring import MonitoringConfig
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus
from skyops.settings import Settings
from skyops.timeutil import Clock, SystemClock


def open_archive(settings: Settings, config: MonitoringConfig) -> Archive:
    """The archive the settings name (Cassandra, else SQLite under var/), knowing every configured point."""
    points = config.retention_classes()
    if settings.cassandra_hosts:
        return CassandraArchive(
            settings.cassandra_hosts, port=settings.cassandra_port, keyspace=settings.cassandra_keyspace,
            replication_factor=settings.cassandra_replication_factor,
            max_in_flight=settings.cassandra_max_in_flight, points=points,
        )
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return SqliteArchive(settings.archive_path, points=points)


@dataclass
class Monitoring:
    """The monitoring subsystem of one process; `manager.start()` runs it, `close()` frees it."""

    manager: MonitorManager
    publisher: SamplePublisher
    dispatchers: list[Dispatcher]
    pollers: list[AsmPoller]
    opcua: list[OpcUaCollector]
    http: httpx.AsyncClient

    async def close(self) -> None:
        await self.manager.stop()
        await self.http.aclose()


def build_monitoring(
    bus: Bus,
    archive: Archive | None,
    config: MonitoringConfig,
    *,
    clock: Clock | None = None,
    dispatchers: int = 1,
    consumer_prefix: str | None = None,
    collect: bool = True,
    live: bool = True,
) -> Monitoring:
    """Collectors for every configured source (when `collect`), `dispatchers` dispatchers (when an archive
    is given), the live fan-out (when `live` and the configuration asks for it) and the manager that runs them.

    The archive must know the configured points (`config.retention_classes()`).
    """
    clock = clock or SystemClock()
    publisher = SamplePublisher(bus, PointProcessor(config.points), config.queue)
    manager = MonitorManager(bus, publisher, clock=clock, backlog_point="skyops.collectors.mon_queue.backlog"
                             if _has(config, "skyops.collectors.mon_queue.backlog") else None,
                             group=config.dispatcher.group)
    http = httpx.AsyncClient()
    pollers: list[AsmPoller] = []
    collectors: list[OpcUaCollector] = []
    if collect:
        for src in config.sources.asm:
            poller = AsmPoller(src, AsmClient(src, http), publisher, clock=clock)
            pollers.append(poller)
            manager.add(Component(f"asm.{src.name}", poller.run, _up(config, "skyops.collectors.asm.up"),
                                  healthy=_poller_healthy(poller)))
        points = {p.name: p for p in config.points}
        for osrc in config.sources.opcua:
            collector = OpcUaCollector(osrc, publisher, points, clock=clock)
            collectors.append(collector)
            manager.add(Component(f"opcua.{osrc.name}", collector.run, _up(config, "skyops.collectors.opcua.up"),
                                  healthy=_opcua_healthy(collector)))
    ds: list[Dispatcher] = []
    prefix = consumer_prefix or f"{socket.gethostname()}-{id(manager) & 0xFFFF:04x}"
    if collect and any(h.alive_point for h in config.sources.health):
        health = HealthCollector(bus, publisher, list(config.sources.health), consumer=f"{prefix}-health",
                                 clock=clock)
        manager.add(Component("health", health.run))
    if live and config.dispatcher.live_fanout:
        fanout = LiveFanout(bus, consumer=f"{prefix}-live", group=config.dispatcher.live_group)
        manager.add(Component("live", fanout.run))
    if archive is not None:
        for i in range(dispatchers):
            d = Dispatcher(bus, archive, config.dispatcher, consumer=f"{prefix}-{i}", clock=clock)
            ds.append(d)
            manager.add(Component(f"dispatcher.{i}", d.run, _up(config, "skyops.collectors.dispatcher.up")
                                  if i == 0 else None, healthy=_dispatcher_healthy(d)))
    return Monitoring(manager=manager, publisher=publisher, dispatchers=ds, pollers=pollers, opcua=collectors,
                      http=http)


def _poller_healthy(p: AsmPoller) -> Callable[[], bool]:
    return lambda: p.up or p.polls == 0


def _opcua_healthy(c: OpcUaCollector) -> Callable[[], bool]:
    return lambda: c.connected


def _dispatcher_healthy(d: Dispatcher) -> Callable[[], bool]:
    return lambda: d.consumer.health()[0] and d.consecutive_write_failures == 0


def _has(config: MonitoringConfig, point: str) -> bool:
    return any(p.name == point for p in config.points)


def _up(config: MonitoringConfig, point: str) -> str | None:
    return point if _has(config, point) else None


async def run_until_cancelled(monitoring: Monitoring) -> None:
    """Run the subsystem until the task is cancelled (a `skyops run collectors` process)."""
    await monitoring.manager.start()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await monitoring.close()
