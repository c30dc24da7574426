"""The GCN consumer against librdkafka's built-in mock cluster: real example notices in, one ToO OB and one trigger
out, the rest rejected with reasons; offsets committed only after the OB is stored, so restarts lose nothing and
never make two OBs of one notice."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import confluent_kafka
import gcn_kafka
import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from config_db.gcn import GcnConfig, KafkaConfig, NoticeKind, TopicCriteria, load_gcn_config
from planner.domain.gcn import Rejection
from planner.domain.night import NightGrid
from planner.gcn.factory import GcnTriggers, build
from planner.gcn.kafka import GcnKafkaSource
from planner.gcn.service import Decision, GcnMessage, Outcome
from planner.store import ObState, ObStore
from skyops.bus import PAYLOAD_FIELD, Bus, StreamRetention, open_redis
from skyops.messages import PlanTrigger, decode_plan_trigger
from skyops.settings import Settings
from skyops.streams import PLAN_TRIGGERS
from skyops.timeutil import FakeClock
from tests.support.opdb import postgres_schema_engine
from tests.unit.planner.test_gcn_notices import GOOD_NIGHT, GOOD_NOW, GUANO_TOPIC, redated

pytestmark = pytest.mark.integration

DRAIN_TIMEOUT_S = 40.0  # the mock cluster's group join takes a few seconds
FRESH = GOOD_NOW - timedelta(hours=1)
ABSENT_TOPIC = "gcn.notices.svom.absent"
TOPIC_OF = {
    "swift_bat_guano": GUANO_TOPIC,
    "einstein_probe": "gcn.notices.einstein_probe.wxt.alert",
    "icecube.gold": "gcn.notices.icecube.gold_bronze_track_alerts",
    "icecube.lvk": "gcn.notices.icecube.lvk_nu_track_search",
    "igwn": "igwn.gwalert",
}
# Everything but the retraction, which would delete the OB again (the unit tests cover it).
NOTICES = [
    "swift_bat_guano.loc_map.json",
    "swift_bat_guano.loc_arcmin.json",
    "einstein_probe.wxt.alert.json",
    "icecube.gold_bronze_track_alerts.json",
    "icecube.lvk_nu_track_search.json",
    "igwn.gwalert.preliminary.json",
]


@pytest.fixture(scope="module")
def good_night() -> NightGrid:
    from planner.config import load_site
    from planner.ephemeris import compute_night

    return compute_night(load_site(), GOOD_NIGHT)


@pytest.fixture
def bootstrap() -> Iterator[str]:
    """A one-broker mock cluster on loopback; it lives as long as the client that created it."""
    owner = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    brokers = owner.list_topics(timeout=10).brokers
    yield ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    owner.flush(5)
    del owner


def produce(bootstrap: str, messages: list[tuple[str, bytes]]) -> None:
    # GCN's own producer settings (zstd compression), pointed at the mock broker.
    producer = gcn_kafka.Producer({"bootstrap.servers": bootstrap, "security.protocol": "plaintext"})
    for topic, value in messages:
        producer.produce(topic, value, partition=0)  # one partition: the order of a topic is kept
    assert producer.flush(10) == 0


def notices() -> list[tuple[str, bytes]]:
    out = [(TOPIC_OF[next(p for p in TOPIC_OF if name.startswith(p))], redated(name, FRESH)) for name in NOTICES]
    return [*out, (GUANO_TOPIC, b"{this is not json"), (GUANO_TOPIC, redated("swift_bat_guano.loc_arcmin.json", FRESH))]


def sentinels() -> list[tuple[str, bytes]]:
    """One malformed message per topic, produced after the rest: once all are seen, every earlier one was too."""
    return [(topic, b"sentinel") for topic in TOPIC_OF.values()]


def gcn_config(bootstrap: str, group: str) -> GcnConfig:
    shipped = load_gcn_config()
    return shipped.model_copy(
        update={
            "topics": {
                **{t: c for t, c in shipped.topics.items() if t in TOPIC_OF.values()},
                # Subscribed but never produced to: the broker reports it unknown, and the consumer carries on.
                ABSENT_TOPIC: TopicCriteria(kind=NoticeKind.SVOM),
            },
            "kafka": KafkaConfig(
                group_id=group,
                poll_timeout_s=0.5,
                retry_backoff_s=0.05,
                properties={
                    "bootstrap.servers": bootstrap,
                    "security.protocol": "plaintext",
                    "log_level": 3,
                    # The mock coordinator completes a restarted member's join only when the old session
                    # expires (LeaveGroup or not): keep that short so a restart takes seconds, not 45 s.
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 500,
                },
            ),
        }
    )


@pytest.fixture
def bus() -> Bus:
    return Bus(FakeRedis(server=FakeServer(), decode_responses=False))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path, sql_url=f"sqlite:///{tmp_path / 'opdb.sqlite3'}")


class Consumers:
    """Builds consumers of one group, as restarts of `skyops run gcn` would; closes them all in teardown."""

    def __init__(self, settings: Settings, bus: Bus, night: NightGrid, bootstrap: str) -> None:
        self.settings, self.bus, self.night = settings, bus, night
        self.config = gcn_config(bootstrap, f"skyops-test-{uuid.uuid4().hex[:8]}")
        self.open: list[GcnTriggers] = []

    def start(self, *, source: GcnKafkaSource | None = None) -> GcnTriggers:
        def nights(night: date) -> NightGrid:
            assert night == GOOD_NIGHT
            return self.night

        built = build(
            self.settings, bus=self.bus, clock=FakeClock(GOOD_NOW), config=self.config, source=source, nights=nights
        )
        self.open.append(built)
        return built

    def stop(self, built: GcnTriggers) -> None:
        self.open.remove(built)
        built.close()


@pytest.fixture
def consumers(settings: Settings, bus: Bus, good_night: NightGrid, bootstrap: str) -> Iterator[Consumers]:
    made = Consumers(settings, bus, good_night, bootstrap)
    yield made
    for built in list(made.open):
        made.stop(built)


async def drain(built: GcnTriggers, *, sentinels_expected: int) -> list[Decision]:
    """Run the consumer until it has seen every topic's sentinel (bounded in time)."""
    decisions: list[Decision] = []
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while sum(map(_is_sentinel, decisions)) < sentinels_expected:
        assert time.monotonic() < deadline, f"only {decisions}"
        decisions.extend(await built.consumer.run_once())
    return decisions


