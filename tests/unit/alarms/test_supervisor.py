"""The supervisor on the embedded bus: samples in, alarm events and plan triggers out, actions, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from alarms.api import AlarmService
from alarms.commands import AlarmCommand, AlarmCommandError, CommandReply
from alarms.config import AlarmsConfig
from alarms.domain.state import AlarmStatus
from alarms.factory import AlarmSettings, build_engine, build_service, build_supervisor
from alarms.store import AlarmStateStore
from alarms.supervisor import AlarmSupervisor, SupervisorOptions
from skyops import codec, streams
from skyops.bus import PAYLOAD_FIELD, Bus, Entry, StreamRetention
from skyops.errors import BackendUnavailableError
from skyops.messages import ConsequenceKind, decode_plan_trigger
from skyops.records import AlarmSeverity, Sample, SampleBatch
from skyops.timeutil import FakeClock

from .conftest import T0

RETENTION = StreamRetention(max_len=1000, max_age=timedelta(days=1))
CONFIG = AlarmsConfig.model_validate({
    "rules": [
        {"kind": "threshold", "name": "Humidity", "instance": "ASM:1", "guidance": "close above 90 %",
         "point": "lasilla.asm.humidity", "threshold": {"levels": {"warning": 80, "critical": 90}},
         "max_age_s": 60, "consequence": {"kind": "close_dome", "min_severity": "CRITICAL"}},
        {"kind": "wind_restriction", "name": "WindPointing", "instance": "NTT:1", "guidance": "g",
         "speed_point": "lasilla.asm.wind_speed", "direction_point": "lasilla.asm.wind_direction",
         "speed": {"levels": {"warning": 12}}, "half_width_deg": 30,
         "consequence": {"kind": "pointing_restriction", "min_severity": "WARNING"}},
    ]
})


async def publish(bus: Bus, *samples: Sample) -> None:
    await bus.publish(streams.MON_SAMPLES, codec.encode_samples(SampleBatch.from_samples(samples)), retention=RETENTION)


async def payloads(bus: Bus, stream: str) -> list[bytes]:
    raw: Any = await bus.redis.xrange(stream)
    return [bytes(fields[PAYLOAD_FIELD]) for _, fields in raw]


async def events(bus: Bus) -> list[tuple[str, str, AlarmSeverity]]:
    out = []
    for payload in await payloads(bus, streams.ALARM_EVENTS):
        out += [(e.alarm_id, e.action, e.severity) for e in codec.decode_alarm_events(payload)]
    return out


@pytest.fixture
async def supervisor(bus: Bus, clock: FakeClock, tmp_path: Path) -> AlarmSupervisor:
    sup = build_supervisor(bus, clock, config=CONFIG, settings=AlarmSettings(state_file=tmp_path / "alarms.json"))
    await sup.start()
    return sup


@pytest.fixture
async def running(supervisor: AlarmSupervisor) -> AsyncIterator[AlarmSupervisor]:
    """The supervisor's command loop, as in production, for the public functions to talk to."""
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.commands.run(stop))
    yield supervisor
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)


@pytest.fixture
def service(bus: Bus, clock: FakeClock) -> AlarmService:
    return build_service(bus, None, clock, timeout_s=5)


async def test_a_batch_raises_alarms_and_plan_triggers(bus: Bus, supervisor: AlarmSupervisor) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0, 93.0), Sample("lasilla.asm.wind_speed", T0, 15.0),
                  Sample("lasilla.asm.wind_direction", T0, 10.0))
    assert await supervisor.samples.run_once() == 1
    assert set(await events(bus)) == {
        ("Humidity.ASM:1", "raise", AlarmSeverity.CRITICAL), ("WindPointing.NTT:1", "raise", AlarmSeverity.WARNING)
    }
    triggers = [decode_plan_trigger(p) for p in await payloads(bus, streams.PLAN_TRIGGERS)]
    by_kind = {t.consequence: t for t in triggers}
    assert by_kind[ConsequenceKind.CLOSE_DOME].active
    sector = by_kind[ConsequenceKind.POINTING_RESTRICTION].sector
    assert sector is not None
    assert (sector.start_deg, sector.end_deg) == (340.0, 40.0)
    saved = await supervisor.store.states()
    assert saved["Humidity.ASM:1"]["state"]["latched"] == int(AlarmSeverity.CRITICAL)


