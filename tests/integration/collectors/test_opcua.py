"""The OPC-UA collector against the telescope simulator on loopback: values, commands, faults, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.domain.processing import PointProcessor
from collectors.opcua import OpcUaCollector
from collectors.publisher import SamplePublisher
from collectors.simulators.telescope import TelescopeSimulator, free_port
from config_db.monitoring import MonitoringConfig, OpcUaSource, load_monitoring
from skyops import codec
from skyops.bus import Bus
from skyops.records import Quality, Sample, SampleBatch
from skyops.streams import MON_SAMPLES
from skyops.timeutil import FakeClock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    client = FakeRedis(server=FakeServer(version=(7, 0)))
    yield Bus(client)
    await client.aclose()


async def samples(bus: Bus) -> list[Sample]:
    entries = await bus.redis.xrange(MON_SAMPLES)
    return list(SampleBatch.concat([codec.decode_samples(f[b"d"]) for _, f in entries]).samples())


async def until(check: object, limit_s: float = 15.0) -> None:
    """Wait for the collector to see what the real server sent (network I/O: bounded)."""
    async with asyncio.timeout(limit_s):
        while not await check():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_collects_commands_faults_and_reconnects(bus: Bus) -> None:
    config: MonitoringConfig = load_monitoring()
    clock = FakeClock(T0)
    port = free_port()
    sim = TelescopeSimulator(port=port, clock=clock)
    await sim.start()
    assert sim.ns == 2  # the node ids in the configuration assume it
    source = OpcUaSource.model_validate({**config.sources.opcua[0].model_dump(), "endpoint": sim.endpoint,
                                         "reconnect": {"initial_s": 0.2, "max_s": 0.5}})
    queue = config.queue.model_copy(update={"flush_interval_s": 0.05})
    publisher = SamplePublisher(bus, PointProcessor(config.points), queue)
    collector = OpcUaCollector(source, publisher, {p.name: p for p in config.points}, clock=clock,
                               check_every_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))

    def latest(got: list[Sample], point: str) -> Sample | None:
        mine = [s for s in got if s.point == point]
        return mine[-1] if mine else None

    async def has(point: str, value: object, quality: Quality = Quality.GOOD) -> bool:
        s = latest(await samples(bus), point)
        return s is not None and s.value == value and s.quality == quality

    try:
        await until(lambda: has("ntt.tcs.state", "PARKED"))
        await until(lambda: has("ntt.opcua.connected", True))
        await until(lambda: has("ntt.dome.shutter", "CLOSED"))
        await until(lambda: has("ntt.tcs.altitude", 90.0))

        clock.advance(1)  # the simulator stamps values with its clock: commands come after the snapshot
        await collector.call("NTT.TCS", "SlewTo", 45.0, 120.0)
        await collector.call("NTT.Dome", "Open")
        clock.advance(5)
        await sim.tick()
        await until(lambda: has("ntt.tcs.state", "SLEWING"))
        assert sim.telescope.altitude == 78.0  # 2°/s for the 6 s since the start
        await until(lambda: has("ntt.tcs.altitude", 78.0))
        clock.advance(60)
        await sim.tick()
        await until(lambda: has("ntt.tcs.state", "TRACKING"))
        await until(lambda: has("ntt.dome.shutter", "OPEN"))

        clock.advance(1)
        await collector.call("NTT.Dome", "Close")
        await collector.call("NTT.TCS", "Park")
        await until(lambda: has("ntt.dome.shutter", "CLOSING"))

        # (On a node without a server-side deadband: asyncua's server drops status-only changes there.)
        sim.fail("NTT.Instrument.State")
        clock.advance(1)
        await sim.tick()
        await until(lambda: has("ntt.instrument.state", None, Quality.BAD))
        sim.repair("NTT.Instrument.State")
        clock.advance(1)
        await sim.tick()
        await until(lambda: has("ntt.instrument.state", "IDLE"))

        clock.advance(1)
        await sim.stop()  # the telescope's server goes away …
        await until(lambda: has("ntt.opcua.connected", False))
        assert await has("ntt.tcs.altitude", None, Quality.BAD)
        clock.advance(1)
        sim = TelescopeSimulator(port=port, clock=clock)  # … and comes back
        await sim.start()
        await until(lambda: has("ntt.opcua.connected", True), 30)
        await until(lambda: has("ntt.tcs.state", "PARKED"))
        assert collector.connects >= 2
        ts = [s.ts for s in await samples(bus)]
        assert all(t.tzinfo is not None for t in ts)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            await sim.stop()
