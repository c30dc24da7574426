"""The VES sync on the bus: plan events in, health on mon.samples; P2 down, then the backlog drains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from sqlalchemy.orm import Session, sessionmaker

from skyops.bus import PAYLOAD_FIELD, Bus, Entry, StreamRetention
from skyops.codec import decode_samples
from skyops.streams import MON_SAMPLES, PLAN_EVENTS
from skyops.timeutil import FakeClock
from tests.integration.ves_sync.conftest import SOXS_CONTAINER, Sleeps, client, make_service
from tests.unit.ves_sync.builders import DUSK, block, night, plan
from ves_sync.consumer import GROUP, VesSyncConsumer
from ves_sync.domain.content import p2_name
from ves_sync.domain.ves import POINT_CONSECUTIVE_FAILURES, POINT_LAG, POINT_LAST_SUCCESS_AGE
from ves_sync.emulator import EmulatorServer
from ves_sync.store import VesSyncStore

pytestmark = pytest.mark.integration
RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=1))


@pytest.fixture
async def bus(clock: FakeClock) -> AsyncIterator[Bus]:
    redis = FakeRedis(server=FakeServer(version=(7, 0)), decode_responses=False)
    yield Bus(redis, clock=clock)
    await redis.aclose()


@pytest.fixture
def consumer(bus: Bus, environment: str, sessions: sessionmaker[Session], clock: FakeClock,
             sleeps: Sleeps) -> VesSyncConsumer:
    return VesSyncConsumer(bus=bus, service=make_service(environment, sessions, clock, sleeps), clock=clock,
                           samples_retention=RETENTION, block_ms=10, health_interval_s=1.0)


async def latest_health(bus: Bus) -> dict[str, object]:
    entries = await bus.redis.xrevrange(MON_SAMPLES, count=1)
    assert entries, "no health published"
    fields = entries[0][1]
    assert fields is not None
    payload = fields[PAYLOAD_FIELD]
    assert isinstance(payload, bytes)
    batch = decode_samples(payload)
    return {s.point: s.value for s in batch.samples()}


async def test_plan_events_reach_the_ves_and_health_is_published(
    bus: Bus, consumer: VesSyncConsumer, environment: str, clock: FakeClock
) -> None:
    await bus.publish(PLAN_EVENTS, plan(night(5)).encode(), retention=RETENTION)
    await bus.publish(PLAN_EVENTS, b"{not a plan", retention=RETENTION)
    assert await consumer.run_once() == 2
    assert consumer.undecodable == 1
    assert len(client(environment, "operator").get_execution_sequence("SOXS")[0]) == 5
    clock.advance(7)
    await consumer.publish_health()
    health = await latest_health(bus)
    assert health[POINT_LAST_SUCCESS_AGE] == 7.0
    assert health[POINT_CONSECUTIVE_FAILURES] == 0
    assert health[POINT_LAG] == 0.0
    assert await bus.lag(PLAN_EVENTS, GROUP) == 0


async def test_p2_down_counts_failures_then_recovery_drains_the_backlog(
    bus: Bus, consumer: VesSyncConsumer, emulator: EmulatorServer, environment: str, clock: FakeClock,
    sessions: sessionmaker[Session], sleeps: Sleeps,
) -> None:
    first = night(20)
    await bus.publish(PLAN_EVENTS, plan(first, created=DUSK).encode(), retention=RETENTION)
    await consumer.run_once()

    emulator.stop()
    clock.advance(60)
    grown = [*first, *(block(n) for n in range(20, 25))]
    await bus.publish(PLAN_EVENTS, plan(grown, plan_id="p2", created=clock.now()).encode(), retention=RETENTION)
    clock.advance(30)
    final = [*grown[::-1]]
    await bus.publish(PLAN_EVENTS, plan(final, plan_id="p3", created=clock.now(), reason="ToO").encode(),
                      retention=RETENTION)

    assert await consumer.run_once() == 0
    assert await consumer.refresh_statuses() == []  # P2 down: logged, not raised
    clock.advance(10)
    assert await consumer.run_once() == 0
    health = await latest_health(bus)
    assert health[POINT_CONSECUTIVE_FAILURES] == 2
    assert health[POINT_LAG] == 40.0  # behind since plan p2 was made
    assert health[POINT_LAST_SUCCESS_AGE] == 100.0
    assert sleeps.waits, "the service backed off between attempts"
    assert await bus.lag(PLAN_EVENTS, GROUP) == 2

    emulator.start()  # same port, same state directory
    assert await consumer.run_once() == 2
    health = await latest_health(bus)
    assert health[POINT_CONSECUTIVE_FAILURES] == 0
    assert health[POINT_LAG] == 0.0
    assert await bus.lag(PLAN_EVENTS, GROUP) == 0

    links = VesSyncStore(sessions).links()
    ves = client(environment, "operator").get_execution_sequence("SOXS")[0]
    assert [e["obId"] for e in ves] == [links[b.ob_id].p2_ob_id for b in final]
    items, _ = client(environment, "soxs").get_items(SOXS_CONTAINER)
    names = [i["name"] for i in items]
    assert sorted(names) == sorted(p2_name(b.ob_id) for b in final)  # none lost, none twice
    assert [c.plan_id for c in VesSyncStore(sessions).history()] == ["p3", "plan-1"]


async def test_run_consumes_until_stopped(bus: Bus, consumer: VesSyncConsumer, environment: str) -> None:
    stop, handled = asyncio.Event(), asyncio.Event()
    original = consumer.stream.handler

    async def handler(entries: list[Entry]) -> None:
        await original(entries)
        handled.set()

    consumer.stream.handler = handler
    task = asyncio.create_task(consumer.run(stop))
    await bus.publish(PLAN_EVENTS, plan(night(3)).encode(), retention=RETENTION)
    await asyncio.wait_for(handled.wait(), timeout=10)  # bounded wait for real HTTP round trips
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert len(consumer.reports) == 1
    assert len(client(environment, "operator").get_execution_sequence("SOXS")[0]) == 3
    assert await bus.redis.xlen(MON_SAMPLES) >= 2  # periodic health plus the one after the sync
