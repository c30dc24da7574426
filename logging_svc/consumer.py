"""The log consumer: `log.records` → central priority filter → archive, then the live tail."""

from __future__ import annotations

import asyncio
import logging

from config_db.logging import LogFilters
from logging_svc.domain.filters import keep_central_batch
from skyops import codec, streams
from skyops.archive.port import Archive
from skyops.bus import Bus, Entry, StreamConsumer
from skyops.errors import CodecError
from skyops.records import LogBatch

log = logging.getLogger(__name__)


class LogConsumer:
    """One member of the consumer group that archives log batches.

    Entries are acknowledged (by StreamConsumer) only after the archive write returned; archive log
    writes are idempotent, so a batch replayed after a crash lands on the same rows. The live tail
    is best effort: pub/sub keeps no history, and a failed broadcast never holds a batch back.
    """

    def __init__(
        self,
        bus: Bus,
        archive: Archive,
        *,
        consumer: str,
        filters: LogFilters | None = None,
        group: str = "archive",
        stream: str = streams.LOG_RECORDS,
        live_channel: str = streams.LIVE_LOGS,
        batch_size: int = 20,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
    ) -> None:
        self.bus = bus
        self.archive = archive
        self.filters = filters or LogFilters()
        self.live_channel = live_channel
        self.loop = StreamConsumer(
            bus, stream=stream, group=group, consumer=consumer, handler=self.handle,
            batch_size=batch_size, block_ms=block_ms, min_idle_ms=min_idle_ms,
        )
        # Counters for /metrics: they only ever grow.
        self.archived = 0
        self.filtered_out = 0
        self.corrupt_entries = 0
        self.broadcast_failures = 0

    def update_filters(self, filters: LogFilters) -> None:
        """Change the per-source minimum levels; the next batch uses them."""
        self.filters = filters

    async def handle(self, entries: list[Entry]) -> None:
        filters = self.filters
        kept_per_entry: list[tuple[Entry, LogBatch, bool]] = []
        for entry in entries:
            try:
                batch = codec.decode_log_batch(entry.payload)
            except CodecError as exc:
                # It can never decode; holding it back would stall the group behind one bad entry.
                self.corrupt_entries += 1
                log.error("%s: skipping undecodable log entry %s: %s", self.loop.stream, entry.id, exc)
                continue
            kept = keep_central_batch(batch, filters)
            self.filtered_out += len(batch) - len(kept)
            kept_per_entry.append((entry, kept, len(kept) == len(batch)))
        batch = LogBatch.concat([kept for _, kept, _ in kept_per_entry if len(kept)])
        if len(batch):
            await self.archive.write_log_batch(batch)
        self.archived += len(batch)
        await self._broadcast(kept_per_entry)

    async def _broadcast(self, parts: list[tuple[Entry, LogBatch, bool]]) -> None:
        try:
            for entry, kept, whole in parts:
                if len(kept):
                    await self.bus.broadcast(self.live_channel,
                                             entry.payload if whole else codec.encode_log_batch(kept))
        except Exception as exc:  # the batch is archived; only the live view misses it
            self.broadcast_failures += 1
            log.warning("live log tail broadcast failed: %s: %s", type(exc).__name__, exc)

    async def run_once(self) -> int:
        return await self.loop.run_once()

    async def run(self, stop: asyncio.Event) -> None:
        await self.loop.run(stop)
