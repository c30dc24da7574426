"""Shared fan-out: identical subscriptions run once, and every guarantee of the per-client path still holds."""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.types.execution import ExecutionResult

from hmi_api.graphql import fanout as fanout_module
from hmi_api.graphql.fanout import (
    LIVE_FANOUT,
    CatchUp,
    End,
    Frame,
    Member,
    Placement,
    SharedFanout,
    merge_latest,
    placement,
)
from hmi_api.graphql.router import HmiTransportWSHandler
from hmi_api.live import LiveFeeds, SlowClientError
from skyops.bus import Bus
from skyops.codec import encode_alarm_events, encode_samples
from skyops.records import SampleBatch
from skyops.streams import ALARM_EVENTS, MON_SAMPLES
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import login
from tests.unit.hmi_api.test_live import RET, attached, connect, event, feeds, publish, subscribe

ALARMS = "subscription { alarmEvents { seq event { seq reason } } }"


@pytest.fixture
def live(hmi: Hmi) -> tuple[Hmi, Bus]:
    bus = Bus(fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()), clock=hmi.clock)
    hmi.services.live = LiveFeeds.on(bus, block_ms=50)
    return hmi, bus


def encode(obj: object) -> str:
    return json.dumps(obj)


def frame(data: dict[str, Any]) -> Frame:
    return Frame(encode({"data": data}), data)


# ------------------------------------------------------------------------------------------------ which ops share


def where(query: str, variables: dict[str, Any] | None = None, name: str | None = None) -> Placement:
    found = placement(query, variables, name)
    assert found is not None
    return found


def test_identical_live_subscriptions_share_one_group() -> None:
    assert where(ALARMS).key == where(ALARMS, {}).key
    assert where(ALARMS).feed == "alarmEvents"
    assert where(ALARMS).twin is None


def test_different_arguments_or_selections_get_their_own_group() -> None:
    q = "subscription($f: LiveLogFilter) { logEntries(filter: $f) { entry { message } } }"
    keys = {where(q, {"f": {"minLevel": "WARNING"}}).key, where(q, {"f": {"minLevel": "ERROR"}}).key,
            where("subscription { alarmEvents { seq } }").key, where(ALARMS).key}
    assert len(keys) == 4


def test_a_replay_runs_on_its_own_and_names_the_live_group_to_catch_up_with() -> None:
    inline = 'subscription { alarmEvents(after: "5-0") { seq } }'
    assert where(inline).key != where(inline).key  # a later client would miss the backlog: never shared
    assert where(inline).twin is None
    by_var = "subscription($a: String) { alarmEvents(after: $a) { seq } }"
    replay = where(by_var, {"a": "5-0"})
    assert replay.key != where(by_var, {"a": "5-0"}).key
    # Its live twin is the group of the same subscription without a replay (null and absent alike).
    assert replay.twin == where(by_var, {"a": None}).key == where(by_var, {}).key
    assert replay.twin_variables == {"a": None}
    assert where("subscription { alarmEvents(after: null) { seq } }").key.private is None
    assert where("subscription($a: String!) { alarmEvents(after: $a) { seq } }", {"a": "5-0"}).twin is None


@pytest.mark.parametrize("query", [
    "{ me { username } }",                                         # a query
    "subscription { serverTime }",                                 # not a shared feed
    "subscription { alarmEvents { seq } planChanges { planId } }",  # two root fields
    "subscription { alarmEvents @include(if: true) { seq } }",      # directives
    "subscription { alarmEvents { seq }",                          # a syntax error: strawberry reports it
    "subscription A { alarmEvents { seq } } subscription B { planChanges { planId } }",  # no operationName
])
def test_everything_else_stays_on_strawberrys_own_path(query: str) -> None:
    assert placement(query, None, None) is None


def test_operation_name_picks_the_operation() -> None:
    doc = "subscription A { alarmEvents { seq } } subscription B { serverTime }"
    assert where(doc, None, "A").feed == "alarmEvents"
    assert placement(doc, None, "B") is None
    assert placement(doc, None, "C") is None