def _is_sentinel(decision: Decision) -> bool:
    # b"sentinel" is the only message whose JSON error is "Expecting value" (the other bad one starts with "{").
    return decision.rejection is Rejection.MALFORMED and "Expecting value" in decision.detail


async def triggers(bus: Bus) -> list[PlanTrigger]:
    entries: Any = await bus.redis.xrange(PLAN_TRIGGERS)
    return [decode_plan_trigger(f[PAYLOAD_FIELD]) for _, f in entries]


def store_of(built: GcnTriggers) -> ObStore:
    return built.service._store


async def test_good_notice_becomes_one_too_ob_and_the_rest_are_rejected(
    bootstrap: str, consumers: Consumers, bus: Bus
) -> None:
    produce(bootstrap, [*notices(), *sentinels()])
    first = consumers.start()

    decisions = await drain(first, sentinels_expected=len(TOPIC_OF))

    by_outcome = {o: [d for d in decisions if d.outcome is o] for o in Outcome}
    [created] = by_outcome[Outcome.CREATED]
    assert created.event_key == "swift_bat_guano:694215995"
    reasons = sorted(d.rejection.value for d in by_outcome[Outcome.REJECTED] if d.rejection and not _is_sentinel(d))
    assert reasons == sorted(
        ["no_position", "snr_too_low", "error_too_large", "error_too_large", "test", "malformed", "duplicate"]
    )
    [ob] = store_of(first).list()
    assert ob.id == created.ob_id and ob.setup["gcn_message"] == f"{GUANO_TOPIC}/0/1"
    [trigger] = await triggers(bus)
    assert (trigger.kind, trigger.ob_id) == ("too", str(ob.id))
    assert first.service.stats.received == len(NOTICES) + 2 + len(TOPIC_OF)

    # Everything read is committed; what arrives next is the lag `skyops status` shows.
    assert await first.lag() == 0
    produce(bootstrap, sentinels())
    assert await first.lag() == len(TOPIC_OF)

    # A restart of the same group resumes after the committed offsets: nothing is read twice.
    consumers.stop(first)
    second = consumers.start()
    again = await drain(second, sentinels_expected=len(TOPIC_OF))

    assert all(_is_sentinel(d) for d in again), again
    assert len(store_of(second).list()) == 1
    assert len(await triggers(bus)) == 1


class CrashBeforeCommit(GcnKafkaSource):
    """The process dies after storing OBs but before any offset is committed."""

    def commit(self, message: GcnMessage) -> bool:
        return False