async def test_entries_read_together_lose_no_transition(
    bus: Bus, supervisor: AlarmSupervisor, clock: FakeClock
) -> None:
    """A backlog read in one go: a humidity spike inside one entry, then a rise and a fall in two entries
    that are evaluated together, all give their transitions at their own times."""
    t = [T0 + timedelta(milliseconds=100 * k) for k in range(6)]
    h = "lasilla.asm.humidity"
    await publish(bus, Sample(h, t[0], 50.0), Sample(h, t[1], 95.0), Sample(h, t[2], 50.0))
    await publish(bus, Sample(h, t[3], 85.0))
    await publish(bus, Sample(h, t[4], 50.0))
    clock.set(T0 + timedelta(seconds=2))
    assert await supervisor.samples.run_once() == 3
    raw: Any = await bus.redis.xrange(streams.ALARM_EVENTS)
    published = [e for _, fields in raw for e in codec.decode_alarm_events(bytes(fields[PAYLOAD_FIELD]))]
    assert [(e.ts, e.action, e.severity) for e in published] == [
        (t[1], "raise", AlarmSeverity.CRITICAL), (t[2], "clear", AlarmSeverity.NONE),
        (t[3], "change", AlarmSeverity.WARNING), (t[4], "clear", AlarmSeverity.NONE)]


async def test_a_corrupt_entry_is_skipped_and_the_rest_handled(bus: Bus, supervisor: AlarmSupervisor) -> None:
    await bus.publish(streams.MON_SAMPLES, b"\x00garbage", retention=RETENTION)
    await publish(bus, Sample("lasilla.asm.humidity", T0, 85.0))
    assert await supervisor.samples.run_once() == 2
    assert supervisor.bad_payloads == 1
    assert await events(bus) == [("Humidity.ASM:1", "raise", AlarmSeverity.WARNING)]


async def test_a_backlog_is_evaluated_in_chunks_whose_events_leave_one_by_one(bus: Bus, clock: FakeClock) -> None:
    options = SupervisorOptions(chunk_samples=2)
    sup = AlarmSupervisor(build_engine(CONFIG, clock), bus, AlarmStateStore(bus.redis), clock, options)
    await sup.start()
    humidity = "lasilla.asm.humidity"
    await publish(bus, Sample(humidity, T0, 95.0), Sample(humidity, T0 + timedelta(seconds=1), 96.0))
    await publish(bus, Sample(humidity, T0 + timedelta(seconds=2), 50.0))
    assert await sup.samples.run_once() == 2
    # The spike of the first entry is an alarm of its own, even though the second entry already cleared it.
    per_entry = [[(e.action, e.severity) for e in codec.decode_alarm_events(p)]
                 for p in await payloads(bus, streams.ALARM_EVENTS)]
    assert per_entry == [[("raise", AlarmSeverity.CRITICAL)], [("clear", AlarmSeverity.NONE)]]


async def test_samples_from_a_wrong_clock_are_refused_and_logged(
    bus: Bus, supervisor: AlarmSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0 + timedelta(days=1), 95.0),
                  Sample("lasilla.asm.wind_speed", T0, 3.0))
    with caplog.at_level("WARNING", logger="alarms.supervisor"):
        assert await supervisor.samples.run_once() == 1
    assert supervisor.future_samples == 1
    assert "1 samples dated more than 0:01:00 ahead" in caplog.text
    assert "lasilla.asm.humidity" in caplog.text
    assert ("Humidity.ASM:1", "raise", AlarmSeverity.CRITICAL) not in await events(bus)


async def test_tick_makes_stale_input_invalid(bus: Bus, supervisor: AlarmSupervisor, clock: FakeClock) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0, 50.0))
    await supervisor.samples.run_once()
    clock.advance(61)
    await supervisor.tick()
    assert ("Humidity.ASM:1", "invalid", AlarmSeverity.NONE) in await events(bus)


