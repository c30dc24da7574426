"""The alarm supervisor: evaluates the rules on `mon.samples`, applies operator actions, publishes what changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from alarms.commands import ALARM_COMMANDS, AlarmCommand, CommandReply, send_reply
from alarms.domain.engine import AlarmEngine, Outcome
from alarms.domain.state import AckRefusedError, AlarmActionError
from alarms.store import AlarmStateStore
from skyops import codec, streams
from skyops.bus import Bus, Entry, StreamConsumer, StreamRetention
from skyops.errors import CodecError
from skyops.records import AlarmEvent, SampleBatch
from skyops.timeutil import Clock

log = logging.getLogger(__name__)

GROUP = "alarms"
EVENTS_RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(days=2))
TRIGGERS_RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=2))


@dataclass(frozen=True)
class SupervisorOptions:
    consumer: str = "supervisor-1"
    batch_size: int = 50
    block_ms: int = 200
    tick_s: float = 1.0
    mirror_every_s: float = 10.0
    # Entries are evaluated together up to this many samples, then their events go out before the next
    # are decoded: a backlog drains in steps and the first alarms do not wait for the last entry.
    chunk_samples: int = 25_000
    samples_stream: str = streams.MON_SAMPLES
    events_stream: str = streams.ALARM_EVENTS
    triggers_stream: str = streams.PLAN_TRIGGERS
    commands_stream: str = ALARM_COMMANDS
    events_retention: StreamRetention = EVENTS_RETENTION
    triggers_retention: StreamRetention = TRIGGERS_RETENTION


class AlarmSupervisor:
    """The single writer of alarm state: samples and operator commands go through it in one event loop.

    Events are published before the state is saved: after a crash in between, the batch is handled
    again and may repeat events (the archive keeps them by alarm, time and sequence), never lose them.
    """

    def __init__(
        self, engine: AlarmEngine, bus: Bus, store: AlarmStateStore, clock: Clock,
        options: SupervisorOptions | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.store = store
        self.clock = clock
        self.options = options or SupervisorOptions()
        o = self.options
        self.samples = StreamConsumer(
            bus, stream=o.samples_stream, group=GROUP, consumer=o.consumer, handler=self.handle_samples,
            batch_size=o.batch_size, block_ms=o.block_ms, group_start="$",
        )
        self.commands = StreamConsumer(
            bus, stream=o.commands_stream, group=GROUP, consumer=o.consumer, handler=self.handle_commands,
            batch_size=o.batch_size, block_ms=o.block_ms, group_start="$",
        )
        self.bad_payloads = 0
        self.future_samples = 0  # samples refused for being dated in the future
        self.events_published = 0
        self.triggers_published = 0
        self._last_mirror = 0.0
        self._replies: dict[str, CommandReply] = {}
        self._unsent = Outcome()

    async def start(self) -> None:
        """Restore saved state and publish the rule descriptions readers show."""
        saved, values = await self.store.load()
        report = self.engine.restore(saved)
        try:
            self.engine.restore_values(values)
        except (KeyError, ValueError, TypeError) as exc:
            log.error("saved input values are unreadable, inputs start unknown: %s", exc)
        if report.orphans:
            log.warning("saved state of alarms no longer configured was dropped: %s", ", ".join(sorted(report.orphans)))
            await self.store.forget(report.orphans)
        for alarm_id, why in report.unreadable.items():
            log.error("saved state of %s is unreadable, it starts afresh: %s", alarm_id, why)
        log.info("alarm supervisor restored %d alarm states", report.restored)
        await self.store.publish_rules({a: rt.rule.describe() for a, rt in self.engine.alarms.items()})
        await self.store.save(self.engine.dump())
        await self.bus.ensure_group(self.options.samples_stream, GROUP, start="$")
        await self.bus.ensure_group(self.options.commands_stream, GROUP, start="$")

    # --- handlers -----------------------------------------------------------------------------
    async def handle_samples(self, entries: list[Entry]) -> None:
        batches: list[SampleBatch] = []
        size = 0
        for entry in entries:
            try:
                batch = codec.decode_samples(entry.payload)
            except CodecError as exc:
                # One corrupt entry must not block the stream: it is logged and skipped.
                self.bad_payloads += 1
                log.error("%s entry %s skipped: %s", self.options.samples_stream, entry.id, exc)
                continue
            batches.append(batch)
            size += len(batch)
            if size >= self.options.chunk_samples:
                await self._evaluate(batches)
                batches, size = [], 0
        if batches:
            await self._evaluate(batches)

    async def _evaluate(self, batches: list[SampleBatch]) -> None:
        outcome = self.engine.process(SampleBatch.concat(batches), self.clock.now())
        if outcome.future:
            self.future_samples += outcome.future
            log.warning("%d samples dated more than %s ahead of the alarm supervisor's clock were ignored "
                        "(a collector's clock is wrong?), e.g. of %s", outcome.future,
                        timedelta(microseconds=self.engine.max_future_us), ", ".join(outcome.future_points))
        await self.emit(outcome)

    async def handle_commands(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                command = AlarmCommand.model_validate_json(entry.payload)
            except ValidationError as exc:
                self.bad_payloads += 1
                log.error("%s entry %s skipped: %s", self.options.commands_stream, entry.id, exc)
                continue
            reply = self._replies.get(command.request_id)
            if reply is None:
                # A command handled again (its stream ack was lost) gets its first answer, not a second action.
                events, error = self.apply(command)
                reply = CommandReply(request_id=command.request_id, ok=error is None, error=error, events=len(events))
                self._replies[command.request_id] = reply
                while len(self._replies) > 1000:
                    self._replies.pop(next(iter(self._replies)))
                self._unsent.extend(Outcome(events=events, changed={command.alarm_id} if events else set()))
            await self.emit(Outcome())
            await send_reply(self.bus.redis, reply)

    async def act(self, command: AlarmCommand) -> tuple[list[AlarmEvent], str | None]:
        """Apply an operator action and publish and save what it caused."""
        events, error = self.apply(command)
        await self.emit(Outcome(events=events, changed={command.alarm_id} if events else set()))
        return events, error

    def apply(self, command: AlarmCommand) -> tuple[list[AlarmEvent], str | None]:
        """Carry out one operator action; a refusal comes back as its reason (and, for an ack, its event)."""
        now = self.clock.now()
        e = self.engine
        try:
            if command.action == "ack":
                events = e.ack(command.alarm_id, now, user=command.user, comment=command.comment, seen=command.seen)
            elif command.action == "shelve":
                if command.until is None:
                    return [], "shelving needs an expiry (until)"
                events = e.shelve(command.alarm_id, now, user=command.user, comment=command.comment,
                                  until=command.until)
            elif command.action == "unshelve":
                events = e.unshelve(command.alarm_id, now, user=command.user, comment=command.comment)
            else:
                events = e.comment(command.alarm_id, now, user=command.user, comment=command.comment)
        except AckRefusedError as exc:
            return [exc.event], str(exc)
        except AlarmActionError as exc:
            return [], str(exc)
        log.info("%s %s by %s: %s", command.action, command.alarm_id, command.user, command.comment)
        return events, None

    async def tick(self) -> None:
        await self.emit(self.engine.tick(self.clock.now()))

    async def emit(self, outcome: Outcome) -> None:
        """Publish and save what an evaluation produced, with whatever an earlier failed call left behind.

        The engine has already moved on when this runs, so a retried batch would not produce the same
        events again: what could not be published stays queued here until Redis takes it.
        """
        self._unsent.extend(outcome)
        pending = self._unsent
        pending.future, pending.future_points = 0, ()  # already logged by `_evaluate`
        if pending.events:
            await self.bus.publish(self.options.events_stream, codec.encode_alarm_events(pending.events),
                                   retention=self.options.events_retention)
            self.events_published += len(pending.events)
            pending.events = []
        if pending.triggers:
            await self.bus.publish_many(self.options.triggers_stream, [t.encode() for t in pending.triggers],
                                        retention=self.options.triggers_retention)
            self.triggers_published += len(pending.triggers)
            pending.triggers = []
        if pending.changed:
            await self.store.save(self.engine.dump(pending.changed))
            pending.changed = set()

    async def save_all(self) -> None:
        """Save the input values and write the mirror file (alarm states are saved as they change)."""
        await self.store.save_values(self.engine.dump_values())
        await asyncio.to_thread(self.store.write_mirror)

    # --- loop ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.samples.run(stop))
                tg.create_task(self.commands.run(stop))
                tg.create_task(self._ticks(stop))
        finally:
            await self.save_all()

    async def _ticks(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self.tick()
                if loop.time() - self._last_mirror >= self.options.mirror_every_s:
                    self._last_mirror = loop.time()
                    await self.save_all()
            except Exception as exc:  # Redis down: the next tick tries again, state is still in memory
                log.warning("alarm tick failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.tick_s)
