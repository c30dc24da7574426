"""The dispatcher on the embedded bus: archive, live fan-out, notifications with retry and escalation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from alarms.dispatcher import AlarmDispatcher, NotificationService
from alarms.domain.notify import Notification, NotificationPolicy, Outbox
from alarms.domain.state import AlarmState
from skyops import codec, streams
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, StreamRetention
from skyops.records import AlarmEvent, AlarmSeverity
from skyops.timeutil import US_PER_S, FakeClock, to_us

from .conftest import T0

RETENTION = StreamRetention(max_len=1000, max_age=timedelta(days=1))
POLICY = NotificationPolicy(
    min_severity=AlarmSeverity.SERIOUS, email_to=("ops@example.org",), webhook_urls=("http://127.0.0.1:1/hook",),
    escalation_to=("chief@example.org",), escalation_delay_us=600 * US_PER_S,
)


class Recorder:
    """A sender that fails its first `fail` calls, then records what it delivers."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionRefusedError("connection refused")
        self.sent.append(notification)


@pytest.fixture
async def archive() -> AsyncIterator[SqliteArchive]:
    a = SqliteArchive(":memory:")
    await a.open()
    yield a
    await a.close()


def service(bus: Bus, clock: FakeClock, email: Recorder, webhook: Recorder) -> NotificationService:
    outbox = Outbox(initial_us=10 * US_PER_S, max_us=60 * US_PER_S)
    return NotificationService(POLICY, outbox, {"email": email, "webhook": webhook}, bus.redis, clock)


def raise_critical(clock: FakeClock) -> tuple[AlarmState, list[AlarmEvent]]:
    st = AlarmState("WindGust.ASM:1")
    return st, st.update(to_us(clock.now()), AlarmSeverity.CRITICAL, valid=True, reason="gust 27 m/s")


async def test_events_are_archived_fanned_out_and_notified(
    bus: Bus, clock: FakeClock, archive: SqliteArchive
) -> None:
    email, webhook = Recorder(), Recorder()
    dispatcher = AlarmDispatcher(bus, archive, service(bus, clock, email, webhook))
    _, events = raise_critical(clock)
    await bus.publish(streams.ALARM_EVENTS, codec.encode_alarm_events(events), retention=RETENTION)

    ready = asyncio.Event()
    received: list[bytes] = []

    async def listen() -> None:
        async for payload in bus.subscribe(streams.LIVE_ALARMS, ready=ready):
            received.append(payload)
            return

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), timeout=5)
    assert await dispatcher.consumer.run_once() == 1
    await asyncio.wait_for(task, timeout=5)
    assert codec.decode_alarm_events(received[0]) == events
    history = await archive.alarm_history(start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1))
    assert [(e.alarm_id, e.action) for e in history] == [("WindGust.ASM:1", "raise")]
    assert await dispatcher.notifications.pump() == 2
    assert email.sent[0].target == "ops@example.org"
    assert email.sent[0].subject == "[skyops] CRITICAL WindGust.ASM:1"
    assert webhook.sent[0].payload["event"]["severity"] == "CRITICAL"


