"""Execution tracking replays recorded exposure-point series and checks the OB outcomes they imply."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from planner.config import SchedulerConfig, SiteConfig
from planner.domain.execution import OB_POINT, STATE_POINT, ExecutionEvent, ExecutionTracker, Outcome
from planner.domain.night import NightGrid
from planner.service import PlannerService
from planner.store import LIVE_STATES, AutoObCreate, ObState, ObStore
from skyops.bus import PAYLOAD_FIELD, Bus
from skyops.codec import encode_samples
from skyops.messages import ConsequenceKind, PlanTrigger
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.records import Quality, Sample, SampleBatch
from skyops.streams import MON_SAMPLES
from skyops.timeutil import FakeClock

T0 = datetime(2025, 3, 21, 2, 0, tzinfo=UTC)


def series(*rows: tuple[int, str, object], quality: Quality = Quality.GOOD) -> list[Sample]:
    """(seconds after T0, point, value) rows as samples."""
    return [Sample(point=p, ts=T0 + timedelta(seconds=s), value=v, quality=quality) for s, p, v in rows]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [(0, OB_POINT, 7), (1, STATE_POINT, "EXPOSING"), (900, STATE_POINT, "READOUT"), (960, STATE_POINT, "IDLE")],
            [(7, Outcome.STARTED, 1), (7, Outcome.OBSERVED, 960)],
            id="exposure completes",
        ),
        pytest.param(
            [(0, OB_POINT, 7), (1, STATE_POINT, "EXPOSING"), (300, STATE_POINT, "ABORTED"), (301, STATE_POINT, "IDLE")],
            [(7, Outcome.STARTED, 1), (7, Outcome.ABORTED, 300)],
            id="exposure aborted",
        ),
        pytest.param(
            [(0, STATE_POINT, "EXPOSING"), (10, STATE_POINT, "IDLE")],
            [],
            id="no OB loaded",
        ),
        pytest.param(
            [
                (0, OB_POINT, 7),
                (1, STATE_POINT, "EXPOSING"),
                (2, STATE_POINT, "EXPOSING"),
                (600, OB_POINT, 8),
                (601, STATE_POINT, "IDLE"),
            ],
            [(7, Outcome.STARTED, 1)],
            id="OB changed mid-exposure: no completion claimed for either",
        ),
    ],
)
def test_replayed_series(rows: list[tuple[int, str, object]], expected: list[tuple[int, Outcome, int]]) -> None:
    events = ExecutionTracker().feed(series(*rows))

    assert events == [ExecutionEvent(ob, outcome, T0 + timedelta(seconds=s)) for ob, outcome, s in expected]


def test_a_batch_is_read_in_time_order_and_bad_quality_ignored() -> None:
    good = series((0, OB_POINT, 3), (1, STATE_POINT, "EXPOSING"), (50, STATE_POINT, "IDLE"))
    bad = series((20, STATE_POINT, "ABORTED"), quality=Quality.BAD)
    other = series((5, "ntt.tcs.altitude", 45.0))
    batch = SampleBatch.from_samples([good[2], *bad, *other, good[1], good[0]])

    events = ExecutionTracker().feed_batch(batch)

    assert [(e.ob_id, e.outcome) for e in events] == [(3, Outcome.STARTED), (3, Outcome.OBSERVED)]


async def test_observed_obs_update_the_store_and_leave_the_plan(
    site: SiteConfig, config: SchedulerConfig, night: NightGrid
) -> None:
    engine = make_engine("sqlite://")
    upgrade(engine)
    store = ObStore(make_sessionmaker(engine), site=site)
    start = datetime.fromtimestamp(night.start_unix, tz=UTC)
    for mid in range(1, 30):
        store.create_auto_ob(
            data=AutoObCreate(
                mid=mid, target_name=f"AT{mid}", ra_deg=(mid * 12.0) % 360, dec_deg=-30.0, magnitude=17.0
            ),
            now=start,
        )
    bus = Bus(FakeRedis(server=FakeServer(), decode_responses=False))
    service = PlannerService(
        bus=bus,
        site=site,
        config=config,
        clock=FakeClock(start),
        store=store,
        obs=lambda: [ob.to_request() for ob in store.list(states=LIVE_STATES)],
        nights=lambda _: night,
    )
    plan = await service.plan_night(night_of_grid(night))
    first = int(plan.blocks[0].ob_id)
    t = plan.blocks[0].start
    samples = [
        Sample(point=OB_POINT, ts=t, value=first),
        Sample(point=STATE_POINT, ts=t + timedelta(seconds=1), value="EXPOSING"),
        Sample(point=STATE_POINT, ts=t + timedelta(minutes=10), value="IDLE"),
    ]
    await bus.redis.xadd(MON_SAMPLES, {PAYLOAD_FIELD: encode_samples(SampleBatch.from_samples(samples))})
    await bus.redis.xadd(MON_SAMPLES, {PAYLOAD_FIELD: b"garbage"})

    assert await service.samples_consumer().run_once() == 2

    assert store.get(ob_id=first).state is ObState.OBSERVED
    assert store.history(ob_id=first)[-1].actor == "telescope"
    trigger = PlanTrigger(
        kind="consequence",
        ts=t + timedelta(minutes=11),
        reason="seeing back",
        alarm_id="S:1",
        consequence=ConsequenceKind.SEEING_LIMIT,
        active=False,
    )
    replanned = await service.handle(trigger)
    assert replanned is not None
    assert str(first) not in {b.ob_id for b in replanned.blocks}
    engine.dispose()


def night_of_grid(night: NightGrid) -> date:
    return date.fromisoformat(night.night)
