"""Sending collected samples to the Mon Queue: processing per point, batching, one bus entry per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from collectors.domain.batching import split
from collectors.domain.processing import PointProcessor
from config_db.monitoring import QueueConfig
from skyops import codec
from skyops.bus import Bus
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES

log = logging.getLogger(__name__)


class SamplePublisher:
    """Processes batches and publishes them to `mon.samples`; `add` buffers, `flush` sends.

    A failed publish keeps the processed samples buffered for the next flush, so a short Redis
    outage costs latency, not data (up to `max_buffer` samples, after which the oldest go).
    """

    def __init__(self, bus: Bus, processor: PointProcessor, queue: QueueConfig, *,
                 stream: str = MON_SAMPLES, max_buffer: int = 1_000_000) -> None:
        self.bus = bus
        self.processor = processor
        self.queue = queue
        self.retention = queue.retention()
        self.stream = stream
        self.max_buffer = max_buffer
        self._pending: list[SampleBatch] = []
        self._pending_len = 0
        self._lock = asyncio.Lock()
        self.sent_samples = 0
        self.sent_entries = 0
        self.dropped = 0

    def add(self, batch: SampleBatch | Iterable[Sample]) -> int:
        """Process samples now (so suppression sees them in order) and queue what is to be sent."""
        if not isinstance(batch, SampleBatch):
            batch = SampleBatch.from_samples(batch)
        out = self.processor.process(batch)
        if len(out):
            self._pending.append(out)
            self._pending_len += len(out)
        while self._pending_len > self.max_buffer and self._pending:
            gone = self._pending.pop(0)
            self._pending_len -= len(gone)
            self.dropped += len(gone)
            log.error("Mon Queue unreachable too long: dropped %d buffered samples", len(gone))
        return len(out)

    @property
    def pending(self) -> int:
        return self._pending_len

    async def flush(self) -> int:
        """Publish everything buffered, `max_batch` samples per entry; returns samples sent."""
        async with self._lock:
            if not self._pending:
                return 0
            # Taken out before the await: samples added meanwhile wait for the next flush, never vanish.
            taken, self._pending = self._pending, []
            self._pending_len -= sum(len(b) for b in taken)
            batch = SampleBatch.concat(taken)
            size = self.queue.max_batch
            payloads = [codec.encode_samples(piece) for piece in split(batch, size)]
            try:
                await self.bus.publish_many(self.stream, payloads, retention=self.retention)
            except BaseException:
                self._pending[:0] = taken
                self._pending_len += len(batch)
                raise
            self.sent_samples += len(batch)
            self.sent_entries += len(payloads)
            return len(batch)

    async def publish(self, batch: SampleBatch | Iterable[Sample]) -> int:
        """`add` then `flush`."""
        self.add(batch)
        return await self.flush()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `flush_interval_s` until stopped (for collectors that only `add`)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.queue.flush_interval_s)
            try:
                await self.flush()
            except Exception as exc:  # Redis down: keep the buffer, try again next round
                log.warning("cannot publish %d samples to %s yet: %s", self.pending, self.stream, exc)
        with contextlib.suppress(Exception):
            await self.flush()