async def test_operator_actions_through_the_public_functions(
    bus: Bus, running: AlarmSupervisor, service: AlarmService
) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0, 85.0))
    await running.samples.run_once()
    await publish(bus, Sample("lasilla.asm.humidity", T0 + timedelta(seconds=1), 95.0))
    await running.samples.run_once()
    with pytest.raises(AlarmCommandError, match="rose to CRITICAL since WARNING"):
        await service.ack("Humidity.ASM:1", user="maria", comment="seen", seen="warning")
    await service.ack("Humidity.ASM:1", user="maria", comment="closing the dome", seen="CRITICAL")
    (view,) = [v for v in await service.alarms() if v.alarm_id == "Humidity.ASM:1"]
    assert view.status is AlarmStatus.ACTIVE_ACKED
    assert view.guidance == "close above 90 %"
    assert view.consequence == "close_dome"
    as_json = json.loads(json.dumps(view.to_dict()))
    assert (as_json["status"], as_json["latched"]) == ("ACTIVE_ACKED", "CRITICAL")
    expiry = await service.shelve("Humidity.ASM:1", user="maria", comment="sensor wet", duration=timedelta(hours=1))
    assert (await service.alarm("Humidity.ASM:1")).shelved_until == expiry
    await service.unshelve("Humidity.ASM:1", user="maria", comment="dry again")
    await service.comment("Humidity.ASM:1", user="maria", comment="dome closed at 03:01")
    actions = [a for i, a, _ in await events(bus) if i == "Humidity.ASM:1"]
    assert actions == ["raise", "raise", "ack_refused", "ack", "shelve", "unshelve", "comment"]


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        ({"action": "ack", "alarm_id": "Nope.X:1"}, "no alarm named"),
        ({"action": "ack", "alarm_id": "Humidity.ASM:1", "comment": ""}, "comment"),
        ({"action": "ack", "alarm_id": "Humidity.ASM:1", "seen": "HUGE"}, "unknown severity"),
        ({"action": "ack", "alarm_id": "Humidity.ASM:1"}, "nothing to acknowledge"),
        ({"action": "shelve", "alarm_id": "Humidity.ASM:1"}, "exactly one of"),
        ({"action": "shelve", "alarm_id": "Humidity.ASM:1", "duration": timedelta(days=3)}, "limit"),
        ({"action": "unshelve", "alarm_id": "Humidity.ASM:1"}, "not shelved"),
    ],
)
async def test_refused_actions_say_why(running: AlarmSupervisor, service: AlarmService, call: dict[str, object],
                                       problem: str) -> None:
    args: dict[str, object] = {"user": "maria", "comment": "x", **call}
    action = args.pop("action")
    with pytest.raises(AlarmCommandError, match=problem):
        await getattr(service, str(action))(args.pop("alarm_id"), **args)


async def test_state_survives_a_restart_in_redis_and_in_the_mirror_file(
    bus: Bus, supervisor: AlarmSupervisor, clock: FakeClock, tmp_path: Path
) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0, 95.0))
    await supervisor.samples.run_once()
    _, error = await supervisor.act(AlarmCommand(action="ack", alarm_id="Humidity.ASM:1", user="maria", comment="seen"))
    assert error is None
    await supervisor.save_all()
    settings = AlarmSettings(state_file=tmp_path / "alarms.json")

    again = build_supervisor(bus, clock, config=CONFIG, settings=settings)
    await again.start()
    state = again.engine.state("Humidity.ASM:1")
    assert (state.status, state.latched, state.seq) == (AlarmStatus.ACTIVE_ACKED, AlarmSeverity.CRITICAL, 2)
    assert again.engine.value[again.engine.point_ids["lasilla.asm.humidity"]] == 95.0

    # The embedded bus forgets everything on exit: the mirror file brings the state back.
    empty = FakeRedis(server=FakeServer(version=(7, 0)))
    try:
        fresh = build_supervisor(Bus(empty, clock=clock), clock, config=CONFIG, settings=settings)
        await fresh.start()
        assert fresh.engine.state("Humidity.ASM:1").status is AlarmStatus.ACTIVE_ACKED
        clock.advance(1)
        await fresh.tick()  # the restored input is still fresh: no INVALID flicker after a restart
        assert fresh.engine.state("Humidity.ASM:1").valid
    finally:
        await empty.aclose()


