"""The monitoring point dispatcher: consumes `mon.samples` in a group, fans out live, archives, then acknowledges."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from config_db.monitoring import DispatcherConfig
from skyops import codec
from skyops.archive.port import Archive
from skyops.bus import Bus, Entry, StreamConsumer
from skyops.errors import CodecError
from skyops.records import SampleBatch
from skyops.streams import LIVE_SAMPLES, MON_SAMPLES
from skyops.timeutil import Clock, SystemClock, to_us

log = logging.getLogger(__name__)


class Dispatcher:
    """One dispatcher of the `archive` group; start several (distinct `consumer` names) to share the load.

    Entries are acknowledged by the consumer loop only after the archive write returned, so a
    dispatcher that dies mid-batch leaves them pending and another one reclaims them; archive writes
    are idempotent, so the replay stores nothing twice. Under load each read takes up to
    `batch_size` entries, so a backlog is written in fewer, fuller packed blocks and drains faster.
    With a `live_channel` it also fans out, before the write; deployments run a `LiveFanout` in its
    own group instead, so that live data never waits behind the archive.
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
        self.archived = 0  # samples written
        self.corrupt_entries = 0
        self.unknown_samples = 0
        self.last_archive_latency_us: int | None = None  # producer → archived, newest entry of the last batch
        self.running = False

    @property
    def name(self) -> str:
        return self.consumer.consumer

    def _decode(self, entries: list[Entry]) -> list[SampleBatch]:
        batches = []
        for e in entries:
            try:
                batches.append(codec.decode_samples(e.payload))
            except CodecError as exc:
                # A poison entry must not block the stream: it is dropped (acked with the rest), loudly.
                self.corrupt_entries += 1
                log.error("%s: dropping undecodable entry %s of %s: %s", self.name, e.id, self.stream, exc)
        return batches

    def _known_only(self, batch: SampleBatch) -> SampleBatch:
        known = self.archive.known_points()
        mask = np.array([p in known for p in batch.points], dtype=bool)
        if mask.all():
            return batch
        rows = mask[batch.point_idx]
        dropped = int((~rows).sum())
        if dropped:
            self.unknown_samples += dropped
            names = sorted({batch.points[i] for i in np.unique(batch.point_idx[~rows]).tolist()})
            log.error("%s: dropping %d samples of points not in the configuration: %s", self.name, dropped,
                      ", ".join(names[:10]))
        return compact(batch.select(rows))

    async def handle(self, entries: list[Entry]) -> None:
        """Fan out, then archive one group of entries (raises on archive failure: they stay pending)."""
        if self.live_channel is not None:
            for e in entries:
                await self.bus.broadcast(self.live_channel, e.payload)
        batch = self._known_only(SampleBatch.concat(self._decode(entries)))
        await self.archive.write_samples(batch)
        self.archived += len(batch)
        produced = [e.produced_us for e in entries if e.produced_us is not None]
        if produced:
            self.last_archive_latency_us = to_us(self.clock.now()) - max(produced)

    async def flush_aggregates(self) -> int:
        return await self.archive.flush_aggregates()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; aggregates are flushed periodically and once more at the end."""
        self.running = True
        try:
            # The flusher is never cancelled mid-flush: it notices `stop` between two flushes.
            await asyncio.gather(self.consumer.run(stop), self._flush_loop(stop))
        finally:
            self.running = False
        try:
            await self.flush_aggregates()
        except Exception as exc:  # the raw data is safe; rebuild_aggregates can redo this later
            log.warning("%s: final aggregate flush failed: %s", self.name, exc)

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


def compact(batch: SampleBatch) -> SampleBatch:
    """The same samples with a point table holding only the points they use."""
    used, idx = np.unique(batch.point_idx, return_inverse=True)
    return SampleBatch(
        points=tuple(batch.points[i] for i in used.tolist()),
        point_idx=idx.astype(np.uint32),
        ts_us=batch.ts_us,
        kind=batch.kind,
        bits=batch.bits,
        quality=batch.quality,
        strings=batch.strings,
    )
