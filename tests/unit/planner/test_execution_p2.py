"""Executions recorded in P2 reach the OB store: P2 statuses map to OB states, once, whichever path reports them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from planner.config import SchedulerConfig, SiteConfig
from planner.domain.execution import (
    OB_POINT,
    STATE_POINT,
    ExecutionEvent,
    ExecutionTracker,
    ObResolver,
    Outcome,
    ResolvedOb,
    next_state,
    p2_outcome,
)
from planner.domain.night import NightGrid
from planner.domain.reports import period_report
from planner.jobs import _log_morning_report
from planner.service import PlannerService
from planner.store import LIVE_STATES, AutoObCreate, ObCreate, ObState, ObStore, TimeShare
from skyops.bus import PAYLOAD_FIELD, Bus
from skyops.codec import encode_samples
from skyops.errors import NotFoundError
from skyops.messages import P2ObLinked, P2ObStatus, decode_p2_ob_update
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES, P2_OBS
from skyops.timeutil import FakeClock
from tests.support.bus import fake_server
from tests.unit.planner.conftest import NIGHT

T0 = datetime(2025, 3, 21, 2, 0, tzinfo=UTC)
STATES = ("queued", "scheduled", "observed", "failed", "expired", "deleted")

# --- pure mapping ----------------------------------------------------------------------------------

EXPECTED = {
    Outcome.OBSERVED: {"queued": "observed", "scheduled": "observed", "failed": "observed"},
    Outcome.ABORTED: {"scheduled": "queued"},
    Outcome.FAILED: {"queued": "failed", "scheduled": "failed"},
    Outcome.STARTED: {},
}


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("state", STATES)
def test_every_state_and_outcome(state: str, outcome: Outcome) -> None:
    assert next_state(state, outcome) == EXPECTED[outcome].get(state)


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("state", STATES)
def test_the_same_outcome_twice_changes_nothing_the_second_time(state: str, outcome: Outcome) -> None:
    after = next_state(state, outcome) or state
    assert next_state(after, outcome) is None


@pytest.mark.parametrize(
    ("status", "previous", "outcome"),
    [
        ("X", "S", Outcome.OBSERVED),
        ("X", "+", Outcome.OBSERVED),  # started and executed between two looks
        ("X", "", Outcome.OBSERVED),  # announced again at start-up
        ("A", "S", Outcome.ABORTED),
        ("S", "+", Outcome.STARTED),
        ("+", "S", Outcome.FAILED),  # a failed execution leaves the OB observable again
        ("+", "P", None),  # the sync submitted it: not an execution
        ("P", "+", None),  # revised
        ("+", "X", None),  # someone reset an executed OB
        ("D", "P", None),
    ],
)
def test_p2_statuses(status: str, previous: str, outcome: Outcome | None) -> None:
    assert p2_outcome(status, previous) is outcome


def test_resolver_prefers_p2_links_and_falls_back_to_planner_ids() -> None:
    resolver = ObResolver({9001: 7})
    assert resolver.resolve(9001) == ResolvedOb(7, 9001)
    assert resolver.resolve(8) == ResolvedOb(8, None)  # no link: the planner's own id
    assert resolver.resolve(7) is None  # OB 7 is in P2 as 9001: a 7 on the telescope is some other P2 OB
    resolver.link(ob_id=7, p2_ob_id=9002)  # re-created in P2
    assert resolver.resolve(9002) == ResolvedOb(7, 9002)
    assert resolver.resolve(9001) == ResolvedOb(9001, None)
    resolver.link(ob_id=8, p2_ob_id=9002)  # the P2 OB now holds another OB of ours
    assert resolver.resolve(9002) == ResolvedOb(8, 9002)
    assert resolver.resolve(7) == ResolvedOb(7, None)
    assert len(resolver) == 1


def test_tracker_names_the_planner_ob_of_a_p2_id() -> None:
    tracker = ExecutionTracker(ObResolver({9001: 7}))
    samples = [
        Sample(point=OB_POINT, ts=T0, value=9001),
        Sample(point=STATE_POINT, ts=T0 + timedelta(seconds=1), value="EXPOSING"),
        Sample(point=STATE_POINT, ts=T0 + timedelta(seconds=600), value="IDLE"),
        Sample(point=OB_POINT, ts=T0 + timedelta(seconds=700), value=7),  # OB 7 is P2 9001: not ours under 7
        Sample(point=STATE_POINT, ts=T0 + timedelta(seconds=701), value="EXPOSING"),
    ]
    events = tracker.feed_batch(SampleBatch.from_samples(samples))
    assert events == [
        ExecutionEvent(7, Outcome.STARTED, T0 + timedelta(seconds=1), 9001),
        ExecutionEvent(7, Outcome.OBSERVED, T0 + timedelta(seconds=600), 9001),
    ]
    assert tracker.unresolved == 1


def test_messages_round_trip_and_bad_ones_are_refused() -> None:
    link = P2ObLinked(ob_id="7", p2_ob_id=9001, p2_version='"ob-9001-3"', ts=T0)
    status = P2ObStatus(ob_id="7", p2_ob_id=9001, status="X", previous="S", ts=T0)
    assert decode_p2_ob_update(link.encode()) == link
    assert decode_p2_ob_update(status.encode()) == status
    for bad in (
        b"{not json",
        b'{"kind": "executed", "ob_id": "7", "p2_ob_id": 1, "ts": "2025-03-21T02:00:00Z"}',
        status.encode().replace(b'"p2_ob_id":9001', b'"p2_ob_id":-1'),
        status.encode().replace(b"02:00:00Z", b"02:00:00"),  # naive time
        link.encode().replace(b'"ob_id":"7"', b'"ob_id":""'),
        status.encode().replace(b'"status":"X"', b'"status":""'),
    ):
        with pytest.raises(ValidationError):
            decode_p2_ob_update(bad)


# --- store ---------------------------------------------------------------------------------------


@pytest.fixture
def store(site: SiteConfig) -> Iterator[ObStore]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield ObStore(make_sessionmaker(engine), site=site)
    engine.dispose()


def auto_ob(store: ObStore, mid: int, *, now: datetime = T0 - timedelta(days=1)) -> int:
    data = AutoObCreate(mid=mid, target_name=f"AT{mid}", ra_deg=(mid * 12.0) % 360, dec_deg=-30.0, magnitude=17.0)
    return store.create_auto_ob(data=data, now=now).id


def test_store_records_an_execution_once(store: ObStore) -> None:
    ob = auto_ob(store, 1)
    first = store.record_execution(ob_id=ob, outcome=Outcome.OBSERVED, now=T0, actor="p2")
    again = store.record_execution(ob_id=ob, outcome=Outcome.OBSERVED, now=T0 + timedelta(seconds=10),
                                   actor="telescope")
    late_abort = store.record_execution(ob_id=ob, outcome=Outcome.ABORTED, now=T0 + timedelta(minutes=5), actor="p2")
    assert first is not None and first.state is ObState.OBSERVED
    assert again is None and late_abort is None
    actions = [c.action for c in store.history(ob_id=ob)]
    assert actions == ["created", "execution_observed"]
    [record] = [r for r in store.report_records() if r.ob_id == ob]
    assert record.observed_at == T0
    with pytest.raises(NotFoundError):
        store.record_execution(ob_id=999, outcome=Outcome.OBSERVED, now=T0, actor="p2")


def test_store_links_are_idempotent_and_unique(store: ObStore) -> None:
    a, b = auto_ob(store, 1), auto_ob(store, 2)
    assert store.record_p2_link(ob_id=a, p2_ob_id=9001, p2_version="v1", now=T0, actor="ves_sync") is not None
    assert store.record_p2_link(ob_id=a, p2_ob_id=9001, p2_version="v1", now=T0, actor="ves_sync") is None
    assert store.record_p2_link(ob_id=a, p2_ob_id=9001, p2_version="v2", now=T0, actor="ves_sync") is not None
    assert store.p2_links() == {9001: a}
    store.record_p2_link(ob_id=b, p2_ob_id=9001, p2_version="v1", now=T0, actor="ves_sync")
    assert store.p2_links() == {9001: b}
    assert store.get(ob_id=a).p2_ob_id is None
    assert [c.action for c in store.history(ob_id=a)][-1] == "p2_unlinked"
    with pytest.raises(NotFoundError):
        store.record_p2_link(ob_id=999, p2_ob_id=9002, p2_version="v1", now=T0, actor="ves_sync")


# --- service: p2.obs and the telescope's points ------------------------------------------------------


@pytest.fixture
def bus() -> Bus:
    from fakeredis.aioredis import FakeRedis

    return Bus(FakeRedis(server=fake_server(), decode_responses=False))


@pytest.fixture
def clock(night: NightGrid) -> FakeClock:
    return FakeClock(datetime.fromtimestamp(night.start_unix, tz=UTC))


@pytest.fixture
def service(bus: Bus, store: ObStore, site: SiteConfig, config: SchedulerConfig, night: NightGrid,
            clock: FakeClock) -> PlannerService:
    return PlannerService(
        bus=bus, site=site, config=config, clock=clock,
        store=store, obs=lambda: [ob.to_request() for ob in store.list(states=LIVE_STATES)], nights=lambda _: night,
    )


async def put(bus: Bus, stream: str, *payloads: bytes) -> None:
    for payload in payloads:
        await bus.redis.xadd(stream, {PAYLOAD_FIELD: payload})


def exposure(p2_or_ob_id: int, start: datetime, seconds: float = 600.0) -> bytes:
    samples = [
        Sample(point=OB_POINT, ts=start, value=p2_or_ob_id),
        Sample(point=STATE_POINT, ts=start + timedelta(seconds=1), value="EXPOSING"),
        Sample(point=STATE_POINT, ts=start + timedelta(seconds=seconds), value="IDLE"),
    ]
    return encode_samples(SampleBatch.from_samples(samples))


async def test_links_and_p2_executions_move_the_store_once(
    service: PlannerService, bus: Bus, store: ObStore, night: NightGrid
) -> None:
    obs = [auto_ob(store, mid) for mid in (1, 2, 3)]
    eso = store.create_ob(
        data=ObCreate(ob_type="ESO", name="P112.A", target_name="HD 1", ra_deg=30.0, dec_deg=-40.0, exposure_s=900,
                      priority=2, programme="112.A-0001", time_share=TimeShare.ESO),
        now=T0 - timedelta(days=1), actor="science",
    ).id
    t = datetime.fromtimestamp(night.start_unix, tz=UTC) + timedelta(hours=2)
    links = [P2ObLinked(ob_id=str(ob), p2_ob_id=9000 + i, p2_version=f"v{i}", ts=t) for i, ob in enumerate(obs)]
    executed = P2ObStatus(ob_id=str(obs[0]), p2_ob_id=9000, status="X", previous="S", ts=t + timedelta(minutes=15),
                          execution_end=t + timedelta(minutes=12))
    await put(
        bus, P2_OBS,
        *(link.encode() for link in links),
        P2ObStatus(ob_id=str(obs[0]), p2_ob_id=9000, status="S", previous="+", ts=t).encode(),
        executed.encode(),
        executed.encode(),  # a status reported twice (e.g. announced again at start-up)
        P2ObStatus(ob_id=str(obs[1]), p2_ob_id=9001, status="A", previous="S", ts=t).encode(),
        P2ObStatus(ob_id=str(obs[2]), p2_ob_id=9002, status="+", previous="S", ts=t).encode(),
        P2ObLinked(ob_id=str(eso), p2_ob_id=9100, p2_version="v", ts=t).encode(),
        P2ObStatus(ob_id=str(eso), p2_ob_id=9100, status="X", previous="", ts=t).encode(),
        b"garbage",
        P2ObLinked(ob_id="soxs-ob-0001", p2_ob_id=9500, p2_version="v", ts=t).encode(),  # not a planner id
        P2ObLinked(ob_id="999", p2_ob_id=9501, p2_version="v", ts=t).encode(),  # not in the store
    )
    store.mark_planned(ob_ids=set(obs), now=t)

    consumer = service.p2_consumer()
    assert await consumer.run_once() == 13
    assert await bus.lag(P2_OBS, "planner-p2") == 0
    assert service.undecodable_p2 == 1

    states = {ob: store.get(ob_id=ob).state for ob in obs}
    assert states == {obs[0]: ObState.OBSERVED, obs[1]: ObState.QUEUED, obs[2]: ObState.FAILED}
    assert store.get(ob_id=eso).state is ObState.OBSERVED
    assert store.p2_links() == {9000: obs[0], 9001: obs[1], 9002: obs[2], 9100: eso}
    assert [c.action for c in store.history(ob_id=obs[0])].count("execution_observed") == 1
    # Observed when P2 says the execution ended, not when the sync saw the status move.
    [observed] = [r for r in store.report_records() if r.ob_id == obs[0]]
    assert observed.observed_at == t + timedelta(minutes=12)
    # A failed OB observed at its next try still counts, once.
    await put(bus, P2_OBS, P2ObStatus(ob_id=str(obs[2]), p2_ob_id=9002, status="X", previous="+",
                                      ts=t + timedelta(hours=1)).encode())
    await consumer.run_once()
    assert store.get(ob_id=obs[2]).state is ObState.OBSERVED

    first = datetime.combine(NIGHT, datetime.min.time(), tzinfo=UTC)
    report = period_report(store.report_records(), start=first, end=first + timedelta(days=2), dark_hours=10.0)
    exposures = store.get(ob_id=obs[0]).exposure_s + store.get(ob_id=obs[2]).exposure_s + 900
    assert report.science_hours == pytest.approx(exposures / 3600)
    assert (report.transient_hits, report.transient_misses) == (2, 0)
    assert report.proposals[0].observed == 1


async def test_live_points_of_a_p2_ob_leave_the_store_to_p2(
    service: PlannerService, bus: Bus, store: ObStore, night: NightGrid
) -> None:
    for mid in range(1, 30):
        auto_ob(store, mid)
    plan = await service.plan_night(date.fromisoformat(night.night))
    first, second = int(plan.blocks[0].ob_id), int(plan.blocks[1].ob_id)
    t = plan.blocks[0].start
    await put(bus, P2_OBS, P2ObLinked(ob_id=str(first), p2_ob_id=9001, p2_version="v1", ts=t).encode())
    await service.p2_consumer().run_once()

    # The telescope shows the P2 id: the plan learns at once, the store waits for P2's word.
    await put(bus, MON_SAMPLES, exposure(9001, t), exposure(second, t + timedelta(minutes=20)))
    await service.samples_consumer().run_once()
    assert store.get(ob_id=first).state is ObState.SCHEDULED
    planner = service.planner_for(date.fromisoformat(night.night))
    assert planner is not None
    # An OB with no P2 link has only the telescope as witness: its points move it.
    assert store.get(ob_id=second).state is ObState.OBSERVED

    await put(bus, P2_OBS, P2ObStatus(ob_id=str(first), p2_ob_id=9001, status="X", previous="S",
                                      ts=t + timedelta(minutes=11)).encode())
    await service.p2_consumer().run_once()
    assert store.get(ob_id=first).state is ObState.OBSERVED
    # Points replayed, then P2 announcing the execution again: nothing more is written.
    await put(bus, MON_SAMPLES, exposure(9001, t), exposure(second, t + timedelta(minutes=20)))
    await put(bus, P2_OBS, P2ObStatus(ob_id=str(first), p2_ob_id=9001, status="X", previous="", ts=t).encode())
    await service.samples_consumer().run_once()
    await service.p2_consumer().run_once()
    for ob in (first, second):
        assert [c.action for c in store.history(ob_id=ob)].count("execution_observed") == 1
    replanned = await service.plan_night(date.fromisoformat(night.night))
    assert {str(first), str(second)}.isdisjoint(b.ob_id for b in replanned.blocks)


async def test_links_are_loaded_from_the_store_on_restart(service: PlannerService, store: ObStore) -> None:
    ob = auto_ob(store, 1)
    store.record_p2_link(ob_id=ob, p2_ob_id=9001, p2_version="v1", now=T0, actor="ves_sync")
    assert service.resolver.resolve(9001) == ResolvedOb(ob, 9001)


async def test_a_store_failure_leaves_the_entry_pending(
    service: PlannerService, bus: Bus, store: ObStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ob = auto_ob(store, 1)
    await put(bus, P2_OBS, P2ObStatus(ob_id=str(ob), p2_ob_id=9001, status="X", previous="S", ts=T0).encode())

    def down(**_: object) -> None:
        raise ConnectionError("database down")

    monkeypatch.setattr(store, "record_execution", down)
    consumer = service.p2_consumer()
    await consumer.run_once()
    assert await bus.pending_count(P2_OBS, "planner-p2") == 1
    monkeypatch.undo()
    assert await consumer.run_once() == 1  # its own pending entry, retried
    assert store.get(ob_id=ob).state is ObState.OBSERVED


async def test_the_morning_report_says_what_was_executed(
    service: PlannerService, bus: Bus, store: ObStore, night: NightGrid, clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    executed, planned_only = auto_ob(store, 1), auto_ob(store, 2)
    store.mark_planned(ob_ids={executed, planned_only}, now=clock.now())
    t = clock.now() + timedelta(hours=3)
    await put(bus, P2_OBS, P2ObStatus(ob_id=str(executed), p2_ob_id=9001, status="X", previous="S", ts=t).encode())
    await service.p2_consumer().run_once()
    clock.set(datetime.fromtimestamp(night.start_unix, tz=UTC) + timedelta(hours=14))  # the next morning

    report = service.executed_report()
    assert report is not None
    assert report.science_hours == pytest.approx(store.get(ob_id=executed).exposure_s / 3600)
    assert report.transient_hits == 1
    assert 0 < report.duty_cycle < 1
    with caplog.at_level("INFO", logger="planner.jobs"):
        await _log_morning_report(service)
    assert "as executed" in caplog.text and '"hits": 1' not in caplog.text and "'hits': 1" in caplog.text