async def test_a_corrupt_mirror_file_starts_from_scratch(bus: Bus, clock: FakeClock, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "alarms.json").write_text("{not json")
    sup = build_supervisor(bus, clock, config=CONFIG, settings=AlarmSettings(state_file=tmp_path / "alarms.json"))
    await sup.start()
    assert sup.engine.state("Humidity.ASM:1").status is AlarmStatus.OK
    assert "unreadable" in caplog.text


async def test_run_loop_ticks_and_saves_on_stop(bus: Bus, clock: FakeClock, tmp_path: Path) -> None:
    settings = AlarmSettings(state_file=tmp_path / "alarms.json", tick_s=0.01)
    sup = build_supervisor(bus, clock, config=CONFIG, settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await publish(bus, Sample("lasilla.asm.humidity", T0, 85.0))
    for _ in range(500):
        if sup.events_published:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert sup.events_published >= 1
    assert "Humidity.ASM:1" in (tmp_path / "alarms.json").read_text()


async def test_a_command_handled_twice_acts_once(bus: Bus, supervisor: AlarmSupervisor) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0, 85.0))
    await supervisor.samples.run_once()
    command = AlarmCommand(action="ack", alarm_id="Humidity.ASM:1", user="maria", comment="seen")
    entry = Entry("1-0", command.model_dump_json().encode())
    await supervisor.handle_commands([entry])
    await supervisor.handle_commands([entry])  # redelivered after a crash before its ack
    replies: Any = await bus.redis.lrange(f"alarms:reply:{command.request_id}", 0, -1)
    assert [CommandReply.model_validate_json(r).ok for r in replies] == [True, True]
    assert [a for _, a, _ in await events(bus)] == ["raise", "ack"]


async def test_a_malformed_command_is_skipped(bus: Bus, supervisor: AlarmSupervisor) -> None:
    await supervisor.handle_commands([Entry("1-0", b'{"action": "explode"}')])
    assert supervisor.bad_payloads == 1


async def test_events_that_could_not_be_published_go_out_with_the_next_round(
    bus: Bus, supervisor: AlarmSupervisor, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(bus, Sample("lasilla.asm.humidity", T0, 95.0))
    real_publish = bus.publish

    async def down(*args: Any, **kwargs: Any) -> str:
        raise BackendUnavailableError("Redis is unreachable")

    monkeypatch.setattr(bus, "publish", down)
    assert await supervisor.samples.run_once() == 0  # handler failed: the entry stays pending
    monkeypatch.setattr(bus, "publish", real_publish)
    assert await supervisor.samples.run_once() == 1  # retried: nothing new, but the queued event goes out
    assert await events(bus) == [("Humidity.ASM:1", "raise", AlarmSeverity.CRITICAL)]
    saved = await supervisor.store.states()
    assert saved["Humidity.ASM:1"]["state"]["latched"] == int(AlarmSeverity.CRITICAL)


async def test_states_of_removed_rules_are_forgotten_on_start(bus: Bus, clock: FakeClock,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    store = AlarmStateStore(bus.redis)
    await store.save({"Gone.X:1": {"raw": 0}, "Humidity.ASM:1": {"raw": "unreadable"}})
    await bus.redis.set("alarms:values", b'{"points": 3}')
    sup = build_supervisor(bus, clock, config=CONFIG)
    await sup.start()
    assert "Gone.X:1" not in await store.states()
    assert "Humidity.ASM:1 is unreadable" in caplog.text
    assert "saved input values are unreadable" in caplog.text
    assert sup.engine.state("Humidity.ASM:1").status is AlarmStatus.OK
