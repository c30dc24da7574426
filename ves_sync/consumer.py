"""The bus edge of the VES sync: plan events in (group "ves_sync"), health samples out on mon.samples."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from pydantic import ValidationError

from skyops.bus import Bus, Entry, StreamConsumer, StreamRetention
from skyops.codec import encode_samples
from skyops.messages import PlanEvent, decode_plan_event
from skyops.records import SampleBatch
from skyops.streams import MON_SAMPLES, PLAN_EVENTS
from skyops.timeutil import Clock
from ves_sync.domain.ves import SyncHealth, latest_per_night
from ves_sync.service import ObStatusChange, SyncReport, VesSyncService

log = logging.getLogger(__name__)

GROUP = "ves_sync"


class VesSyncConsumer:
    """Feeds plan events to `VesSyncService` in a worker thread, so p2api's blocking calls never stall the loop.

    A failed sync leaves its entries pending (the stream consumer retries them with backoff) and counts
    a failure in the health points; a plan event that cannot be decoded is logged with its reason and
    acknowledged, since no retry would ever make it readable.
    """

    def __init__(self, *, bus: Bus, service: VesSyncService, clock: Clock, samples_retention: StreamRetention,
                 consumer_name: str = "ves_sync-1", health_interval_s: float = 10.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, block_ms: int = 1000) -> None:
        if health_interval_s <= 0:
            raise ValueError("health_interval_s must be positive")
        self.bus = bus
        self.service = service
        self.clock = clock
        self.samples_retention = samples_retention
        self.health_interval_s = health_interval_s
        self.health = SyncHealth(clock.now())
        self.reports: deque[SyncReport] = deque(maxlen=100)
        # A sync and a status refresh both rewrite OB links; one at a time keeps them from interleaving.
        self._p2_turn = asyncio.Lock()
        self.undecodable = 0
        self.stream = StreamConsumer(
            bus, stream=PLAN_EVENTS, group=GROUP, consumer=consumer_name, handler=self.handle,
            batch_size=50, block_ms=block_ms, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
        )

    def _decode(self, entries: list[Entry]) -> list[PlanEvent]:
        events = []
        for entry in entries:
            try:
                events.append(decode_plan_event(entry.payload))
            except ValidationError as exc:
                self.undecodable += 1
                log.error("plan event %s on %s cannot be decoded and is dropped: %s", entry.id, PLAN_EVENTS,
                          exc.errors(include_url=False)[:3])
        return events

    async def handle(self, entries: list[Entry]) -> None:
        events = self._decode(entries)
        for event in events:
            self.health.plan_received(event.created)
        rejected = 0
        try:
            for event in latest_per_night(events):
                async with self._p2_turn:
                    report = await asyncio.to_thread(self.service.sync, event)
                self.reports.append(report)
                rejected += len(report.rejected)
        except Exception:
            self.health.failed()
            await self.publish_health()
            raise
        if events:
            self.health.succeeded(self.clock.now(), rejected_obs=rejected)
        await self.publish_health()

    async def publish_health(self) -> None:
        batch = SampleBatch.from_samples(self.health.samples(self.clock.now()))
        try:
            await self.bus.publish(MON_SAMPLES, encode_samples(batch), retention=self.samples_retention)
        except Exception as exc:  # health must never be the reason a sync is retried
            log.warning("could not publish VES-sync health: %s: %s", type(exc).__name__, exc)

    async def run_once(self) -> int:
        return await self.stream.run_once()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, publishing health every `health_interval_s` even when no plan arrives."""
        health = asyncio.create_task(self._health_loop(stop))
        try:
            await self.stream.run(stop)
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health

    async def refresh_statuses(self) -> list[ObStatusChange]:
        """Pull our OBs' statuses from P2 (executions show up here); failures are logged, not raised."""
        try:
            async with self._p2_turn:
                changes = await asyncio.to_thread(self.service.refresh_statuses)
        except Exception as exc:  # P2 down: the sync's own health already tells
            log.warning("could not read OB statuses from P2: %s: %s", type(exc).__name__, exc)
            return []
        for change in changes:
            log.info("OB %s (P2 %d) is now in status %r in P2 (was %r)", change.ob_id, change.p2_ob_id,
                     change.after, change.before)
        return changes

    async def _health_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish_health()
            await self.refresh_statuses()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.health_interval_s)