# ------------------------------------------------------------------------------------------------ member queues


def test_a_member_that_overflows_a_never_dropped_feed_ends_slow_at_once() -> None:
    async def run() -> None:
        member = Member(coalesce=False, maxsize=2, encode=encode)
        for i in range(3):
            member.offer(frame({"alarmEvents": {"seq": str(i)}}))
        end = await member.next()
        assert isinstance(end, End) and end.kind == "slow"
        assert "re-read the snapshot" in end.reason
        assert member.pending == 0  # nothing more is held for a client that will be closed

    asyncio.run(run())


def test_a_member_gets_every_frame_in_order_then_the_end() -> None:
    async def run() -> None:
        member = Member(coalesce=False, maxsize=10, encode=encode)
        for i in range(3):
            member.offer(frame({"alarmEvents": {"seq": str(i)}}))
        member.finish(End("complete"))
        got = [await member.next() for _ in range(4)]
        assert [json.loads(f.payload)["data"]["alarmEvents"]["seq"] for f in got[:3] if isinstance(f, Frame)] == \
            ["0", "1", "2"]
        assert got[3] == End("complete")

    asyncio.run(run())


def test_a_lagging_samples_member_gets_merged_updates_latest_value_wins() -> None:
    async def run() -> None:
        member = Member(coalesce=True, maxsize=1, encode=encode)
        member.offer(frame({"samples": [{"point": "b", "value": 1.0}, {"point": "c", "value": 5.0}]}))
        member.offer(frame({"samples": [{"point": "a", "value": 2.0}, {"point": "b", "value": 3.0}]}))
        member.offer(frame({"samples": [{"point": "b", "value": 4.0}]}))
        assert member.pending == 1 and member.ended is None  # coalesced, never cut off
        merged = await member.next()
        assert isinstance(merged, Frame)
        assert json.loads(merged.payload) == {"data": {"samples": [
            {"point": "a", "value": 2.0}, {"point": "b", "value": 4.0}, {"point": "c", "value": 5.0}]}}

    asyncio.run(run())


def test_merging_without_the_point_in_the_selection_keeps_the_newest_update() -> None:
    old, new = frame({"samples": [{"value": 1.0}]}), frame({"samples": [{"value": 2.0}]})
    assert merge_latest(old, new, encode) is new


def test_the_last_member_leaving_stops_the_groups_run() -> None:
    async def run() -> None:
        closed = asyncio.Event()

        async def source() -> Any:
            try:
                while True:
                    await asyncio.sleep(3600)
                    yield None
            finally:
                closed.set()

        async def start() -> Any:
            return source()

        fan = SharedFanout()
        key, feed = where(ALARMS).key, "alarmEvents"
        a = fan.join(key, feed, start, encode)
        b = fan.join(key, feed, start, encode)
        assert fan.groups == 1 and fan.clients("alarmEvents") == 2
        await asyncio.sleep(0)
        fan.leave(key, a)
        assert fan.groups == 1
        fan.leave(key, b)
        assert fan.groups == 0
        await asyncio.wait_for(closed.wait(), 5)

    asyncio.run(run())


def alarm_frame(seq: str, n: str = "") -> Frame:
    return frame({"alarmEvents": {"seq": seq, "event": {"n": n}}})


def delivered(source: CatchUp, count: int) -> list[str]:
    async def run() -> list[str]:
        out = []
        for _ in range(count):
            item = await asyncio.wait_for(source.next(), 5)
            assert isinstance(item, Frame), item
            ev = json.loads(item.payload)["data"]["alarmEvents"]
            out.append(ev["seq"] + ev["event"]["n"])
        return out

    return asyncio.run(run())


def catch_up(replay: list[Frame], live: list[Frame], *, live_maxsize: int = 100) -> tuple[CatchUp, list[str]]:
    left: list[str] = []
    own, twin = Member(coalesce=False, maxsize=100, encode=encode), Member(coalesce=False, maxsize=live_maxsize,
                                                                          encode=encode)
    for f in replay:
        own.offer(f)
    for f in live:
        twin.offer(f)
    return CatchUp(own, twin, leave_replay=lambda: left.append("replay"), leave_live=lambda: left.append("live")), left


