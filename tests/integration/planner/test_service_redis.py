"""The planner service against a real Redis: a trigger on the stream comes back as a new plan with its reason."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from planner.config import SchedulerConfig, load_site
from planner.domain.night import NightGrid
from planner.ephemeris import compute_night
from planner.service import PlannerService
from skyops.bus import PAYLOAD_FIELD, Bus, StreamRetention, open_redis
from skyops.messages import ConsequenceKind, PlanTrigger, decode_plan_event
from skyops.timeutil import FakeClock
from tests.unit.planner.builders import random_requests

pytestmark = pytest.mark.integration

NIGHT = date(2025, 3, 20)
RETENTION = StreamRetention(max_len=1000, max_age=timedelta(days=1))


@pytest.fixture(scope="module")
def night() -> NightGrid:
    return compute_night(load_site(), NIGHT)


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[tuple[Bus, str, str]]:
    suffix = uuid.uuid4().hex[:10]
    triggers, events = f"test.plan.triggers.{suffix}", f"test.plan.events.{suffix}"
    redis = open_redis(redis_url)
    try:
        yield Bus(redis), triggers, events
    finally:
        await redis.delete(triggers, events)
        await redis.aclose()


async def test_dome_closed_on_the_stream_empties_the_rest_of_the_night(
    bus: tuple[Bus, str, str], night: NightGrid
) -> None:
    real_bus, triggers, events = bus
    clock = FakeClock(datetime.fromtimestamp(night.start_unix, tz=UTC))
    requests = random_requests(200, seed=5)
    service = PlannerService(
        bus=real_bus,
        site=load_site(),
        config=SchedulerConfig(),
        clock=clock,
        obs=lambda: requests,
        nights=lambda _: night,
        retention=RETENTION,
        triggers_stream=triggers,
        events_stream=events,
    )
    await service.plan_night(NIGHT)
    closed_at = datetime.fromtimestamp(night.start_unix + 3 * 3600, tz=UTC)
    trigger = PlanTrigger(
        kind="consequence",
        ts=closed_at,
        reason="humidity 92 %",
        alarm_id="Humidity.ASM:1",
        consequence=ConsequenceKind.CLOSE_DOME,
    )
    await real_bus.publish(triggers, trigger.encode(), retention=RETENTION)
    consumer = service.consumer(group=f"planner-{uuid.uuid4().hex[:6]}", block_ms=200)

    assert await consumer.run_once() == 1

    raw = await real_bus.redis.xrange(events)
    plans = [decode_plan_event(fields[PAYLOAD_FIELD]) for _, fields in raw]
    assert [p.plan_id for p in plans] == ["2025-03-20#1", "2025-03-20#2"]
    assert len(plans[0].blocks) > 5
    assert plans[1].trigger == trigger
    assert "Humidity.ASM:1" in plans[1].reason
    assert plans[1].blocks == ()
    assert await real_bus.pending_count(triggers, consumer.group) == 0
