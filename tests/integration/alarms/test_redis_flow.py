"""The alarm service end to end on real Redis: rules, events, archive, plan triggers, operator actions, restart."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alarms.api import AlarmService
from alarms.commands import AlarmCommandError
from alarms.config import load_alarms
from alarms.dispatcher import AlarmDispatcher, NotificationService
from alarms.domain.notify import Notification, NotificationPolicy, Outbox
from alarms.domain.state import AlarmStatus
from alarms.factory import build_engine
from alarms.store import AlarmStateStore
from alarms.supervisor import AlarmSupervisor, SupervisorOptions
from skyops import codec
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import PAYLOAD_FIELD, Bus, StreamRetention, open_redis
from skyops.messages import ConsequenceKind, decode_plan_trigger
from skyops.records import AlarmSeverity, Sample, SampleBatch
from skyops.timeutil import US_PER_S, FakeClock

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
RETENTION = StreamRetention(max_len=1000, max_age=timedelta(days=1))


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)


@pytest.fixture
async def env(redis_url: str) -> AsyncIterator[dict[str, Any]]:
    """A real Redis with stream names and keys private to this test, removed afterwards."""
    tag = uuid.uuid4().hex[:12]
    redis = open_redis(redis_url)
    clock = FakeClock(T0)
    names = {
        "samples": f"test.{tag}.mon.samples", "events": f"test.{tag}.alarm.events",
        "triggers": f"test.{tag}.plan.triggers", "commands": f"test.{tag}.alarm.commands",
        "live": f"test.{tag}.live.alarms", "prefix": f"test.{tag}.",
    }
    yield {"redis": redis, "bus": Bus(redis, clock=clock), "clock": clock, **names}
    keys = [k async for k in redis.scan_iter(match=f"test.{tag}.*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def supervisor(env: dict[str, Any]) -> AlarmSupervisor:
    options = SupervisorOptions(
        samples_stream=env["samples"], events_stream=env["events"], triggers_stream=env["triggers"],
        commands_stream=env["commands"], block_ms=50,
    )
    store = AlarmStateStore(env["redis"], prefix=env["prefix"])
    return AlarmSupervisor(build_engine(load_alarms(), env["clock"]), env["bus"], store, env["clock"], options)


async def entries(env: dict[str, Any], stream: str) -> list[bytes]:
    raw: Any = await env["redis"].xrange(stream)
    return [bytes(fields[PAYLOAD_FIELD]) for _, fields in raw]


async def test_the_la_silla_rules_on_real_redis(env: dict[str, Any]) -> None:
    bus: Bus = env["bus"]
    clock: FakeClock = env["clock"]
    sup = supervisor(env)
    await sup.start()
    # Strong wind from the north-east for two minutes: WindSpeed (60 s delay) and the pointing restriction.
    for step in range(13):
        ts = T0 + timedelta(seconds=10 * step)
        clock.set(ts)
        batch = SampleBatch.from_samples([
            Sample("lasilla.asm.wind_speed", ts, 21.0), Sample("lasilla.asm.wind_direction", ts, 45.0),
            Sample("lasilla.asm.humidity", ts, 20.0), Sample("ntt.tcs.azimuth", ts, 200.0),
        ])
        await bus.publish(env["samples"], codec.encode_samples(batch), retention=RETENTION)
        await sup.samples.run_once()
        await sup.tick()

    events = [e for p in await entries(env, env["events"]) for e in codec.decode_alarm_events(p)]
    raised = {(e.alarm_id, e.severity) for e in events if e.action == "raise"}
    assert ("WindSpeed.ASM:1", AlarmSeverity.CRITICAL) in raised
    assert ("WindPointing.NTT:1", AlarmSeverity.WARNING) in raised
    assert ("Humidity.ASM:1", AlarmSeverity.WARNING) not in raised
    triggers = [decode_plan_trigger(p) for p in await entries(env, env["triggers"])]
    kinds = {t.consequence for t in triggers if t.active}
    assert kinds == {ConsequenceKind.CLOSE_DOME, ConsequenceKind.POINTING_RESTRICTION}
    sector = next(t.sector for t in triggers if t.consequence is ConsequenceKind.POINTING_RESTRICTION)
    assert sector is not None
    assert (sector.start_deg, sector.end_deg) == (0.0, 90.0)

    # Dispatcher: every event lands in the archive.
    archive = SqliteArchive(":memory:")
    await archive.open()
    try:
        notifications = NotificationService(
            NotificationPolicy(min_severity=AlarmSeverity.SERIOUS, email_to=("ops@example.org",),
                               escalation_delay_us=600 * US_PER_S),
            Outbox(initial_us=US_PER_S, max_us=US_PER_S), {"email": Recorder()}, env["redis"], clock,
            prefix=env["prefix"],
        )
        dispatcher = AlarmDispatcher(bus, archive, notifications, events_stream=env["events"],
                                     live_channel=env["live"])
        while await dispatcher.consumer.run_once():
            pass
        history = await archive.alarm_history(start=T0, end=T0 + timedelta(hours=1))
        assert {(e.alarm_id, e.seq) for e in history} == {(e.alarm_id, e.seq) for e in events}
        assert await notifications.pump() == 1  # WindSpeed CRITICAL; WARNINGs are below the mail threshold

        # Operator actions through the public functions, against the running command loop.
        service = AlarmService(bus, AlarmStateStore(env["redis"], prefix=env["prefix"]), archive, clock,
                               commands_stream=env["commands"])
        stop = asyncio.Event()
        loop = asyncio.create_task(sup.commands.run(stop))
        try:
            with pytest.raises(AlarmCommandError, match="rose to CRITICAL"):
                await service.ack("WindSpeed.ASM:1", user="maria", comment="seen", seen="SERIOUS")
            await service.ack("WindSpeed.ASM:1", user="maria", comment="dome closing", seen="CRITICAL")
            await service.shelve("WindPointing.NTT:1", user="maria", comment="dome closed anyway",
                                 duration=timedelta(hours=2))
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(loop, timeout=5)
        active = {v.alarm_id: v for v in await service.alarms()}
        assert active["WindSpeed.ASM:1"].status is AlarmStatus.ACTIVE_ACKED
        assert active["WindPointing.NTT:1"].shelved_by == "maria"
        while await dispatcher.consumer.run_once():
            pass
        acks = await service.history(start=T0, end=T0 + timedelta(hours=1), alarm_id="WindSpeed.ASM:1")
        assert [e.action for e in acks][:2] == ["ack", "ack_refused"]
        assert acks[0].user == "maria"
        assert acks[0].comment == "dome closing"
    finally:
        await archive.close()

    # A restarted supervisor picks up where the first left off.
    await sup.save_all()
    again = supervisor(env)
    await again.start()
    state = again.engine.state("WindSpeed.ASM:1")
    assert (state.status, state.latched) == (AlarmStatus.ACTIVE_ACKED, AlarmSeverity.CRITICAL)
    assert again.engine.state("WindPointing.NTT:1").shelved
