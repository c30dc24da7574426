"""The planner service on an in-process bus: triggers in, plans out, with the reason; the nightly jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from planner.config import SchedulerConfig, SiteConfig
from planner.domain.night import NightGrid
from planner.jobs import AFTERNOON_PLAN, AUTO_CLEAN, MORNING_REPORT, build_jobs
from planner.service import PlannerService, night_of, revision_of, store_obs
from planner.store import AUTO_LIFETIME, LIVE_STATES, AutoObCreate, ObState, ObStore
from skyops.bus import PAYLOAD_FIELD, Bus
from skyops.messages import AzimuthSector, ConsequenceKind, PlanTrigger, decode_plan_event
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.streams import PLAN_EVENTS, PLAN_TRIGGERS
from skyops.timeutil import FakeClock
from tests.unit.planner.builders import random_requests
from tests.unit.planner.conftest import NIGHT


@pytest.fixture
def bus() -> Bus:
    return Bus(FakeRedis(server=FakeServer(), decode_responses=False))


@pytest.fixture
def clock(night: NightGrid) -> FakeClock:
    # The afternoon before the night, at the site.
    return FakeClock(datetime.fromtimestamp(night.start_unix, tz=UTC) - timedelta(hours=3))


@pytest.fixture
def store(site: SiteConfig) -> Iterator[ObStore]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield ObStore(make_sessionmaker(engine), site=site)
    engine.dispose()


@pytest.fixture
def service(
    bus: Bus, site: SiteConfig, config: SchedulerConfig, clock: FakeClock, night: NightGrid, store: ObStore
) -> PlannerService:
    requests = random_requests(150, seed=11)

    def obs() -> list:  # type: ignore[type-arg]
        return [*requests, *(ob.to_request() for ob in store.list(states=LIVE_STATES))]

    def nights(d: date) -> NightGrid:
        assert d == NIGHT
        return night

    return PlannerService(bus=bus, site=site, config=config, clock=clock, obs=obs, nights=nights, store=store)


def at(night: NightGrid, minute: int) -> datetime:
    return datetime.fromtimestamp(night.start_unix + 60.0 * minute, tz=UTC)


async def published(bus: Bus) -> list:  # type: ignore[type-arg]
    entries = await bus.redis.xrange(PLAN_EVENTS)
    return [decode_plan_event(fields[PAYLOAD_FIELD]) for _, fields in entries]


def test_night_of_is_the_local_date_of_the_evening(site: SiteConfig, night: NightGrid) -> None:
    assert night_of(site, at(night, 0)) == NIGHT
    assert night_of(site, at(night, night.n_minutes)) == NIGHT  # after local midnight, still that night


async def test_afternoon_plan_publishes_the_night(service: PlannerService, bus: Bus, night: NightGrid) -> None:
    event = await service.afternoon_plan()

    assert event.night == NIGHT.isoformat()
    assert event.reason == "afternoon plan"
    assert len(event.blocks) > 5
    assert all(a.end <= b.start for a, b in zip(event.blocks, event.blocks[1:], strict=False))
    assert event.blocks[0].start >= at(night, 0)
    assert await published(bus) == [event]


async def test_a_trigger_on_the_stream_replans_and_publishes_its_reason(
    service: PlannerService, bus: Bus, night: NightGrid
) -> None:
    first = await service.afternoon_plan()
    trigger = PlanTrigger(
        kind="consequence",
        ts=at(night, 240),
        reason="wind 18 m/s from the north",
        alarm_id="WindPointing.ASM:1",
        consequence=ConsequenceKind.POINTING_RESTRICTION,
        sector=AzimuthSector(start_deg=315, end_deg=45),
    )
    await bus.redis.xadd(PLAN_TRIGGERS, {PAYLOAD_FIELD: b"{not json"})
    await bus.redis.xadd(PLAN_TRIGGERS, {PAYLOAD_FIELD: trigger.encode()})
    consumer = service.consumer(block_ms=10)

    handled = await consumer.run_once()

    assert handled == 2
    events = await published(bus)
    assert [e.plan_id for e in events] == [first.plan_id, f"{NIGHT.isoformat()}#2"]
    replanned = events[-1]
    assert replanned.trigger == trigger
    assert "WindPointing.ASM:1" in replanned.reason and "pointing_restriction" in replanned.reason
    assert all(b.end > at(night, 240) for b in replanned.blocks)


async def test_a_bad_trigger_is_logged_with_its_reason(
    service: PlannerService, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    await bus.redis.xadd(
        PLAN_TRIGGERS, {PAYLOAD_FIELD: b'{"kind": "too", "ts": "2025-03-21T03:00:00Z", "reason": "x"}'}
    )

    with caplog.at_level(logging.ERROR):
        await service.consumer(block_ms=10).run_once()

    assert "names the OB" in caplog.text
    assert await published(bus) == []


async def test_a_too_from_the_store_goes_first(
    service: PlannerService, store: ObStore, clock: FakeClock, night: NightGrid
) -> None:
    await service.afternoon_plan()
    when = at(night, 300)
    # Right on the meridian at the trigger: observable at once.
    lst = float((night.era_at(night.point_times()[:1] + 300 * 60)[0] + night.longitude_rad) * 57.29577951308232) % 360
    too = store.create_auto_ob(
        data=AutoObCreate(mid=7, target_name="AT2025grb", ra_deg=lst, dec_deg=-30.0, magnitude=16.0), now=when
    )

    event = await service.handle(PlanTrigger(kind="too", ts=when, reason="GRB 250321A", ob_id=str(too.id)))

    assert event is not None
    assert event.blocks[0].ob_id == str(too.id)
    assert event.blocks[0].start - when <= timedelta(minutes=5)
    assert event.reason.startswith(f"ToO {too.id}")


async def test_a_too_for_an_unknown_ob_changes_nothing(
    service: PlannerService, bus: Bus, night: NightGrid, caplog: pytest.LogCaptureFixture
) -> None:
    await service.afternoon_plan()

    with caplog.at_level(logging.WARNING):
        event = await service.handle(PlanTrigger(kind="too", ts=at(night, 100), reason="GW", ob_id="99999"))

    assert event is None
    assert "99999" in caplog.text
    assert len(await published(bus)) == 1


async def test_jobs_clean_and_report(
    service: PlannerService, store: ObStore, clock: FakeClock, night: NightGrid
) -> None:
    old = store.create_auto_ob(
        data=AutoObCreate(mid=1, target_name="AT1", ra_deg=10.0, dec_deg=-30.0, magnitude=18.0),
        now=clock.now() - AUTO_LIFETIME,
    )
    expired = service.auto_clean()
    assert [ob.id for ob in expired] == [old.id]

    assert service.morning_report(NIGHT) is None
    await service.afternoon_plan()
    clock.set(at(night, night.n_minutes) + timedelta(hours=3))
    report = service.morning_report()

    assert report is not None
    assert report.night == NIGHT.isoformat()
    assert 0.5 < report.duty_cycle <= 1.0
    assert report.gto_exposure_h + report.eso_exposure_h == pytest.approx(report.exposure_minutes / 60.0)


def test_jobs_fire_at_local_site_time(service: PlannerService, site: SiteConfig) -> None:
    scheduler = build_jobs(service, site)

    jobs = {job.id: job for job in scheduler.get_jobs()}

    assert set(jobs) == {AFTERNOON_PLAN, AUTO_CLEAN, MORNING_REPORT}
    now = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)  # 09:00 in Chile (UTC-3)
    fire = jobs[AFTERNOON_PLAN].trigger.get_next_fire_time(None, now)
    assert fire.astimezone(UTC) == datetime(2025, 3, 20, 19, 0, tzinfo=UTC)


def test_store_obs_lists_only_live_obs(store: ObStore, site: SiteConfig) -> None:
    now = datetime(2025, 3, 20, tzinfo=UTC)
    kept = store.create_auto_ob(data=AutoObCreate(mid=1, target_name="a", ra_deg=1, dec_deg=-30, magnitude=17), now=now)
    gone = store.create_auto_ob(data=AutoObCreate(mid=2, target_name="b", ra_deg=2, dec_deg=-30, magnitude=17), now=now)
    store.delete_ob(ob_id=gone.id, now=now)

    assert [r.ob_id for r in store_obs(store)()] == [str(kept.id)]


async def test_planned_obs_are_scheduled_and_requeued_when_dropped(
    service: PlannerService, store: ObStore, night: NightGrid
) -> None:
    start = at(night, 0)
    ids = [
        store.create_auto_ob(
            data=AutoObCreate(mid=m, target_name=f"AT{m}", ra_deg=(m * 37.0) % 360, dec_deg=-30.0, magnitude=17.0),
            now=start - timedelta(days=1),
        ).id
        for m in range(1, 25)
    ]

    plan = await service.afternoon_plan()

    planned = {int(b.ob_id) for b in plan.blocks if b.ob_id.isdigit()}
    assert planned
    assert {ob.id for ob in store.list(states=(ObState.SCHEDULED,))} == planned
    assert store.history(ob_id=next(iter(planned)))[-1].changes == {"state": ["queued", "scheduled"]}

    trigger = PlanTrigger(
        kind="consequence", ts=at(night, 0), reason="rain", alarm_id="Rain:1", consequence=ConsequenceKind.CLOSE_DOME
    )
    await service.handle(trigger)

    assert {ob.id for ob in store.list(states=(ObState.QUEUED,))} == set(ids)


async def test_a_manual_replan_says_who_asked_for_it(service: PlannerService, bus: Bus, night: NightGrid) -> None:
    await service.afternoon_plan()
    trigger = PlanTrigger(kind="manual", ts=at(night, 60), reason="clouds coming in", user="sam")
    await bus.redis.xadd(PLAN_TRIGGERS, {PAYLOAD_FIELD: trigger.encode()})

    assert await service.consumer(block_ms=10).run_once() == 1

    replanned = (await published(bus))[-1]
    assert replanned.reason == "re-plan asked by sam: clouds coming in"


async def test_a_restarted_planner_goes_on_numbering_the_nights_plans(
    service: PlannerService, bus: Bus, site: SiteConfig, config: SchedulerConfig, clock: FakeClock, night: NightGrid
) -> None:
    await service.afternoon_plan()
    await service.afternoon_plan()
    restarted = PlannerService(bus=bus, site=site, config=config, clock=clock,
                               obs=lambda: random_requests(150, seed=11), nights=lambda d: night)

    event = await restarted.afternoon_plan()

    assert [e.plan_id for e in await published(bus)] == [f"{NIGHT.isoformat()}#{n}" for n in (1, 2, 3)]
    assert event.plan_id == f"{NIGHT.isoformat()}#3"


def test_revision_of_reads_the_nights_revision_only() -> None:
    assert revision_of("2026-11-21#12", "2026-11-21") == 12
    assert revision_of("2026-11-20#12", "2026-11-21") == 0
    with pytest.raises(ValueError, match="no revision"):
        revision_of("2026-11-21#x", "2026-11-21")
