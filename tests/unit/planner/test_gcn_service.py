"""The GCN trigger service on an in-process bus and SQLite: a good notice becomes a ToO OB planned first; the rest
are rejected with their reason, counted, and never crash it; the consumer loop commits only what is done."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from typer.testing import CliRunner

from config_db.gcn import GcnConfig, GcnSettings, TopicCriteria, load_gcn_config
from planner.cli import app
from planner.config import SchedulerConfig, SiteConfig
from planner.domain.gcn import Rejection
from planner.domain.night import NightGrid
from planner.gcn.consumer import GcnConsumer
from planner.gcn.factory import GcnConfigError, build
from planner.gcn.service import GcnMessage, GcnTriggerService, Outcome
from planner.gcn.store import GcnObIndex
from planner.service import PlannerService, store_obs
from planner.store import LIVE_STATES, ObState, ObStore, ObType
from skyops.bus import PAYLOAD_FIELD, Bus, StreamRetention
from skyops.messages import PlanTrigger, decode_plan_trigger
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.settings import Settings
from skyops.streams import PLAN_TRIGGERS
from skyops.timeutil import FakeClock
from tests.unit.planner.builders import random_requests
from tests.unit.planner.test_gcn_notices import DATA, GOOD_NIGHT, GOOD_NOW, GUANO_TOPIC, good_night, redated

__all__ = ["good_night"]  # the session fixture, shared with the notice tests

GOOD = "swift_bat_guano.loc_arcmin.json"
SVOM_TOPIC = "test.svom.mxt"


@pytest.fixture
def bus() -> Bus:
    return Bus(FakeRedis(server=FakeServer(), decode_responses=False))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(GOOD_NOW)


@pytest.fixture
def sessions(site: SiteConfig) -> Iterator[object]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def store(sessions: object, site: SiteConfig) -> ObStore:
    return ObStore(sessions, site=site)  # type: ignore[arg-type]


@pytest.fixture
def gcn_config() -> GcnConfig:
    shipped = load_gcn_config()
    return shipped.model_copy(update={"topics": {**shipped.topics, SVOM_TOPIC: TopicCriteria(kind="svom")}})


def nights_for(grid: NightGrid) -> object:
    def nights(night: date) -> NightGrid:
        assert night == GOOD_NIGHT, night
        return grid

    return nights


@pytest.fixture
def service(
    gcn_config: GcnConfig,
    store: ObStore,
    sessions: object,
    bus: Bus,
    site: SiteConfig,
    config: SchedulerConfig,
    clock: FakeClock,
    good_night: NightGrid,
) -> GcnTriggerService:
    return GcnTriggerService(
        config=gcn_config,
        store=store,
        index=GcnObIndex(sessions),  # type: ignore[arg-type]
        bus=bus,
        site=site,
        scheduler=config,
        clock=clock,
        nights=nights_for(good_night),  # type: ignore[arg-type]
    )


def message(payload: bytes | None, *, topic: str = GUANO_TOPIC, offset: int = 0, partition: int = 0) -> GcnMessage:
    return GcnMessage(topic=topic, partition=partition, offset=offset, value=payload)


def good(offset: int = 0, **changes: object) -> GcnMessage:
    return message(redated(GOOD, GOOD_NOW - timedelta(hours=1), **changes), offset=offset)


async def triggers(bus: Bus) -> list[PlanTrigger]:
    entries: Any = await bus.redis.xrange(PLAN_TRIGGERS)
    return [decode_plan_trigger(fields[PAYLOAD_FIELD]) for _, fields in entries]


async def test_good_notice_becomes_a_too_ob_and_a_trigger(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    decision = await service.handle(good())

    assert decision.outcome is Outcome.CREATED, decision
    [ob] = store.list()
    assert ob.id == decision.ob_id
    assert ob.ob_type is ObType.TOO and ob.state is ObState.QUEUED
    assert ob.name == "GCN swift_bat_guano:694215995"
    assert ob.target_name == "Swift BAT-GUANO 694215995"
    assert (ob.ra_deg, ob.dec_deg, ob.priority, ob.exposure_s) == (336.26, 25.139, 1, 1800)
    assert ob.programme == "SOXS-ToO-GCN"
    assert ob.setup["gcn_event"] == "swift_bat_guano:694215995"
    assert ob.setup["gcn_message"] == f"{GUANO_TOPIC}/0/0"
    assert ob.setup["gcn_error_radius_deg"] == 0.05
    assert ob.expires_at == GOOD_NOW + timedelta(hours=48)
    assert store.history(ob_id=ob.id)[0].actor == "gcn"
    [trigger] = await triggers(bus)
    assert (trigger.kind, trigger.ob_id, trigger.ts) == ("too", str(ob.id), GOOD_NOW)
    assert "694215995" in trigger.reason
    assert "observable from 2025-09-11" in decision.detail


async def test_the_replan_puts_the_too_first(
    service: GcnTriggerService,
    store: ObStore,
    bus: Bus,
    site: SiteConfig,
    config: SchedulerConfig,
    clock: FakeClock,
    good_night: NightGrid,
) -> None:
    others = random_requests(120, seed=3)
    planner = PlannerService(
        bus=Bus(FakeRedis(server=FakeServer(), decode_responses=False)),
        site=site,
        config=config,
        clock=clock,
        obs=lambda: [*others, *store_obs(store)()],
        nights=nights_for(good_night),  # type: ignore[arg-type]
        store=store,
    )
    await planner.plan_night(GOOD_NIGHT)  # the night was planned before the notice came
    clock.set(datetime(2025, 9, 11, 2, 30, tzinfo=UTC))  # the burst is up now

    decision = await service.handle(good())
    [trigger] = await triggers(bus)
    event = await planner.handle(trigger)

    assert event is not None
    upcoming = [b for b in event.blocks if b.start >= trigger.ts]
    assert upcoming[0].ob_id == str(decision.ob_id)
    assert upcoming[0].start - trigger.ts < timedelta(minutes=5)
    assert event.reason.startswith(f"ToO {decision.ob_id}: GCN Swift BAT-GUANO 694215995")
    assert store.get(ob_id=decision.ob_id or 0).state is ObState.SCHEDULED


async def test_a_retracted_too_leaves_the_plan_at_the_next_replan(
    service: GcnTriggerService,
    store: ObStore,
    bus: Bus,
    site: SiteConfig,
    config: SchedulerConfig,
    clock: FakeClock,
    good_night: NightGrid,
) -> None:
    others = random_requests(60, seed=4)
    planner = PlannerService(bus=Bus(FakeRedis(server=FakeServer(), decode_responses=False)), site=site,
                             config=config, clock=clock, obs=lambda: [*others, *store_obs(store)()],
                             nights=nights_for(good_night), store=store)  # type: ignore[arg-type]
    await planner.plan_night(GOOD_NIGHT)
    clock.set(datetime(2025, 9, 11, 2, 30, tzinfo=UTC))
    created = await service.handle(good())
    [too] = await triggers(bus)
    placed = await planner.handle(too)
    assert placed is not None and str(created.ob_id) in [b.ob_id for b in placed.blocks]
    clock.advance(timedelta(minutes=3))  # retracted while it is being observed

    await service.handle(message(redated("swift_bat_guano.retraction.json", GOOD_NOW), offset=1))
    _, change = await triggers(bus)
    replanned = await planner.handle(change)

    assert replanned is not None
    assert replanned.reason == f"OB {created.ob_id} changed: GCN Swift BAT-GUANO 694215995 retracted"
    upcoming = [b.ob_id for b in replanned.blocks if b.end > clock.now()]
    assert str(created.ob_id) not in upcoming and upcoming


async def test_a_second_notice_of_the_same_event_no_better_placed_is_a_duplicate(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    first = await service.handle(good(offset=0))
    later = await service.handle(good(offset=7, record_number=4, ra=336.3, ra_uncertainty=[0.05]))

    assert later.outcome is Outcome.REJECTED and later.rejection is Rejection.DUPLICATE
    assert f"already became OB {first.ob_id} (queued)" in later.detail
    [ob] = store.list()
    assert (ob.ra_deg, ob.dec_deg) == (336.26, 25.139)  # a coarser alert never undoes a finer one
    assert len(await triggers(bus)) == 1


async def test_a_later_notice_with_a_smaller_error_moves_the_ob_and_asks_for_a_replan(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    first = await service.handle(good(offset=0))
    refined = await service.handle(good(offset=7, record_number=4, ra=336.2712, dec=25.1301, ra_uncertainty=[0.01]))

    assert refined.outcome is Outcome.REFINED and refined.ob_id == first.ob_id, refined
    assert "error radius 0.05° → 0.01°" in refined.detail
    [ob] = store.list()
    assert (ob.ra_deg, ob.dec_deg, ob.setup["gcn_error_radius_deg"]) == (336.2712, 25.1301, 0.01)
    assert [c.action for c in store.history(ob_id=ob.id)] == ["created", "refined"]
    _, change = await triggers(bus)
    assert (change.kind, change.ob_id) == ("ob_change", str(ob.id))
    assert change.reason == "GCN Swift BAT-GUANO 694215995 position refined"
    # The refining message redelivered (its offset was not committed): the trigger again, no second move.
    again = await service.handle(good(offset=7, record_number=4, ra=336.2712, dec=25.1301, ra_uncertainty=[0.01]))
    assert again.outcome is Outcome.REDELIVERED
    assert [c.action for c in store.history(ob_id=ob.id)] == ["created", "refined"]
    assert [t.kind for t in await triggers(bus)] == ["too", "ob_change", "ob_change"]


async def test_the_same_message_again_publishes_the_trigger_again_without_a_second_ob(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    first = await service.handle(good(offset=3))
    again = await service.handle(good(offset=3))

    assert again.outcome is Outcome.REDELIVERED and again.ob_id == first.ob_id
    assert len(store.list()) == 1
    assert [t.ob_id for t in await triggers(bus)] == [str(first.ob_id)] * 2


async def test_a_late_redelivery_still_gets_its_trigger_though_the_notice_is_now_too_old(
    service: GcnTriggerService, store: ObStore, bus: Bus, clock: FakeClock
) -> None:
    first = await service.handle(good(offset=4))
    clock.advance(timedelta(hours=30))  # e.g. the consumer was down for a day before committing

    again = await service.handle(good(offset=4))

    assert again.outcome is Outcome.REDELIVERED and again.ob_id == first.ob_id
    assert [t.ts for t in await triggers(bus)] == [GOOD_NOW, GOOD_NOW + timedelta(hours=30)]


class FailingOnceBus(Bus):
    def __init__(self, bus: Bus) -> None:
        super().__init__(bus.redis)
        self.failures = 1

    async def publish(self, stream: str, payload: bytes, *, retention: StreamRetention) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis went away")
        return await super().publish(stream, payload, retention=retention)


async def test_a_bus_failure_raises_and_the_retry_completes_the_trigger(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    service._bus = FailingOnceBus(bus)

    with pytest.raises(ConnectionError):
        await service.handle(good(offset=5))
    retried = await service.handle(good(offset=5))

    assert retried.outcome is Outcome.REDELIVERED
    assert len(store.list()) == 1
    assert [t.ob_id for t in await triggers(bus)] == [str(retried.ob_id)]


async def test_a_retraction_deletes_the_live_too_ob(service: GcnTriggerService, store: ObStore, bus: Bus) -> None:
    created = await service.handle(good())
    retraction = message(redated("swift_bat_guano.retraction.json", GOOD_NOW), offset=1)

    decision = await service.handle(retraction)

    assert decision.outcome is Outcome.RETRACTED and decision.ob_id == created.ob_id
    assert store.get(ob_id=created.ob_id or 0).state is ObState.DELETED
    assert not store.list(states=LIVE_STATES)
    _, change = await triggers(bus)  # the planner re-plans without it
    assert (change.kind, change.ob_id) == ("ob_change", str(created.ob_id))
    assert "retracted" in change.reason
    # A retraction redelivered, or after the OB is gone, is only a rejection.
    again = await service.handle(retraction)
    assert again.rejection is Rejection.RETRACTION


async def test_a_retraction_without_an_ob_is_rejected(service: GcnTriggerService, store: ObStore) -> None:
    decision = await service.handle(message((DATA / "swift_bat_guano.retraction.json").read_bytes()))

    assert decision.rejection is Rejection.RETRACTION
    assert not store.list()


@pytest.mark.parametrize(
    ("payload", "topic", "rejection", "detail"),
    [
        (b"{not json", GUANO_TOPIC, Rejection.MALFORMED, "not a swift_bat_guano notice: not JSON"),
        (None, GUANO_TOPIC, Rejection.MALFORMED, "empty"),
        (b'{"id": [1], "ra": 999, "dec": 0}', GUANO_TOPIC, Rejection.MALFORMED, "ra: Input should be less"),
        (b'{"id": [1]}', "gcn.notices.unknown", Rejection.UNKNOWN_TOPIC, "not configured"),
    ],
)
async def test_bad_messages_are_rejected_with_the_reason(
    service: GcnTriggerService,
    store: ObStore,
    payload: bytes | None,
    topic: str,
    rejection: Rejection,
    detail: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="planner.gcn.service")

    decision = await service.handle(message(payload, topic=topic))

    assert decision.rejection is rejection
    assert detail in decision.detail
    assert not store.list()
    assert service.stats.rejections[rejection.value] == 1
    assert any(rejection.value in r.getMessage() and detail in r.getMessage() for r in caplog.records)


async def test_a_notice_that_set_for_the_night_is_rejected(
    service: GcnTriggerService, store: ObStore, clock: FakeClock
) -> None:
    clock.set(datetime(2025, 9, 11, 6, 30, tzinfo=UTC))

    decision = await service.handle(message(redated(GOOD, clock.now() - timedelta(hours=1))))

    assert decision.rejection is Rejection.NOT_OBSERVABLE
    assert "never met: airmass ≤ 2" in decision.detail
    assert not store.list()


async def test_every_stored_example_meets_its_fate_and_is_counted(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    topics = {
        "swift_bat_guano": GUANO_TOPIC,
        "einstein_probe": "gcn.notices.einstein_probe.wxt.alert",
        "icecube.gold": "gcn.notices.icecube.gold_bronze_track_alerts",
        "icecube.lvk": "gcn.notices.icecube.lvk_nu_track_search",
        "igwn": "igwn.gwalert",
        "svom": SVOM_TOPIC,
    }
    files = sorted(DATA.glob("*.json"))
    for offset, path in enumerate(files):
        topic = next(t for prefix, t in topics.items() if path.name.startswith(prefix))
        await service.handle(message(redated(path.name, GOOD_NOW - timedelta(hours=1)), topic=topic, offset=offset))

    assert service.stats.received == len(files) == 10
    # In file order the GUANO arcmin notice creates the OB, and the GUANO retraction that follows deletes it.
    assert service.stats.outcomes == {"created": 1, "retracted": 1, "rejected": 8}
    assert service.stats.rejections == {
        "error_too_large": 3,  # both IceCube tracks, SVOM MXT
        "test": 3,  # IGWN mock preliminary and retraction, SVOM ECLAIRs test
        "snr_too_low": 1,  # Einstein Probe (the example's S/N of 1)
        "no_position": 1,  # GUANO sky map
    }
    [ob] = store.list()
    assert ob.name == "GCN swift_bat_guano:694215995" and ob.state is ObState.DELETED
    assert [t.kind for t in await triggers(bus)] == ["too", "ob_change"]


class ListSource:
    """Messages from a list, recording commits and rewinds (the real adapter is tested on the mock cluster)."""

    def __init__(self, messages: list[GcnMessage]) -> None:
        self.pending = list(messages)
        self.committed: list[str] = []

    def poll(self, max_messages: int, timeout_s: float) -> list[GcnMessage]:
        batch, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        return batch

    def commit(self, message: GcnMessage) -> bool:
        self.committed.append(message.ref)
        return True

    def rewind(self, messages: Sequence[GcnMessage]) -> None:
        self.pending = [*messages, *self.pending]

    def lag(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        self.pending = []


async def test_the_loop_commits_each_message_after_it_is_handled_and_rewinds_on_failure(
    service: GcnTriggerService, store: ObStore, bus: Bus
) -> None:
    batch = [message(b"{bad", offset=0), good(offset=1), message(b"[]", offset=2)]
    source = ListSource(batch)
    service._bus = FailingOnceBus(bus)
    loop = GcnConsumer(source, service, max_batch=10, poll_timeout_s=0.1, retry_backoff_s=0.01)

    with pytest.raises(ConnectionError):
        await loop.run_once()
    assert source.committed == [f"{GUANO_TOPIC}/0/0"]  # the bad one is done; the failed one and after are not
    assert [m.offset for m in source.pending] == [1, 2]

    decisions = await loop.run_once()

    assert [d.outcome for d in decisions] == [Outcome.REDELIVERED, Outcome.REJECTED]
    assert source.committed == [f"{GUANO_TOPIC}/0/{i}" for i in range(3)]
    assert len(store.list()) == 1 and len(await triggers(bus)) == 1


def test_cli_dry_run_of_notice_files(tmp_path: Path) -> None:
    fresh = tmp_path / "guano.json"
    fresh.write_bytes(redated(GOOD, GOOD_NOW - timedelta(hours=1)))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")

    result = CliRunner().invoke(
        app,
        ["gcn", str(fresh), str(DATA / "swift_bat_guano.loc_map.json"), str(bad), "--topic", GUANO_TOPIC,
         "--at", "2025-09-10T23:30:00Z"],
        env={"COLUMNS": "300"},
    )

    assert result.exit_code == 0, result.output
    assert "ToO OB" in result.output and "observable from 2025-09-11" in result.output
    assert "no_position" in result.output
    assert "malformed" in result.output


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--topic", "nope"], "nope is not in"),
        (["--topic", GUANO_TOPIC, "--at", "yesterday"], "not an ISO 8601 time"),
        (["--topic", GUANO_TOPIC, "--at", "2025-09-10T23:30:00"], "no time zone"),
    ],
)
def test_cli_refuses_bad_options(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, ["gcn", str(DATA / GOOD), *args], env={"COLUMNS": "300"})

    assert result.exit_code == 2
    assert problem in result.output


async def test_run_retries_after_a_failure_and_stops_when_told(
    service: GcnTriggerService, store: ObStore, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()

    class StoppingSource(ListSource):
        def poll(self, max_messages: int, timeout_s: float) -> list[GcnMessage]:
            batch = super().poll(max_messages, timeout_s)
            if not batch:
                stop.set()
            return batch

    source = StoppingSource([good(offset=0)])
    service._bus = FailingOnceBus(bus)
    loop = GcnConsumer(source, service, max_batch=10, poll_timeout_s=0.1, retry_backoff_s=0.001)

    await asyncio.wait_for(loop.run(stop), timeout=10)

    assert loop.failures == 1
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert source.committed == [f"{GUANO_TOPIC}/0/0"]
    assert len(store.list()) == 1 and len(await triggers(bus)) == 1


def test_build_refuses_gcn_kafka_without_credentials(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, sql_url=f"sqlite:///{tmp_path / 'opdb.sqlite3'}")

    with pytest.raises(GcnConfigError, match="SKYOPS_GCN_CLIENT_ID"):
        build(settings, bus=Bus(FakeRedis(server=FakeServer())), clock=FakeClock(GOOD_NOW), gcn=GcnSettings())


async def test_build_wires_a_given_source(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, sql_url=f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    source = ListSource([])

    built = build(settings, bus=Bus(FakeRedis(server=FakeServer())), clock=FakeClock(GOOD_NOW), source=source)
    try:
        assert built.source is source
        assert GUANO_TOPIC in built.service.topics
        assert await built.lag() == 0
    finally:
        built.close()
    assert source.pending == []


async def test_refining_refuses_a_gone_ob_and_an_impossible_position(
    service: GcnTriggerService, store: ObStore, clock: FakeClock
) -> None:
    created = await service.handle(good())
    ob_id = created.ob_id or 0
    with pytest.raises(ValueError, match="ra_deg"):
        store.refine_position(ob_id=ob_id, ra_deg=400.0, dec_deg=0.0, setup={}, now=clock.now(), actor="gcn")
    store.delete_ob(ob_id=ob_id, now=clock.now(), actor="test")
    with pytest.raises(ValueError, match=f"OB {ob_id} is deleted: only a live OB can be refined"):
        store.refine_position(ob_id=ob_id, ra_deg=1.0, dec_deg=0.0, setup={}, now=clock.now(), actor="gcn")