def test_a_replay_switches_to_the_live_group_without_gaps_or_repeats() -> None:
    # Entry 4-0 holds two alarm events: the replay delivered the first when it reached the live buffer.
    source, left = catch_up([alarm_frame("2-0"), alarm_frame("3-0"), alarm_frame("4-0", "a"), alarm_frame("4-0", "b")],
                            [alarm_frame("4-0", "a"), alarm_frame("4-0", "b"), alarm_frame("5-0")])
    assert delivered(source, 5) == ["2-0", "3-0", "4-0a", "4-0b", "5-0"]
    assert source.caught_up and left == ["replay"]


def test_a_replay_stays_on_its_own_when_the_live_buffer_overflowed() -> None:
    source, left = catch_up([alarm_frame("1-0"), alarm_frame("2-0"), alarm_frame("3-0")],
                            [alarm_frame("2-0"), alarm_frame("3-0")], live_maxsize=1)
    assert delivered(source, 3) == ["1-0", "2-0", "3-0"]
    assert not source.caught_up and left == ["live"]


def test_a_replay_without_seq_in_its_selection_stays_on_its_own() -> None:
    source, left = catch_up([frame({"alarmEvents": {"event": {"n": "x"}}})], [alarm_frame("1-0")])
    asyncio.run(source.next())
    assert not source.caught_up and left == ["live"]


def run_group(results: list[ExecutionResult] | Exception) -> list[Frame | End]:
    """Everything one member of a group receives when the group's stream yields `results` (or fails to start)."""

    async def run() -> list[Frame | End]:
        async def source() -> Any:
            for r in results if isinstance(results, list) else []:
                yield r

        async def start() -> Any:
            if isinstance(results, Exception):
                raise results
            return source()

        fan = SharedFanout()
        member = fan.join(where(ALARMS).key, "alarmEvents", start, encode)
        got: list[Frame | End] = []
        while not got or not isinstance(got[-1], End):
            got.append(await asyncio.wait_for(member.next(), 5))
        assert fan.groups == 0
        return got

    return asyncio.run(run())


def test_a_group_that_fell_behind_the_bus_ends_every_member_slow() -> None:
    slow = SlowClientError("this client fell behind the live stream; re-read the snapshot and resubscribe")
    got = run_group([ExecutionResult(data={"alarmEvents": {"seq": "1-0"}}, errors=None),
                     ExecutionResult(data=None, errors=[GraphQLError(str(slow), original_error=slow)])])
    # The member is cut off at once (whatever it had not been sent yet is moot: it must re-read the snapshot).
    assert len(got) == 1
    assert isinstance(got[0], End) and got[0].kind == "slow" and "re-read the snapshot" in got[0].reason


def test_a_resolver_error_reaches_every_member_then_the_operation_completes() -> None:
    got = run_group([ExecutionResult(data=None, errors=[GraphQLError("subscribe to 1 to 5000 points")])])
    assert isinstance(got[0], Frame)
    assert json.loads(got[0].payload)["errors"][0]["message"] == "subscribe to 1 to 5000 points"
    assert got[1] == End("complete")


def test_a_group_that_cannot_start_completes_its_members_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    assert run_group(RuntimeError("no live feeds")) == [End("complete")]
    assert "shared alarmEvents subscription failed" in caplog.text


# ------------------------------------------------------------------------------------------------ through the protocol


def next_data(ws: Any, op: str = "1") -> dict[str, Any]:
    msg = ws.receive_json()
    assert msg["type"] == "next" and msg["id"] == op, msg
    return msg["payload"]["data"]  # type: ignore[no-any-return]


