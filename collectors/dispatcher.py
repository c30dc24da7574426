"""The monitoring point dispatcher: consumes `mon.samples` in a group, fans out live, archives, then acknowledges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from collectors.domain.holding import HeldEntry, HoldPolicy, Release, SampleHold
from config_db.monitoring import DispatcherConfig
from skyops import codec
from skyops.archive.port import Archive
from skyops.bus import Bus, Entry, StreamConsumer
from skyops.errors import CodecError, UnknownPointError
from skyops.records import SampleBatch
from skyops.streams import LIVE_SAMPLES, MON_SAMPLES
from skyops.timeutil import US_PER_S, Clock, SystemClock, to_us

log = logging.getLogger(__name__)


class Dispatcher:
    """One dispatcher of the `archive` group; start several (distinct `consumer` names) to share the load.

    Samples are held per point until their archive block is complete (or for at most `hold_s`), so
    that one archive row carries a whole block: the archive's cost is per request, and a bus batch
    holds about one sample per point. The bus entries stay pending until the write that covers the
    last of their samples, and are touched meanwhile so that the group does not hand them to another
    dispatcher while this one is alive. A dispatcher that dies leaves them pending; another one
    reclaims them after `min_idle_ms` and writes them again. Chunks are keyed by their content and
    reads keep one sample per timestamp, so a replay that groups samples differently stores nothing
    twice as far as any reader can tell. Latest values are written every `latest_every_s` from the
    held samples, so the operator's latest values never wait for a block. A block write runs in the
    background, one at a time, while the dispatcher keeps reading; one write carries at most
    `max_write_samples`, so a backlog costs more writes, not more memory.

    With a `live_channel` it also fans out, before holding. The operator's page does not need it:
    the HMI tails `mon.samples` itself, so live data never waits behind the archive (a `LiveFanout`
    re-publishes batches on the pub/sub channel for other listeners when configured).
    """

    def __init__(
        self,
        bus: Bus,
        archive: Archive,
        config: DispatcherConfig,
        *,
        consumer: str,
        stream: str = MON_SAMPLES,
        live_channel: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.bus = bus
        self.archive = archive
        self.config = config
        self.stream = stream
        self.live_channel = live_channel
        self.clock: Clock = clock or SystemClock()
        self.consumer = StreamConsumer(
            bus,
            stream=stream,
            group=config.group,
            consumer=consumer,
            handler=self.handle,
            batch_size=config.batch_size,
            block_ms=config.block_ms,
            min_idle_ms=config.min_idle_ms,
        )
        self.hold = SampleHold(
            self._block_us,
            HoldPolicy.from_seconds(config.hold_s, config.block_grace_s, config.max_held_samples,
                                    config.max_write_samples),
        )
        self._lock = asyncio.Lock()
        self.archived = 0  # samples written
        self.writes = 0  # archive writes of held samples
        self.corrupt_entries = 0
        self.unknown_samples = 0
        self.write_failures = 0
        self.write_seconds = 0.0  # wall time spent in archive writes of held samples (for /metrics)
        self.consecutive_write_failures = 0
        self._retry_at_us = 0
        self._inflight: tuple[Release, asyncio.Task[None]] | None = None
        self.last_archive_latency_us: int | None = None  # producer → archived, newest entry of the last write
        self.running = False
        self._last_latest_us = 0
        self._last_touch_us = 0

    @property
    def name(self) -> str:
        return self.consumer.consumer

    def _block_us(self, point: str) -> int | None:
        try:
            return self.archive.retention_of(point).block_seconds * US_PER_S
        except UnknownPointError:
            return None

    def _decode(self, entry: Entry) -> SampleBatch | None:
        try:
            return codec.decode_samples(entry.payload)
        except CodecError as exc:
            # A poison entry must not block the stream: it is dropped (acked), loudly.
            self.corrupt_entries += 1
            log.error("%s: dropping undecodable entry %s of %s: %s", self.name, entry.id, self.stream, exc)
            return None

    async def handle(self, entries: list[Entry]) -> list[str]:
        """Fan out, hold, and start writing what is due; returns the entries now completely archived.

        A block write runs in the background (one at a time) while the next entries are read. Past
        `max_held_samples` the dispatcher writes in line instead and raises when that write fails, so
        that it stops reading (the entries stay pending and held, and the consumer's retry writes them).
        """
        if self.live_channel is not None:
            for e in entries:
                await self.bus.broadcast(self.live_channel, e.payload)
        async with self._lock:
            now_us = to_us(self.clock.now())
            done: list[str] = []
            for e in entries:
                if self.hold.holds(e.id):
                    continue  # delivered again (a retry or our own reclaim): its samples are held already
                batch = self._decode(e)
                if batch is None or not self._hold(e, batch, now_us):
                    done.append(e.id)
            done += await self._collect(wait=False)
            done += await self._write(now_us)
            return done

    def _hold(self, e: Entry, batch: SampleBatch, now_us: int) -> int:
        held = self.hold.add(e.id, batch, now_us=now_us, produced_us=e.produced_us)
        if self.hold.last_unknown:
            self.unknown_samples = self.hold.unknown_samples
            names = self.hold.last_unknown
            log.error("%s: dropping samples of %d points not in the configuration: %s", self.name, len(names),
                      ", ".join(names[:10]))
        return held

    async def _write(self, now_us: int) -> list[str]:
        """Start (or, without holding or past the memory bound, do) the writes that are due (under the lock)."""
        if self.hold.held_samples >= self.config.max_held_samples or self.config.hold_s == 0:
            done = await self._collect(wait=True)
            return done + await self._write_now(now_us, everything=self.config.hold_s > 0)
        if self._inflight is None and now_us >= self._retry_at_us and self.hold.due(now_us):
            release = self.hold.release(now_us)
            if release is not None:
                self._inflight = (release, asyncio.create_task(self._write_release(release)))
        return []

    async def _write_release(self, release: Release) -> None:
        t0 = time.perf_counter()
        await self.archive.write_samples(release.batch, latest=False)
        self.write_seconds += time.perf_counter() - t0

    async def _collect(self, *, wait: bool) -> list[str]:
        """Finish the background write (waiting for it with `wait`); the ids of the entries it completed."""
        if self._inflight is None:
            return []
        release, task = self._inflight
        if not task.done():
            if not wait:
                return []
            await asyncio.wait({task})
        self._inflight = None
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is not None:
            self._write_failed(len(release.batch), exc)
            return []
        return self._written(release)

    async def _write_now(self, now_us: int, *, everything: bool) -> list[str]:
        """Write what is due (all of it with `everything`) in line, `max_write_samples` at a time.

        Raises when a write fails; what earlier writes completed is acknowledged by the caller's retry.
        """
        done: list[str] = []
        while (release := self.hold.release(now_us, everything=everything)) is not None:
            try:
                await self._write_release(release)
            except Exception as exc:
                self._write_failed(len(release.batch), exc)
                if done:
                    await self.bus.ack(self.stream, self.config.group, done)
                raise
            done += self._written(release)
        return done

    def _written(self, release: Release) -> list[str]:
        done = self.hold.commit(release)
        self.archived += len(release.batch)
        self.writes += 1
        self.consecutive_write_failures = 0
        self._retry_at_us = 0
        self._archived(done)
        return [h.entry_id for h in done]

    def _write_failed(self, samples: int, exc: BaseException) -> None:
        self.write_failures += 1
        self.consecutive_write_failures += 1
        # The samples stay held; the next attempt waits, doubling, so a down archive is not hammered.
        delay_s = min(0.5 * 2 ** min(self.consecutive_write_failures - 1, 10), 10.0)
        self._retry_at_us = to_us(self.clock.now()) + int(delay_s * US_PER_S)
        log.warning("%s: archive write of %d held samples failed, retrying in %.1f s: %s: %s", self.name, samples,
                    delay_s, type(exc).__name__, exc)

    async def settle(self) -> None:
        """Wait for the write in flight and acknowledge the entries it completed."""
        async with self._lock:
            done = await self._collect(wait=True)
            if done:
                await self.bus.ack(self.stream, self.config.group, done)

    def _archived(self, done: list[HeldEntry]) -> None:
        produced = [h.produced_us for h in done if h.produced_us is not None]
        if produced:
            self.last_archive_latency_us = to_us(self.clock.now()) - max(produced)

    async def tick(self) -> None:
        """Time-driven work between reads: write what waited long enough, latest values, touch held entries."""
        async with self._lock:
            now_us = to_us(self.clock.now())
            # Held entries are touched first: while the archive is down they must stay ours all the more.
            touch_every_us = self.config.min_idle_ms * 1000 // 3
            if touch_every_us and now_us - self._last_touch_us >= touch_every_us:
                self._last_touch_us = now_us
                await self.bus.touch(self.stream, self.config.group, self.name, self.hold.entry_ids(),
                                     min_idle_ms=self.config.min_idle_ms // 6)
            done = await self._collect(wait=False)
            try:
                done += await self._write(now_us)
            except Exception as exc:  # counted and logged by the write; the samples stay held
                log.debug("%s: held write failed in the tick: %s", self.name, exc)
            if done:
                await self.bus.ack(self.stream, self.config.group, done)
            if now_us - self._last_latest_us >= self.config.latest_every_s * 1e6:
                self._last_latest_us = now_us
                await self.write_latest()

    async def write_latest(self) -> None:
        """Write the newest held value of every point that changed since the last time."""
        latest = self.hold.latest()
        if latest is not None:
            await self.archive.write_latest(latest)
            self.hold.latest_written(latest)

    async def drain(self, *, attempts: int = 4, backoff_s: float = 0.5) -> None:
        """Write and acknowledge everything held (a stop), retrying a busy archive a few times.

        Raises if it still fails: the entries stay pending, for a restart or another dispatcher.
        """
        async with self._lock:
            done = await self._collect(wait=True)
            for attempt in range(attempts):
                try:
                    done += await self._write_now(to_us(self.clock.now()), everything=True)
                    break
                except Exception:
                    if attempt == attempts - 1:
                        if done:
                            await self.bus.ack(self.stream, self.config.group, done)
                        raise
                    await asyncio.sleep(backoff_s * 2**attempt)
            if done:
                await self.bus.ack(self.stream, self.config.group, done)
            await self.write_latest()

    async def flush_aggregates(self) -> int:
        return await self.archive.flush_aggregates()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then write what is held; aggregates are flushed periodically and at the end."""
        self.running = True
        try:
            # The flusher is never cancelled mid-flush: it notices `stop` between two flushes.
            await asyncio.gather(self.consumer.run(stop), self._flush_loop(stop), self._tick_loop(stop))
            try:
                await self.drain()
            except Exception as exc:  # the entries are still pending: a restart or another dispatcher redoes them
                log.warning("%s: final write of held samples failed: %s: %s", self.name, type(exc).__name__, exc)
        finally:
            self.running = False
            if self._inflight is not None and not self._inflight[1].done():
                # Killed mid-write: the write may or may not land, the entries stay pending either way.
                self._inflight[1].cancel()
        try:
            await self.flush_aggregates()
        except Exception as exc:  # the raw data is safe; rebuild_aggregates can redo this later
            log.warning("%s: final aggregate flush failed: %s", self.name, exc)

    def _tick_s(self) -> float:
        c = self.config
        periods = [c.latest_every_s, 1.0]
        if c.hold_s:
            periods.append(c.hold_s / 4)
        if c.min_idle_ms:
            periods.append(c.min_idle_ms / 1000 / 6)
        return max(0.01, min(periods))

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._tick_s())
            if stop.is_set():
                return
            try:
                await self.tick()
            except Exception as exc:  # the bus or the archive is down: held data waits for the next tick
                log.warning("%s: %s: %s", self.name, type(exc).__name__, exc)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.flush_aggregates_every_s)
            try:
                await self.flush_aggregates()
            except Exception as exc:  # hours stay dirty and are retried next round
                log.warning("%s: aggregate flush failed, will retry: %s", self.name, exc)


class LiveFanout:
    """Forwards `mon.samples` batches to the live channel as one consumer of its own group ("live").

    Kept apart from the archive dispatchers so the operator's page never waits behind a slow
    archive: the archive group may lag by seconds under load while this one stays current. Batches
    are forwarded as they are (no decoding); a consumer restarted after a crash may forward a batch
    twice, which a live view shrugs off.
    """

    def __init__(self, bus: Bus, *, consumer: str, stream: str = MON_SAMPLES, channel: str = LIVE_SAMPLES,
                 group: str = "live", batch_size: int = 100, block_ms: int = 200) -> None:
        self.bus = bus
        self.channel = channel
        # A new group starts at the end of the stream: a live view has no use for old batches.
        self.consumer = StreamConsumer(bus, stream=stream, group=group, consumer=consumer, handler=self.handle,
                                       batch_size=batch_size, block_ms=block_ms, min_idle_ms=5_000,
                                       group_start="$")
        self.forwarded = 0

    async def handle(self, entries: list[Entry]) -> None:
        for e in entries:
            await self.bus.broadcast(self.channel, e.payload)
        self.forwarded += len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.run(stop)