async def test_a_failed_notification_is_logged_and_retried_until_sent(
    bus: Bus, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    email, webhook = Recorder(fail=2), Recorder()
    svc = service(bus, clock, email, webhook)
    _, events = raise_critical(clock)
    with caplog.at_level(logging.ERROR):
        await svc.accept(events)
        assert await svc.pump() == 1  # the webhook went, the mail did not
        assert "failed (attempt 1), retrying in 10 s: ConnectionRefusedError" in caplog.text
        clock.advance(9)
        assert await svc.pump() == 0  # not due yet
        clock.advance(1)
        assert await svc.pump() == 0  # second failure: the delay doubles
        assert "retrying in 20 s" in caplog.text
    clock.advance(20)
    assert await svc.pump() == 1
    assert len(email.sent) == 1
    assert svc.outbox.items == {}
    assert await bus.redis.hlen("alarms:outbox") == 0


async def test_pending_notifications_survive_a_restart(bus: Bus, clock: FakeClock) -> None:
    svc = service(bus, clock, Recorder(fail=1), Recorder(fail=1))
    _, events = raise_critical(clock)
    await svc.accept(events)
    await svc.pump()
    email, webhook = Recorder(), Recorder()
    again = service(bus, clock, email, webhook)
    await again.restore()
    assert len(again.outbox.items) == 2
    clock.advance(10)
    assert await again.pump() == 2


async def test_a_replayed_event_is_not_notified_twice(bus: Bus, clock: FakeClock) -> None:
    email = Recorder()
    svc = service(bus, clock, email, Recorder())
    _, events = raise_critical(clock)
    await svc.accept(events)
    await svc.accept(events)  # the same entry handled again after a crash before its ack
    assert await svc.pump() == 2  # one mail and one webhook call, not two of each
    assert len(email.sent) == 1


async def test_unacknowledged_critical_escalates_once_after_the_delay(bus: Bus, clock: FakeClock) -> None:
    email = Recorder()
    svc = service(bus, clock, email, Recorder())
    _, events = raise_critical(clock)
    await svc.accept(events)
    await svc.pump()
    clock.advance(599)
    await svc.pump()
    assert [n.target for n in email.sent] == ["ops@example.org"]
    clock.advance(1)
    await svc.pump()
    assert email.sent[-1].target == "chief@example.org"
    assert "ESCALATION" in email.sent[-1].subject
    clock.advance(3600)
    await svc.pump()
    assert len(email.sent) == 2


async def test_an_ack_before_the_delay_stops_the_escalation(bus: Bus, clock: FakeClock) -> None:
    email = Recorder()
    svc = service(bus, clock, email, Recorder())
    st, events = raise_critical(clock)
    await svc.accept(events)
    clock.advance(300)
    await svc.accept(st.ack(to_us(clock.now()), user="maria", comment="closing"))
    clock.advance(600)
    await svc.pump()
    assert [n.target for n in email.sent] == ["ops@example.org"]


async def test_shelved_and_low_severity_alarms_do_not_notify(bus: Bus, clock: FakeClock) -> None:
    email = Recorder()
    svc = service(bus, clock, email, Recorder())
    st = AlarmState("Seeing.ASM:1")
    now = to_us(clock.now())
    await svc.accept(st.update(now, AlarmSeverity.WARNING, valid=True, reason="seeing 1.6"))
    st.shelve(now, user="maria", comment="known", until_us=now + 10**9, max_shelve=timedelta(hours=1))
    await svc.accept(st.update(now + 1, AlarmSeverity.CRITICAL, valid=True, reason="seeing 3"))
    clock.advance(3600)
    assert await svc.pump() == 0


async def test_a_missing_sender_is_a_logged_failure_not_a_drop(bus: Bus, clock: FakeClock,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(initial_us=US_PER_S, max_us=US_PER_S)
    svc = NotificationService(POLICY, outbox, {}, bus.redis, clock)
    _, events = raise_critical(clock)
    await svc.accept(events)
    with caplog.at_level(logging.ERROR):
        assert await svc.pump() == 0
    assert "no email sender is configured" in caplog.text
    assert len(svc.outbox.items) == 2


async def test_dispatcher_run_loop_stops_cleanly(bus: Bus, clock: FakeClock, archive: SqliteArchive) -> None:
    dispatcher = AlarmDispatcher(bus, archive, service(bus, clock, Recorder(), Recorder()), pump_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    _, events = raise_critical(clock)
    await bus.publish(streams.ALARM_EVENTS, codec.encode_alarm_events(events), retention=RETENTION)
    for _ in range(500):
        if dispatcher.notifications.sent == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert dispatcher.notifications.sent == 2