def test_identical_subscriptions_of_two_clients_run_once_and_both_get_every_event(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        with connect(client, token) as a, connect(client, token) as b:
            subscribe(a, ALARMS, op="x")
            subscribe(b, ALARMS, op="y")
            attached(client, lambda: feeds(hmi).alarms.subscribers)
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, 1)]))
            assert next_data(a, "x")["alarmEvents"]["event"] == {"seq": 1, "reason": "wind 21 m/s"}
            assert next_data(b, "y")["alarmEvents"]["event"] == {"seq": 1, "reason": "wind 21 m/s"}
            assert feeds(hmi).alarms.subscribers == 1  # one run on the bus tap for both clients
            shared = hmi.services.extras[LIVE_FANOUT]
            assert isinstance(shared, SharedFanout) and shared.clients("alarmEvents") == 2
            metrics = hmi.services.metrics
            client.portal.call(metrics.refresh, hmi.services)  # type: ignore[union-attr]
            gauge = metrics.registry.get_sample_value("skyops_hmi_live_subscriptions", {"feed": "alarms"})
            assert gauge == 2  # /metrics counts the clients, not the one shared run
            # One client stops its subscription: the other keeps receiving.
            a.send_json({"id": "x", "type": "complete"})
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, 2)]))
            assert next_data(b, "y")["alarmEvents"]["event"]["seq"] == 2
        wait_until(client, lambda: feeds(hmi).alarms.subscribers == 0)  # the last one left: the run stopped


def test_a_reconnecting_client_replays_then_joins_the_shared_group(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    query = "subscription($a: String) { alarmEvents(after: $a) { seq event { seq } } }"

    def sub(ws: Any, op: str, after: str | None) -> None:
        ws.send_json({"id": op, "type": "subscribe", "payload": {"query": query, "variables": {"a": after}}})

    def seqs(ws: Any, op: str, n: int) -> list[int]:
        return [next_data(ws, op)["alarmEvents"]["event"]["seq"] for _ in range(n)]

    with TestClient(hmi.app()) as client:
        ids = [client.portal.call(functools.partial(bus.publish, ALARM_EVENTS, encode_alarm_events([event(hmi, i)]),
                                                    retention=RET)) for i in range(3)]  # type: ignore[union-attr]
        token = login(client, "otto")
        with connect(client, token) as fresh, connect(client, token) as back:
            sub(fresh, "live", None)
            wait_until(client, lambda: feeds(hmi).alarms.subscribers == 1)
            sub(back, "again", ids[0])  # it saw event 0 before it lost its connection
            assert seqs(back, "again", 2) == [1, 2]  # the replay
            wait_until(client, lambda: feeds(hmi).alarms.subscribers == 2)  # its own run plus the shared one
            # Entry 3 holds two events: the replay delivers the first, the shared group the second.
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, 3), event(hmi, 4)]))
            assert seqs(back, "again", 2) == [3, 4]
            wait_until(client, lambda: feeds(hmi).alarms.subscribers == 1)  # caught up: its own run stopped
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, 5)]))
            assert seqs(back, "again", 1) == [5]
            assert seqs(fresh, "live", 3) == [3, 4, 5]


def test_a_bad_sequence_in_a_variable_is_refused_and_leaves_nothing_running(live: tuple[Hmi, Bus]) -> None:
    hmi, _ = live
    query = "subscription($a: String) { alarmEvents(after: $a) { seq } }"
    with TestClient(hmi.app()) as client, connect(client, login(client, "otto")) as ws:
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"a": "garbage"}}})
        msg = ws.receive_json()
        assert msg["type"] == "next" and "bad sequence" in msg["payload"]["errors"][0]["message"]
        assert ws.receive_json() == {"id": "1", "type": "complete"}
        wait_until(client, lambda: feeds(hmi).alarms.subscribers == 0)  # the live twin it joined was left too


def test_without_shared_fanout_each_client_runs_its_own_subscription(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    feeds(hmi).shared_fanout = False
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        with connect(client, token) as a, connect(client, token) as b:
            subscribe(a, ALARMS)
            subscribe(b, ALARMS)
            wait_until(client, lambda: feeds(hmi).alarms.subscribers == 2)
            publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, 1)]))
            assert next_data(a)["alarmEvents"]["event"]["seq"] == 1
            assert next_data(b)["alarmEvents"]["event"]["seq"] == 1


