"""The monitor manager: start/stop/status of components, their state and the Mon Queue backlog as points."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.domain.processing import PointProcessor
from collectors.factory import build_monitoring
from collectors.manager import Component, ComponentState, MonitorManager
from collectors.publisher import SamplePublisher
from config_db.monitoring import load_monitoring
from skyops import codec
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus
from skyops.errors import SkyopsError
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES
from skyops.timeutil import FakeClock

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    client = FakeRedis(server=FakeServer(version=(7, 0)))
    yield Bus(client, clock=FakeClock(T0))
    await client.aclose()


async def published(bus: Bus) -> dict[str, list[object]]:
    entries = await bus.redis.xrange(MON_SAMPLES)
    out: dict[str, list[object]] = {}
    for s in SampleBatch.concat([codec.decode_samples(f[b"d"]) for _, f in entries]).samples():
        out.setdefault(s.point, []).append(s.value)
    return out


async def idle(stop: asyncio.Event) -> None:
    await stop.wait()


async def crash(stop: asyncio.Event) -> None:
    raise RuntimeError("lost the OPC-UA certificate")


async def stubborn(stop: asyncio.Event) -> None:
    await asyncio.Event().wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_start_status_failure_stop_and_points(bus: Bus) -> None:
    config = load_monitoring()
    clock = FakeClock(T0)
    publisher = SamplePublisher(bus, PointProcessor(config.points), config.queue)
    m = MonitorManager(bus, publisher, clock=clock, backlog_point="skyops.collectors.mon_queue.backlog",
                       status_period_s=3600)
    m.add(Component("asm.asm", idle, "skyops.collectors.asm.up"))
    m.add(Component("opcua.tcs", crash, "skyops.collectors.opcua.up"))
    m.add(Component("stuck", stubborn))
    with pytest.raises(SkyopsError, match="exists already"):
        m.add(Component("stuck", idle))
    await m.start()
    await settle()
    status = {s.name: s for s in m.status()}
    assert status["asm.asm"].state is ComponentState.RUNNING
    assert status["opcua.tcs"].state is ComponentState.FAILED
    assert status["opcua.tcs"].error == "RuntimeError: lost the OPC-UA certificate"
    got = await published(bus)
    assert got["skyops.collectors.asm.up"] == [True]
    assert got["skyops.collectors.opcua.up"] == [False]

    clock.advance(timedelta(seconds=10))
    await m.stop("asm.asm")
    assert {s.name: s.state for s in m.status()}["asm.asm"] is ComponentState.STOPPED
    await m.start("asm.asm")
    assert {s.name: s.state for s in m.status()}["asm.asm"] is ComponentState.RUNNING
    with pytest.raises(SkyopsError, match="no monitoring component 'nope'"):
        await m.start("nope")

    clock.advance(timedelta(seconds=10))
    await m.stop(timeout_s=0.05)
    assert {s.state for s in m.status()} <= {ComponentState.STOPPED, ComponentState.FAILED}
    assert (await published(bus))["skyops.collectors.asm.up"][-1] is False


async def test_backlog_point_counts_what_the_dispatchers_still_owe(bus: Bus, tmp_path: Path) -> None:
    config = load_monitoring()
    archive = SqliteArchive(tmp_path / "a.sqlite3", points=config.retention_classes())
    await archive.open()
    mon = build_monitoring(bus, archive, config, clock=FakeClock(T0), collect=False, live=False)
    try:
        await bus.ensure_group(MON_SAMPLES, config.dispatcher.group)
        await mon.publisher.publish([Sample("lasilla.asm.seeing", T0, 0.7)])
        reported = await mon.manager.report()
        backlog = [s.value for s in reported if s.point == "skyops.collectors.mon_queue.backlog"]
        assert backlog == [1]
        d = mon.dispatchers[0]
        await d.consumer.run_once()
        await d.tick()
        # Held for its block: the latest value is current, the entries are still owed.
        assert (await archive.latest(["lasilla.asm.seeing"]))["lasilla.asm.seeing"].value == 0.7
        assert await bus.lag(MON_SAMPLES, config.dispatcher.group) == 2
        await d.drain()
        assert await bus.lag(MON_SAMPLES, config.dispatcher.group) == 0
        assert [c.name for c in mon.manager.status()] == ["dispatcher.0"]
    finally:
        await mon.close()
        await archive.close()
