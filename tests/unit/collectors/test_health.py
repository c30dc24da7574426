"""The health collector: heartbeats seen on the bus keep a component alive; silence turns it false."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.domain.processing import PointProcessor
from collectors.health import HealthCollector
from collectors.publisher import SamplePublisher
from config_db.monitoring import load_monitoring
from skyops import codec
from skyops.bus import Bus
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES
from skyops.timeutil import FakeClock

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    client = FakeRedis(server=FakeServer(version=(7, 0)))
    yield Bus(client, clock=FakeClock(T0))
    await client.aclose()


async def alive_values(bus: Bus) -> list[object]:
    entries = await bus.redis.xrange(MON_SAMPLES)
    batch = SampleBatch.concat([codec.decode_samples(f[b"d"]) for _, f in entries])
    return [s.value for s in batch.samples() if s.point == "skyops.ves_sync.alive"]


async def test_alive_while_heartbeats_arrive_then_silent(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    config = load_monitoring()
    clock = FakeClock(T0)
    publisher = SamplePublisher(bus, PointProcessor(config.points), config.queue)
    health = HealthCollector(bus, publisher, list(config.sources.health), consumer="h", clock=clock)
    await health.consumer.run_once()  # joins at the stream's end
    assert [s.value for s in await health.report()] == [False]  # never heard from
    assert "ves_sync silent (last heard never)" in caplog.text

    clock.advance(5)
    await publisher.publish([Sample("skyops.ves_sync.lag_s", clock.now(), 3.0)])
    await health.consumer.run_once()
    clock.advance(100)  # within two 60 s periods
    assert [s.value for s in await health.report()] == [True]
    clock.advance(30)  # now 130 s since the heartbeat
    assert [s.value for s in await health.report()] == [False]
    assert await alive_values(bus) == [False, True, False]


def test_alive_point_must_be_a_defined_bool_point() -> None:
    data = load_monitoring().model_dump()
    data["sources"]["health"][0]["alive_point"] = "skyops.ves_sync.lag_s"
    with pytest.raises(ValueError, match="with bool values but the point is float"):
        type(load_monitoring()).model_validate(data)