def test_shared_samples_send_nan_as_null_with_bad_quality(live: tuple[Hmi, Bus]) -> None:
    hmi, bus = live
    t_us = int(hmi.clock.now().timestamp() * 1e6)
    names = ["lasilla.asm.seeing", "lasilla.asm.wind_speed", "ntt.tcs.altitude"]
    batch = SampleBatch.from_floats(names, range(3), [t_us] * 3, [math.nan, math.inf, 45.0])
    query = ('subscription { samples(points: ["lasilla.asm.seeing", "lasilla.asm.wind_speed", "ntt.tcs.altitude"], '
             "maxRateHz: 20) { point value quality } }")
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        with connect(client, token) as a, connect(client, token) as b:
            subscribe(a, query)
            subscribe(b, query)
            attached(client, lambda: feeds(hmi).samples.clients)
            publish(client, bus, MON_SAMPLES, encode_samples(batch))
            got = [next_data(ws)["samples"] for ws in (a, b)]
            assert feeds(hmi).samples.clients == 1
    assert got[0] == got[1] == [{"point": "lasilla.asm.seeing", "value": None, "quality": "BAD"},
                                {"point": "lasilla.asm.wind_speed", "value": None, "quality": "BAD"},
                                {"point": "ntt.tcs.altitude", "value": 45.0, "quality": "GOOD"}]


def test_a_shared_subscription_with_a_bad_selection_gets_the_protocols_error(live: tuple[Hmi, Bus]) -> None:
    hmi, _ = live
    with TestClient(hmi.app()) as client, connect(client, login(client, "otto")) as ws:
        subscribe(ws, "subscription { alarmEvents { seq noSuchField } }")
        msg = ws.receive_json()
    assert msg["type"] == "error" and msg["id"] == "1"
    assert "noSuchField" in str(msg["payload"])


def test_a_shared_client_that_falls_behind_is_closed_4409_and_others_keep_going(
    live: tuple[Hmi, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    hmi, bus = live
    monkeypatch.setattr(fanout_module.SharedFanout, "maxsize", 3)
    members: list[Member] = []
    original_join = SharedFanout.join

    def recording_join(self: SharedFanout, *args: Any) -> Member:
        members.append(original_join(self, *args))
        return members[-1]

    original_send = HmiTransportWSHandler._send_text
    stalled: set[int] = set()

    async def stalled_send(self: HmiTransportWSHandler, text: str) -> None:
        # The first client's socket is stuck (e.g. a frozen browser) until its queue has overflowed.
        if json.loads(text)["id"] == "slow":
            stalled.add(1)
            for _ in range(500):
                if members and members[0].ended is not None:
                    break
                await asyncio.sleep(0.01)
        await original_send(self, text)

    monkeypatch.setattr(SharedFanout, "join", recording_join)
    monkeypatch.setattr(HmiTransportWSHandler, "_send_text", stalled_send)
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        with connect(client, token) as slow, connect(client, token) as fine:
            subscribe(slow, ALARMS, op="slow")
            wait_until(client, lambda: feeds(hmi).alarms.subscribers == 1)
            subscribe(fine, ALARMS, op="fine")
            wait_until(client, lambda: len(members) == 2)
            # Two events at a time: the healthy client drains between them, the stuck one piles up past 3.
            for i in range(0, 10, 2):
                publish(client, bus, ALARM_EVENTS, encode_alarm_events([event(hmi, i), event(hmi, i + 1)]))
                assert [next_data(fine, "fine")["alarmEvents"]["event"]["seq"] for _ in range(2)] == [i, i + 1]
            assert next_data(slow, "slow")["alarmEvents"]["event"]["seq"] == 0  # the one stuck in the socket
            with pytest.raises(WebSocketDisconnect) as info:
                slow.receive_json()
            assert info.value.code == 4409
    assert stalled


def wait_until(client: TestClient, condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the condition never held")

    client.portal.call(wait)

