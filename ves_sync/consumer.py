"""The bus edge of the VES sync: plan events in (group "ves_sync"); health on mon.samples, OB links and P2
statuses on p2.obs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import timedelta

from pydantic import ValidationError

from skyops.bus import Bus, Entry, StreamConsumer, StreamRetention
from skyops.codec import encode_samples
from skyops.messages import P2ObLinked, P2ObStatus, PlanEvent, decode_plan_event
from skyops.records import SampleBatch
from skyops.streams import MON_SAMPLES, P2_OBS, PLAN_EVENTS
from skyops.timeutil import Clock
from ves_sync.domain.ves import SyncHealth, latest_per_night
from ves_sync.service import LinkedOb, ObStatusChange, SyncReport, VesSyncService

log = logging.getLogger(__name__)

GROUP = "ves_sync"
# A month of OB links and statuses: a planner down that long still finds every execution on restart.
P2_OBS_RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(days=30))
# Announced again at every start (healing anything lost before): an execution is final, unlike start or abort.
FINAL_STATUSES = frozenset({"X"})


class VesSyncConsumer:
    """Feeds plan events to `VesSyncService` in a worker thread, so p2api's blocking calls never stall the loop.

    A failed sync leaves its entries pending (the stream consumer retries them with backoff) and counts
    a failure in the health points; a plan event that cannot be decoded is logged with its reason and
    acknowledged, since no retry would ever make it readable.
    """

    def __init__(self, *, bus: Bus, service: VesSyncService, clock: Clock, samples_retention: StreamRetention,
                 consumer_name: str = "ves_sync-1", health_interval_s: float = 10.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, block_ms: int = 1000,
                 p2_obs_retention: StreamRetention = P2_OBS_RETENTION, plan_events_stream: str = PLAN_EVENTS,
                 p2_obs_stream: str = P2_OBS, samples_stream: str = MON_SAMPLES) -> None:
        if health_interval_s <= 0:
            raise ValueError("health_interval_s must be positive")
        self.bus = bus
        self.service = service
        self.clock = clock
        self.samples_retention = samples_retention
        self.p2_obs_retention = p2_obs_retention
        self.p2_obs_stream = p2_obs_stream
        self.samples_stream = samples_stream
        self.health_interval_s = health_interval_s
        self.health = SyncHealth(clock.now())
        self.reports: deque[SyncReport] = deque(maxlen=100)
        # A sync and a status refresh both rewrite OB links; one at a time keeps them from interleaving.
        self._p2_turn = asyncio.Lock()
        self.undecodable = 0
        self.stream = StreamConsumer(
            bus, stream=plan_events_stream, group=GROUP, consumer=consumer_name, handler=self.handle,
            batch_size=50, block_ms=block_ms, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
        )

    def _decode(self, entries: list[Entry]) -> list[PlanEvent]:
        events = []
        for entry in entries:
            try:
                events.append(decode_plan_event(entry.payload))
            except ValidationError as exc:
                self.undecodable += 1
                log.error("plan event %s on %s cannot be decoded and is dropped: %s", entry.id, self.stream.stream,
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
                    # Raises if the bus cannot take them: the plan is then synced again (a no-op) and
                    # re-announced.
                    await self.publish_p2_obs(report.links, report.status_changes)
                    # Published, so remembered, or the next refresh would publish them again; the sync
                    # already remembered the OBs it wrote, with a status newer than the one it saw first.
                    written = set(report.created) | set(report.updated)
                    await asyncio.to_thread(self.service.remember_statuses,
                                            [c for c in report.status_changes if c.ob_id not in written])
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
            await self.bus.publish(self.samples_stream, encode_samples(batch), retention=self.samples_retention)
        except Exception as exc:  # health must never be the reason a sync is retried
            log.warning("could not publish VES-sync health: %s: %s", type(exc).__name__, exc)

    async def run_once(self) -> int:
        return await self.stream.run_once()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, publishing health every `health_interval_s` even when no plan arrives."""
        await self.announce()
        health = asyncio.create_task(self._health_loop(stop))
        try:
            await self.stream.run(stop)
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health

    async def refresh_statuses(self) -> list[ObStatusChange]:
        """Pull our OBs' statuses from P2 (executions show up here) and publish the changes on `p2.obs`
        before remembering them, so a change the bus did not take is found again next time. Failures are
        logged, not raised."""
        try:
            async with self._p2_turn:
                changes = await asyncio.to_thread(self.service.read_status_changes)
                if changes:
                    await self.publish_p2_obs((), changes)
                    await asyncio.to_thread(self.service.remember_statuses, changes)
        except Exception as exc:  # P2 or the bus down: the sync's own health already tells
            log.warning("could not pass on OB statuses from P2: %s: %s", type(exc).__name__, exc)
            return []
        for change in changes:
            log.info("OB %s (P2 %d) is now in status %r in P2 (was %r)", change.ob_id, change.p2_ob_id,
                     change.after, change.before)
        return changes

    async def publish_p2_obs(self, links: Sequence[LinkedOb], changes: Sequence[ObStatusChange]) -> int:
        """Links, then status changes, on `p2.obs` in one round trip; returns how many were published."""
        now = self.clock.now()
        payloads = [P2ObLinked(ob_id=link.ob_id, p2_ob_id=link.p2_ob_id, p2_version=link.p2_version, ts=now).encode()
                    for link in links]
        payloads += [P2ObStatus(ob_id=c.ob_id, p2_ob_id=c.p2_ob_id, status=c.after, previous=c.before, ts=now,
                                execution_end=c.execution_end).encode()
                     for c in changes]
        if payloads:
            await self.bus.publish_many(self.p2_obs_stream, payloads, retention=self.p2_obs_retention)
        return len(payloads)

    async def announce(self) -> int:
        """Publish every OB link we hold, with the executions already seen: whatever a planner missed (it was
        down, the bus lost an entry, links predate this stream) reaches it again. Failures are logged."""
        try:
            known = await asyncio.to_thread(self.service.linked_obs)
            executed = [ObStatusChange(link.ob_id, link.p2_ob_id, "", status)
                        for link, status in known if status in FINAL_STATUSES]
            executed = await asyncio.to_thread(self.service.with_execution_ends, executed)
            return await self.publish_p2_obs([link for link, _ in known], executed)
        except Exception as exc:
            log.warning("could not announce the OBs in P2: %s: %s", type(exc).__name__, exc)
            return 0

    async def _health_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish_health()
            await self.refresh_statuses()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.health_interval_s)
