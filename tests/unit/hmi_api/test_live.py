"""Live subscriptions: alarms resume without gaps or repeats, slow clients are cut off, samples coalesce."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from hmi_api.live import LiveFeeds, SlowClientError, StreamTap, Subscriber, latest_per_point, resumable
from skyops.bus import Bus, StreamRetention
from skyops.codec import decode_alarm_events, encode_alarm_events, encode_logs, encode_samples
from skyops.messages import AzimuthSector, ConsequenceKind, PlanEvent, PlannedBlock, PlanTrigger
from skyops.records import AlarmEvent, AlarmSeverity, LogRecord, Quality, Sample, SampleBatch
from skyops.streams import ALARM_EVENTS, LOG_RECORDS, MON_SAMPLES, PLAN_EVENTS
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import gql, login

RET = StreamRetention(max_len=10_000, max_age=timedelta(days=1))


def event(hmi: Hmi, seq: int, severity: AlarmSeverity = AlarmSeverity.CRITICAL) -> AlarmEvent:
    return AlarmEvent(alarm_id="WindSpeed.ASM:1", ts=hmi.clock.now(), seq=seq, action="transition",
                      severity=severity, reason=f"wind {20 + seq} m/s")


def feeds(hmi: Hmi) -> LiveFeeds:
    assert hmi.services.live is not None
    return hmi.services.live


@pytest.fixture
def live(hmi: Hmi) -> tuple[Hmi, Bus]:
    bus = Bus(fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()), clock=hmi.clock)
    hmi.services.live = LiveFeeds.on(bus, block_ms=50)
    return hmi, bus


def test_subscriber_overflow_is_reported_not_silent() -> None:
    async def run() -> None:
        sub: Subscriber[int] = Subscriber(maxsize=2)
        for i in range(3):
            sub.offer(f"1-{i}", i)
        with pytest.raises(SlowClientError, match="re-read the snapshot"):
            await sub.get()

    asyncio.run(run())


def test_resume_replays_the_backlog_then_goes_live_without_repeats(hmi: Hmi) -> None:
    async def run() -> None:
        bus = Bus(fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()), clock=hmi.clock)
        ids = [await bus.publish(ALARM_EVENTS, encode_alarm_events([event(hmi, i)]), retention=RET) for i in range(5)]
        tap = StreamTap(bus, ALARM_EVENTS, decode_alarm_events, block_ms=50)
        await tap.start_position()
        stop = asyncio.Event()
        reader = asyncio.create_task(tap.run(stop))
        got: list[int] = []

        async def consume() -> None:
            async for _, ev in resumable(tap, ids[1]):
                got.append(ev.seq)
                if len(got) == 5:
                    return

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        for i in range(5, 7):
            await bus.publish(ALARM_EVENTS, encode_alarm_events([event(hmi, i)]), retention=RET)
        await asyncio.wait_for(consumer, 5)
        stop.set()
        await reader
        assert got == [2, 3, 4, 5, 6]

    asyncio.run(run())


def subscribe(conn, query: str, op: str = "1") -> None:  # type: ignore[no-untyped-def]
    conn.send_json({"id": op, "type": "subscribe", "payload": {"query": query}})


@contextlib.contextmanager
def connect(client: TestClient, token: str) -> Iterator[Any]:
    """An acknowledged graphql-transport-ws connection, closed however the test ends."""
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"token": token}})
        assert ws.receive_json()["type"] == "connection_ack"
        yield ws


def attached(client: TestClient, count: Callable[[], int]) -> None:
    """Wait until the server has attached the subscription (a fixed sleep would race on a loaded machine)."""

    async def wait() -> None:
        for _ in range(500):
            if count() >= 1:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the subscription never attached")

    client.portal.call(wait)


def publish(client: TestClient, bus: Bus, stream: str, payload: bytes) -> None:
    client.portal.call(functools.partial(bus.publish, stream, payload, retention=RET))


def test_alarm_event_reaches_a_subscribed_client_and_resumes_by_sequence(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        with connect(client, token) as ws:
            subscribe(ws, "subscription { alarmEvents { seq event { alarmId seq severity reason } } }")
            attached(client, lambda: feeds(hmi).alarms.subscribers)
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, 1)]))
            first = ws.receive_json()["payload"]["data"]["alarmEvents"]
            assert first["event"] == {"alarmId": "WindSpeed.ASM:1", "seq": 1, "severity": "CRITICAL",
                                      "reason": "wind 21 m/s"}
        # Disconnected: two more events happen; a reconnect from the last sequence gets exactly those.
        for i in (2, 3):
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, i)]))
        with connect(client, token) as ws:
            subscribe(ws, f'subscription {{ alarmEvents(after: "{first["seq"]}") {{ seq event {{ seq }} }} }}')
            seqs = [ws.receive_json()["payload"]["data"]["alarmEvents"]["event"]["seq"] for _ in range(2)]
        assert seqs == [2, 3]


def test_log_tail_is_filtered_on_the_server(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    records = [LogRecord(ts=hmi.clock.now(), level=lvl, source=src, message=msg) for lvl, src, msg in
               [(20, "planner", "info"), (40, "ves", "other source"), (40, "planner", "Dome fault")]]
    with TestClient(hmi.app()) as client:
        with connect(client, login(client, "sam")) as ws:
            subscribe(ws, 'subscription { logEntries(filter: {minLevel: "WARNING", sources: ["planner"]}) '
                          "{ entry { message level } } }")
            attached(client, lambda: feeds(hmi).logs.subscribers)
            publish(client, bus, LOG_RECORDS, encode_logs(records))
            got = ws.receive_json()["payload"]["data"]["logEntries"]["entry"]
        assert got == {"message": "Dome fault", "level": "ERROR"}


def test_samples_are_coalesced_latest_value_wins(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    t = hmi.clock.now()
    batch = SampleBatch.from_samples(
        [Sample("lasilla.asm.wind_speed", t + timedelta(seconds=i), float(i)) for i in range(10)]
        + [Sample("lasilla.asm.seeing", t, 0.8), Sample("ntt.tcs.altitude", t, 45.0)])
    with TestClient(hmi.app()) as client:
        with connect(client, login(client, "otto")) as ws:
            subscribe(ws, 'subscription { samples(points: ["lasilla.asm.wind_speed", "lasilla.asm.seeing"], '
                          "maxRateHz: 20) { point value quality } }")
            attached(client, lambda: feeds(hmi).samples.clients)
            publish(client, bus, MON_SAMPLES, encode_samples(batch))
            got = ws.receive_json()["payload"]["data"]["samples"]
        assert got == [{"point": "lasilla.asm.seeing", "value": 0.8, "quality": "GOOD"},
                       {"point": "lasilla.asm.wind_speed", "value": 9.0, "quality": "GOOD"}]


def test_subscriptions_refuse_bad_arguments(live: tuple[Hmi, Bus]) -> None:
    hmi, _ = live
    with TestClient(hmi.app()) as client, connect(client, login(client, "otto")) as ws:
        subscribe(ws, "subscription { samples(points: [], maxRateHz: 5) { point } }")
        empty = ws.receive_json()
        subscribe(ws, 'subscription { alarmEvents(after: "garbage") { seq } }', op="2")
        garbage = ws.receive_json()
        while garbage.get("id") != "2" or "payload" not in garbage:  # skip op 1's "complete"
            garbage = ws.receive_json()
    assert "1 to 5000 points" in str(empty), empty
    assert "bad sequence" in str(garbage["payload"])


def test_anonymous_websocket_cannot_subscribe(live: tuple[Hmi, Bus]) -> None:
    hmi, _ = live
    with TestClient(hmi.app()) as client, \
            client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        subscribe(ws, "subscription { alarmEvents { seq } }")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 4401


def plan_event(hmi: Hmi, plan_id: str, n: int, reason: str, alarm: str | None = None) -> PlanEvent:
    t0 = hmi.clock.now()
    trigger = None if alarm is None else PlanTrigger(
        kind="consequence", ts=t0, reason=reason, alarm_id=alarm, consequence=ConsequenceKind.POINTING_RESTRICTION,
        sector=AzimuthSector(start_deg=100, end_deg=160))
    blocks = tuple(PlannedBlock(ob_id=f"OB{i}", name=f"ob {i}", target_name=f"SN2026{i}", ra_deg=10.0 * i,
                                dec_deg=-30.0, exposure_s=600, priority=1, ob_type="CTOB",
                                start=t0 + timedelta(minutes=12 * i), end=t0 + timedelta(minutes=12 * i + 10))
                   for i in range(n))
    return PlanEvent(plan_id=plan_id, night="2026-11-21", created=t0, reason=reason, trigger=trigger, blocks=blocks)


def test_plan_query_and_plan_changes_subscription(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    with TestClient(hmi.app()) as client:
        token = login(client, "sam")
        assert gql(client, "{ plan { planId } }", token)["data"]["plan"] is None
        publish(client, bus, PLAN_EVENTS, plan_event(hmi, "p1", 5, "afternoon plan").encode())
        plan = gql(client, "{ plan { planId night reason blocks { obId start } } }", token)["data"]["plan"]
        assert plan["planId"] == "p1"
        assert [b["obId"] for b in plan["blocks"]] == [f"OB{i}" for i in range(5)]
        with connect(client, token) as ws:
            subscribe(ws, "subscription { planChanges { planId reason triggerAlarm triggerKind blocks { obId } } }")
            attached(client, lambda: feeds(hmi).plans.subscribers)
            publish(client, bus, PLAN_EVENTS, plan_event(hmi, "p2", 3, "wind from the east",
                                                          alarm="WindPointing.NTT:1").encode())
            got = ws.receive_json()["payload"]["data"]["planChanges"]
    assert got["planId"] == "p2"
    assert got["triggerAlarm"] == "WindPointing.NTT:1"
    assert got["triggerKind"] == "pointing_restriction"
    assert len(got["blocks"]) == 3


def test_latest_per_point_keeps_each_points_newest_value_of_any_kind(hmi: Hmi) -> None:
    t = hmi.clock.now()
    batch = SampleBatch.from_samples([
        Sample("ntt.dome.state", t + timedelta(seconds=1), "open"), Sample("ntt.dome.state", t, "closed"),
        Sample("ntt.tcs.altitude", t, 45.5), Sample("ntt.tcs.altitude", t + timedelta(seconds=2), 46.5),
        Sample("ntt.tcs.tracking", t, True), Sample("ntt.tcs.mode", t, 3),
        Sample("lasilla.asm.seeing", t, None, Quality.BAD),
    ])
    got = {p: (v.value, v.quality) for p, v in latest_per_point(batch).items()}
    assert got == {"ntt.dome.state": ("open", Quality.GOOD), "ntt.tcs.altitude": (46.5, Quality.GOOD),
                   "ntt.tcs.tracking": (True, Quality.GOOD), "ntt.tcs.mode": (3, Quality.GOOD),
                   "lasilla.asm.seeing": (None, Quality.BAD)}
    assert latest_per_point(batch)["ntt.tcs.altitude"].ts_us == int((t + timedelta(seconds=2)).timestamp() * 1e6)


def test_an_invalid_plan_message_is_logged_and_the_plan_feed_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    from skyops.bus import Entry
    from skyops.messages import decode_plan_event

    bus = Bus(fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()))
    tap = StreamTap(bus, PLAN_EVENTS, lambda payload: [decode_plan_event(payload)])
    sub = tap.attach()
    tap.publish(Entry("1-0", b'{"plan_id": "x"}'))  # JSON, but not a plan: pydantic refuses it
    assert "undecodable" in caplog.text
    assert sub.queue.empty()  # nothing delivered, and no exception stopped the feed
