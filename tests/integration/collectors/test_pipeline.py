"""The monitoring pipeline on real Redis and Cassandra: simulator → poller → bus → dispatchers → archive.

Every sample the collectors published is archived exactly once, including across a dispatcher that
dies holding unacknowledged entries (some of its samples written, some held for their block, some
just read) while another one of its group takes them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import numpy as np
import pytest

from collectors.asm import AsmClient, AsmPoller
from collectors.dispatcher import Dispatcher
from collectors.domain.processing import PointProcessor
from collectors.publisher import SamplePublisher
from collectors.simulators.asm import serve
from config_db.monitoring import AsmSource, DispatcherConfig, MonitoringConfig, load_monitoring
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.bus import Bus, Entry, open_redis
from skyops.records import SampleBatch
from skyops.timeutil import from_us

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[Bus]:
    client = open_redis(redis_url)
    yield Bus(client)
    await client.aclose()


@pytest.fixture
def stream() -> str:
    return f"test.mon.samples.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def config() -> MonitoringConfig:
    # Every poll publishes every field: the test counts samples, not weather changes.
    data = load_monitoring().model_dump()
    for p in data["points"]:
        p["processing"] = {"suppress_duplicates": False}
    return MonitoringConfig.model_validate(data)


@pytest.fixture
async def keyspace(cassandra_hosts: list[str], config: MonitoringConfig) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    a = CassandraArchive(cassandra_hosts, keyspace=name, points=config.retention_classes())
    await a.open()
    await a.drop_keyspace()
    await a.close()


class DyingDispatcher(Dispatcher):
    """Hangs in the handler once it has written samples and holds others, to be killed like that."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls = 0
        self.holding_entries: list[Entry] = []
        self.stuck = asyncio.Event()

    async def handle(self, entries: list[Entry]) -> list[str]:
        self.calls += 1
        if self.archived and self.hold.held_entries and not self.stuck.is_set():
            self.holding_entries = entries
            self.stuck.set()
            await asyncio.Event().wait()
        return await super().handle(entries)  # the entries it is done with: not those it holds


async def published(bus: Bus, stream: str) -> SampleBatch:
    entries = await bus.redis.xrange(stream)
    return SampleBatch.concat([codec.decode_samples(fields[b"d"]) for _, fields in entries])


async def wait_drained(bus: Bus, stream: str, group: str, limit_s: float) -> None:
    """Poll the group's backlog (a real server's state: there is no event to wait on)."""
    async with asyncio.timeout(limit_s):
        while await bus.lag(stream, group):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_every_published_sample_archived_exactly_once_across_a_dispatcher_kill(
    bus: Bus, stream: str, config: MonitoringConfig, cassandra_hosts: list[str], keyspace: str
) -> None:
    points = config.retention_classes()
    archive_a = CassandraArchive(cassandra_hosts, keyspace=keyspace, points=points)
    archive_b = CassandraArchive(cassandra_hosts, keyspace=keyspace, points=points)
    await archive_a.open()
    await archive_b.open()
    # Samples are held up to 1 s (their 60-s blocks never complete in this short run); held entries
    # are touched every min_idle / 3, so B takes over only what A leaves behind when it dies.
    dconf = DispatcherConfig(batch_size=2, block_ms=50, min_idle_ms=500, flush_aggregates_every_s=1, hold_s=1.0,
                             latest_every_s=0.2)
    # A holds longer than it lives and writes only when more than 30 samples wait.
    aconf = dconf.model_copy(update={"hold_s": 10.0, "max_held_samples": 30})
    a = DyingDispatcher(bus, archive_a, aconf, consumer="dispatcher-a", stream=stream, live_channel=None)
    b = Dispatcher(bus, archive_b, dconf, consumer="dispatcher-b", stream=stream, live_channel=None)
    stop_producer, stop_a, stop_b = asyncio.Event(), asyncio.Event(), asyncio.Event()
    try:
        async with serve(seed=11) as (url, _), httpx.AsyncClient() as http:
            source = AsmSource.model_validate({**config.sources.asm[0].model_dump(), "url": url,
                                               "poll_period_s": 0.02})
            publisher = SamplePublisher(bus, PointProcessor(config.points), config.queue, stream=stream)
            poller = AsmPoller(source, AsmClient(source, http), publisher)
            producer = asyncio.create_task(poller.run(stop_producer))
            task_a = asyncio.create_task(a.run(stop_a))
            await asyncio.wait_for(a.stuck.wait(), 30)
            task_b = asyncio.create_task(b.run(stop_b))
            await asyncio.sleep(1.0)
            held_at_death = a.hold.held_entries
            task_a.cancel()  # dies holding its entries, unacknowledged
            with contextlib.suppress(asyncio.CancelledError):
                await task_a
            await asyncio.sleep(2.0)
            stop_producer.set()
            await producer
            # B drains the rest, its own and A's, then stops.
            await wait_drained(bus, stream, dconf.group, 60)
            stop_b.set()
            await task_b

        assert a.holding_entries, "dispatcher A was killed holding entries"
        assert a.archived > 0 and held_at_death > 0, "A wrote some samples and held others when it died"
        assert b.consumer.reclaimed >= len(a.holding_entries)
        want = await published(bus, stream)
        assert len(want) > 200
        start = from_us(int(want.ts_us.min()))
        end = from_us(int(want.ts_us.max()) + 1)
        by_point = dict(want.by_point())
        archived = await archive_b.raw_many(sorted(by_point), start, end)
        for name, expected in by_point.items():
            got = archived[name]
            assert len(got) == len(expected), name
            assert np.array_equal(got.ts_us, expected.ts_us), name
            assert got.values() == expected.values(), name
            assert np.array_equal(got.quality, expected.quality), name
        assert a.archived + b.archived >= len(want)  # the replay may rewrite, never lose
        binned = await archive_b.binned("lasilla.asm.seeing", start, end + timedelta(seconds=1), 4)
        assert sum(binned.count) == len(by_point["lasilla.asm.seeing"])
    finally:
        await bus.redis.delete(stream)
        await archive_a.close()
        await archive_b.close()
