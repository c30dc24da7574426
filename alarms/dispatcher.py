"""The alarm dispatcher: archives alarm events, fans them out to the HMI, and notifies (with escalation and retry)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping

import redis.asyncio as aioredis

from alarms.domain.notify import EscalationTracker, Notification, NotificationPolicy, Outbox, OutboxItem
from alarms.notify import Sender
from skyops import codec, streams
from skyops.archive.port import Archive
from skyops.bus import Bus, Entry, StreamConsumer
from skyops.errors import CodecError
from skyops.records import AlarmEvent
from skyops.timeutil import Clock, to_us

log = logging.getLogger(__name__)

GROUP = "alarm-dispatch"
OUTBOX_KEY = "alarms:outbox"  # hash: notification id → JSON of the pending item
ESCALATION_KEY = "alarms:escalation"  # hash: alarm id → the raise event and whether it escalated


class NotificationService:
    """Policy, escalation and the outbox, persisted in Redis so a restart loses no pending notification."""

    def __init__(
        self, policy: NotificationPolicy, outbox: Outbox, senders: Mapping[str, Sender], redis: aioredis.Redis,
        clock: Clock, *, prefix: str = "",
    ) -> None:
        self.outbox_key = prefix + OUTBOX_KEY
        self.escalation_key = prefix + ESCALATION_KEY
        self.policy = policy
        self.outbox = outbox
        self.escalation = EscalationTracker(policy.escalation_delay_us)
        self.senders = dict(senders)
        self.redis = redis
        self.clock = clock
        self.sent = 0
        self.failures = 0

    async def restore(self) -> None:
        for raw in (await self.redis.hgetall(self.outbox_key)).values():
            item = OutboxItem.load(json.loads(raw))
            self.outbox.items[item.notification.id] = item
        raw_events = await self.redis.hgetall(self.escalation_key)
        for raw in raw_events.values():
            data = json.loads(raw)
            events = codec.decode_alarm_events(bytes.fromhex(data["event"]))
            self.escalation.pending[events[0].alarm_id] = (events[0], bool(data["escalated"]))

    async def accept(self, events: list[AlarmEvent]) -> None:
        """Queue what these events call for; persisted before the caller acknowledges them."""
        now_us = to_us(self.clock.now())
        added = self.outbox.add(self.policy.for_events(events), now_us)
        self.escalation.observe(events)
        await self._persist(added, [])
        await self._persist_escalation()

    async def pump(self) -> int:
        """Escalate what is due and try every notification whose time has come; returns how many were sent."""
        now_us = to_us(self.clock.now())
        escalate = self.escalation.due(now_us)
        if escalate:
            for event in escalate:
                log.warning("escalating %s: CRITICAL and unacknowledged since %s", event.alarm_id, event.ts)
            await self._persist(self.outbox.add(
                [n for e in escalate for n in self.policy.escalation(e, now_us)], now_us), [])
            await self._persist_escalation()
        sent = 0
        for item in self.outbox.due(now_us):
            n = item.notification
            sender = self.senders.get(n.channel)
            try:
                if sender is None:
                    raise RuntimeError(f"no {n.channel} sender is configured")
                await sender.send(n)
            except Exception as exc:  # any delivery failure is retried; the reason is logged each time
                self.failures += 1
                delay = self.outbox.failed(item, now_us, f"{type(exc).__name__}: {exc}")
                log.error("notification %s to %s failed (attempt %d), retrying in %.0f s: %s", n.id, n.target,
                          item.attempts, delay / 1e6, item.last_error)
                await self._persist([item], [])
                continue
            self.outbox.succeeded(item)
            await self._persist([], [n])
            self.sent += 1
            sent += 1
            log.info("notification %s sent to %s", n.id, n.target)
        return sent

    async def _persist(self, items: list[OutboxItem], done: list[Notification]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if items:
                pipe.hset(self.outbox_key, mapping={i.notification.id: json.dumps(i.dump()) for i in items})
            if done:
                pipe.hdel(self.outbox_key, *[n.id for n in done])
            await pipe.execute()

    async def _persist_escalation(self) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.escalation_key)
            if self.escalation.pending:
                pipe.hset(self.escalation_key, mapping={
                    a: json.dumps({"event": codec.encode_alarm_events([e]).hex(), "escalated": done})
                    for a, (e, done) in self.escalation.pending.items()
                })
            await pipe.execute()


class AlarmDispatcher:
    """Consumes `alarm.events`: archive first (idempotent), then live fan-out, then notifications."""

    def __init__(self, bus: Bus, archive: Archive, notifications: NotificationService, *,
                 consumer: str = "dispatcher-1", pump_s: float = 1.0, events_stream: str = streams.ALARM_EVENTS,
                 live_channel: str = streams.LIVE_ALARMS) -> None:
        self.live_channel = live_channel
        self.bus = bus
        self.archive = archive
        self.notifications = notifications
        self.pump_s = pump_s
        self.bad_payloads = 0
        self.consumer = StreamConsumer(bus, stream=events_stream, group=GROUP, consumer=consumer,
                                       handler=self.handle, group_start="0")

    async def handle(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                events = codec.decode_alarm_events(entry.payload)
            except CodecError as exc:
                self.bad_payloads += 1
                log.error("alarm.events entry %s skipped: %s", entry.id, exc)
                continue
            await self.archive.write_alarm_events(events)
            await self.bus.broadcast(self.live_channel, entry.payload)
            await self.notifications.accept(events)

    async def run(self, stop: asyncio.Event) -> None:
        await self.notifications.restore()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.consumer.run(stop))
            tg.create_task(self._pump(stop))

    async def _pump(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.notifications.pump()
            except Exception as exc:  # Redis down while persisting: pending items stay in memory and retry
                log.warning("notification pump failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.pump_s)