async def test_a_crash_before_the_commit_loses_nothing_and_makes_no_second_ob(
    bootstrap: str, consumers: Consumers, bus: Bus
) -> None:
    produce(bootstrap, [*notices(), *sentinels()])
    crashing = CrashBeforeCommit.connect(consumers.config.kafka, list(consumers.config.topics))
    first = consumers.start(source=crashing)
    await drain(first, sentinels_expected=len(TOPIC_OF))
    [ob] = store_of(first).list()
    consumers.stop(first)

    second = consumers.start()
    replayed = await drain(second, sentinels_expected=len(TOPIC_OF))

    [redelivered] = [d for d in replayed if d.outcome is Outcome.REDELIVERED]
    assert redelivered.ob_id == ob.id
    assert not [d for d in replayed if d.outcome is Outcome.CREATED]
    assert [o.id for o in store_of(second).list()] == [ob.id]
    # The trigger is published again, in case the crash came before it: the planner re-plans once more.
    assert [t.ob_id for t in await triggers(bus)] == [str(ob.id)] * 2

    consumers.stop(second)
    produce(bootstrap, sentinels())
    third = consumers.start()
    assert all(_is_sentinel(d) for d in await drain(third, sentinels_expected=len(TOPIC_OF)))


class FailingOnceBus(Bus):
    def __init__(self, bus: Bus) -> None:
        super().__init__(bus.redis)
        self.failures = 1

    async def publish(self, stream: str, payload: bytes, *, retention: StreamRetention) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis went away")
        return await super().publish(stream, payload, retention=retention)


async def test_a_failure_mid_batch_rewinds_and_the_notice_comes_again(
    bootstrap: str, consumers: Consumers, bus: Bus
) -> None:
    produce(bootstrap, [(GUANO_TOPIC, redated("swift_bat_guano.loc_arcmin.json", FRESH)), *sentinels()])
    built = consumers.start()
    built.service._bus = FailingOnceBus(bus)

    stats = built.service.stats
    failures = 0
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    # Decisions of a failed batch's earlier messages are committed but not returned: count them in the stats.
    while stats.rejections["malformed"] < len(TOPIC_OF):
        assert time.monotonic() < deadline, stats
        try:
            await built.consumer.run_once()
        except ConnectionError:
            failures += 1

    assert failures == 1
    assert stats.outcomes == {"redelivered": 1, "rejected": len(TOPIC_OF)}
    [ob] = store_of(built).list()
    assert ob.state is ObState.QUEUED
    assert [t.ob_id for t in await triggers(bus)] == [str(ob.id)]


@pytest.fixture
async def redis_bus(redis_url: str) -> AsyncIterator[tuple[Bus, str]]:
    stream = f"test.plan.triggers.{uuid.uuid4().hex[:10]}"
    redis = open_redis(redis_url)
    try:
        yield Bus(redis), stream
    finally:
        await redis.delete(stream)
        await redis.aclose()


async def test_on_real_redis_and_postgresql_a_crash_before_commit_makes_one_ob(
    bootstrap: str, good_night: NightGrid, redis_bus: tuple[Bus, str], postgres_url: str, tmp_path: Path
) -> None:
    bus, stream = redis_bus
    produce(bootstrap, [(GUANO_TOPIC, redated("swift_bat_guano.loc_arcmin.json", FRESH)), *sentinels()])
    with postgres_schema_engine(postgres_url) as engine:
        settings = Settings(var_dir=tmp_path, sql_url=engine.url.render_as_string(hide_password=False))
        made = Consumers(settings, bus, good_night, bootstrap)
        try:
            crashing = CrashBeforeCommit.connect(made.config.kafka, list(made.config.topics))
            first = made.start(source=crashing)
            first.service._triggers_stream = stream
            [created] = [d for d in await drain(first, sentinels_expected=len(TOPIC_OF)) if d.ob_id is not None]
            made.stop(first)

            second = made.start()
            second.service._triggers_stream = stream
            [redelivered] = [d for d in await drain(second, sentinels_expected=len(TOPIC_OF)) if d.ob_id is not None]

            [ob] = store_of(second).list()
        finally:
            for built in list(made.open):
                made.stop(built)

    assert (created.outcome, redelivered.outcome) == (Outcome.CREATED, Outcome.REDELIVERED)
    assert created.ob_id == redelivered.ob_id == ob.id
    assert ob.setup["gcn_event"] == "swift_bat_guano:694215995"
    entries: Any = await bus.redis.xrange(stream)
    assert [decode_plan_trigger(f[PAYLOAD_FIELD]).ob_id for _, f in entries] == [str(ob.id)] * 2
