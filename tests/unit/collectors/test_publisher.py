"""The publisher: samples added while a publish is in flight, or while Redis is down, are never lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.domain.processing import PointProcessor
from collectors.publisher import SamplePublisher
from config_db.monitoring import PointConfig, QueueConfig
from skyops import codec
from skyops.bus import Bus, StreamRetention
from skyops.errors import BackendUnavailableError
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


class GatedBus(Bus):
    """Holds each publish until released, or fails it, as a slow or absent Redis would."""

    def __init__(self) -> None:
        super().__init__(FakeRedis(server=FakeServer(version=(7, 0))))
        self.gate = asyncio.Event()
        self.fail = False

    async def publish_many(self, stream: str, payloads: Sequence[bytes], *, retention: StreamRetention) -> list[str]:
        await self.gate.wait()
        if self.fail:
            raise BackendUnavailableError("Redis is unreachable")
        return await super().publish_many(stream, payloads, retention=retention)


def make() -> tuple[GatedBus, SamplePublisher]:
    bus = GatedBus()
    points = [PointConfig(name="a.b.c", processing={"suppress_duplicates": False})]  # type: ignore[arg-type]
    return bus, SamplePublisher(bus, PointProcessor(points), QueueConfig(max_batch=2))


def samples(start: int, n: int) -> list[Sample]:
    return [Sample("a.b.c", T0 + timedelta(seconds=start + i), float(i)) for i in range(n)]


async def stream_len(bus: Bus) -> int:
    entries = await bus.redis.xrange(MON_SAMPLES)
    return len(SampleBatch.concat([codec.decode_samples(f[b"d"]) for _, f in entries]))


async def test_samples_added_during_a_publish_wait_for_the_next_flush() -> None:
    bus, pub = make()
    pub.add(samples(0, 3))
    flushing = asyncio.create_task(pub.flush())
    await asyncio.sleep(0)
    pub.add(samples(10, 2))  # arrives while the first flush waits on Redis
    bus.gate.set()
    assert await flushing == 3
    assert pub.pending == 2
    assert await pub.flush() == 2
    assert await stream_len(bus) == 5
    assert pub.sent_entries == 3  # max_batch 2: 2 + 1, then 2


async def test_a_failed_publish_keeps_the_samples_in_order() -> None:
    bus, pub = make()
    bus.gate.set()
    bus.fail = True
    pub.add(samples(0, 3))
    with pytest.raises(BackendUnavailableError):
        await pub.flush()
    pub.add(samples(10, 1))
    assert pub.pending == 4
    bus.fail = False
    assert await pub.flush() == 4
    entries = await bus.redis.xrange(MON_SAMPLES)
    got = SampleBatch.concat([codec.decode_samples(f[b"d"]) for _, f in entries])
    assert [s.ts for s in got.samples()] == [s.ts for s in samples(0, 3) + samples(10, 1)]
