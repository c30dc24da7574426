"""Live fan-out to HMI clients: one reader per stream per process, bounded queues per client.

Alarm events and log records are never dropped: a client whose queue overflows is told so and must
re-read the snapshot (its websocket is closed). Samples are coalesced per point, latest value wins, so a
slow client only sees fewer updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from skyops.bus import Bus, Entry
from skyops.codec import decode_alarm_events, decode_logs, decode_samples
from skyops.errors import BackendUnavailableError, CodecError
from skyops.messages import PlanEvent, decode_plan_event
from skyops.records import AlarmEvent, LogRecord, Quality, SampleBatch, Value, ValueKind
from skyops.streams import ALARM_EVENTS, LOG_RECORDS, MON_SAMPLES, PLAN_EVENTS

log = logging.getLogger(__name__)
T = TypeVar("T")


class SlowClientError(Exception):
    """The client fell further behind than its queue allows; it must re-read the snapshot."""


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id ("<ms>-<seq>") as a comparable pair; anything else is refused with the reason."""
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise ValueError(f"bad sequence {entry_id!r}: use the `seq` of the last update received") from None


class Subscriber(Generic[T]):
    """A bounded queue of (entry id, item); overflowing marks it lost instead of dropping silently."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[tuple[str, T]] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, entry_id: str, item: T) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((entry_id, item))
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake the reader so it notices at once rather than after draining.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(("", None))  # type: ignore[arg-type]

    async def get(self) -> tuple[str, T]:
        entry_id, item = await self.queue.get()
        if self.overflowed:
            raise SlowClientError("this client fell behind the live stream; re-read the snapshot and resubscribe")
        return entry_id, item


class StreamTap(Generic[T]):
    """Reads one stream from "now" and hands every decoded item to every attached subscriber."""

    def __init__(self, bus: Bus, stream: str, decode: Callable[[bytes], list[T]], *, block_ms: int = 1000) -> None:
        self.bus = bus
        self.stream = stream
        self._decode = decode
        self._block_ms = block_ms
        self._subscribers: set[Subscriber[T]] = set()
        self.position = "$"

    def attach(self, maxsize: int = 1000) -> Subscriber[T]:
        sub: Subscriber[T] = Subscriber(maxsize)
        self._subscribers.add(sub)
        return sub

    def detach(self, sub: Subscriber[T]) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start_position(self) -> None:
        self.position = await self.bus.last_id(self.stream)

    async def run(self, stop: asyncio.Event) -> None:
        if self.position == "$":
            await self.start_position()
        while not stop.is_set():
            try:
                entries = await self.bus.tail(self.stream, self.position, count=500, block_ms=self._block_ms)
            except BackendUnavailableError as exc:
                log.warning("live tap on %s: %s; retrying", self.stream, exc)
                await asyncio.sleep(1)
                continue
            for e in entries:
                self.position = e.id
                self.publish(e)

    def publish(self, e: Entry) -> None:
        try:
            items = self._decode(e.payload)
        except (CodecError, ValueError) as exc:  # pydantic's ValidationError is a ValueError: JSON messages fail so
            log.error("live tap on %s: entry %s undecodable: %s", self.stream, e.id, exc)
            return
        for sub in list(self._subscribers):
            for item in items:
                sub.offer(e.id, item)


async def resumable(tap: StreamTap[T], after: str | None, *, maxsize: int = 1000) -> AsyncIterator[tuple[str, T]]:
    """Items after stream id `after` (the client's last seen sequence) then live ones, none twice or missed.

    The subscriber attaches before the backlog is read, so nothing published in between is lost; items the
    backlog already delivered are skipped when they arrive live.
    """
    sub = tap.attach(maxsize)
    try:
        last: tuple[int, int] | None = None
        if after is not None:
            id_key(after)  # a malformed sequence fails here, before anything is sent
            cursor = after
            while True:
                backlog = await tap.bus.range_after(tap.stream, cursor, count=1000)
                for e in backlog:
                    for item in tap._decode(e.payload):
                        yield e.id, item
                    last = id_key(e.id)
                if len(backlog) < 1000:
                    break
                cursor = backlog[-1].id
        while True:
            entry_id, item = await sub.get()
            if last is not None and id_key(entry_id) <= last:
                continue
            yield entry_id, item
    finally:
        tap.detach(sub)


@dataclass(frozen=True)
class LatestValue:
    point: str
    ts_us: int
    value: Value
    quality: Quality


def latest_per_point(batch: SampleBatch) -> dict[str, LatestValue]:
    """The newest sample of each point in a batch (computed once per batch, shared by every client)."""
    if not len(batch):
        return {}
    b = batch.dedupe_sorted()
    idx = b.point_idx
    last = np.r_[np.flatnonzero(idx[1:] != idx[:-1]), len(b) - 1]
    # Columns first (numpy), Python objects only for the few values that are not floats.
    values: list[Value] = b.bits[last].view(np.float64).tolist()
    for j in np.flatnonzero(b.kind[last] != ValueKind.FLOAT).tolist():
        values[j] = b.value_at(int(last[j]))
    names = [b.points[i] for i in idx[last].tolist()]
    qualities = [_QUALITY[q] for q in b.quality[last].tolist()]
    return {name: LatestValue(name, ts, value, quality)
            for name, ts, value, quality in zip(names, b.ts_us[last].tolist(), values, qualities, strict=True)}


_QUALITY = {int(q): q for q in Quality}


class SampleHub:
    """Coalesced live samples: each client keeps only the newest value of each point it asked for."""

    def __init__(self, bus: Bus, stream: str, *, block_ms: int = 1000) -> None:
        self.tap: StreamTap[dict[str, LatestValue]] = StreamTap(
            bus, stream, lambda payload: [latest_per_point(decode_samples(payload))], block_ms=block_ms)
        self._clients: set[CoalescingClient] = set()

    def attach(self, points: set[str]) -> CoalescingClient:
        client = CoalescingClient(points)
        self._clients.add(client)
        return client

    def detach(self, client: CoalescingClient) -> None:
        self._clients.discard(client)

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def run(self, stop: asyncio.Event) -> None:
        sub = self.tap.attach(maxsize=10_000)
        reader = asyncio.create_task(self.tap.run(stop))
        getter: asyncio.Task[tuple[str, dict[str, LatestValue]]] | None = None
        try:
            while not stop.is_set():
                getter = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    break
                _, latest = getter.result()
                getter = None
                for client in list(self._clients):
                    client.offer(latest)
        finally:
            for task in (getter, reader):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self.tap.detach(sub)


class CoalescingClient:
    """Pending newest values for one client; `take` waits for at least one."""

    def __init__(self, points: set[str]) -> None:
        self.points = points
        self._pending: dict[str, LatestValue] = {}
        self._ready = asyncio.Event()

    def offer(self, latest: dict[str, LatestValue]) -> None:
        hit = False
        for p in self.points.intersection(latest):
            v = latest[p]
            old = self._pending.get(p)
            if old is None or v.ts_us >= old.ts_us:
                self._pending[p] = v
                hit = True
        if hit:
            self._ready.set()

    async def take(self) -> list[LatestValue]:
        await self._ready.wait()
        self._ready.clear()
        out, self._pending = self._pending, {}
        return sorted(out.values(), key=lambda v: v.point)




@dataclass
class LiveFeeds:
    """The process's live readers: alarm events, log records and coalesced samples."""

    alarms: StreamTap[AlarmEvent]
    logs: StreamTap[LogRecord]
    samples: SampleHub
    plans: StreamTap[PlanEvent]
    # One GraphQL execution and one JSON encoding per event for all identical subscriptions (off: per subscriber).
    shared_fanout: bool = True

    @classmethod
    def on(cls, bus: Bus, *, block_ms: int = 1000) -> LiveFeeds:
        return cls(
            alarms=StreamTap(bus, ALARM_EVENTS, decode_alarm_events, block_ms=block_ms),
            logs=StreamTap(bus, LOG_RECORDS, decode_logs, block_ms=block_ms),
            samples=SampleHub(bus, MON_SAMPLES, block_ms=block_ms),
            plans=StreamTap(bus, PLAN_EVENTS, lambda payload: [decode_plan_event(payload)], block_ms=block_ms),
        )

    async def latest_plan(self) -> tuple[str, PlanEvent] | None:
        """The newest plan on the bus (each plan event carries the whole night), or None before the first."""
        newest = await self.plans.bus.newest(PLAN_EVENTS)
        return None if newest is None else (newest.id, decode_plan_event(newest.payload))

    async def start_positions(self) -> None:
        """Pin "now" before clients subscribe, so an event published right after is not missed."""
        await asyncio.gather(self.alarms.start_position(), self.logs.start_position(),
                             self.samples.tap.start_position(), self.plans.start_position())

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.alarms.run(stop), self.logs.run(stop), self.samples.run(stop), self.plans.run(stop))
