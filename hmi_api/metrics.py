"""Prometheus metrics of the platform, on a registry per app (never the global one, so apps stay independent)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from hmi_api.graphql.fanout import LIVE_FANOUT
from hmi_api.planops import replan_seconds
from skyops.bus import Bus
from skyops.errors import SkyopsError
from skyops.messages import decode_plan_event
from skyops.streams import ALARM_EVENTS, LOG_RECORDS, MON_SAMPLES, PLAN_EVENTS, PLAN_TRIGGERS

if TYPE_CHECKING:
    from hmi_api.graphql.context import HmiServices

log = logging.getLogger(__name__)

# The metric's feed label → the GraphQL subscription field behind it.
LIVE_FIELDS = {"alarms": "alarmEvents", "logs": "logEntries", "samples": "samples", "plans": "planChanges"}

# The consumer groups of the platform, by stream: their lag is what an operator watches for a stuck service.
GROUPS: Mapping[str, Sequence[str]] = {
    MON_SAMPLES: ("archive", "live", "alarms", "planner-execution"),
    LOG_RECORDS: ("archive",),
    ALARM_EVENTS: ("alarm-dispatch",),
    PLAN_TRIGGERS: ("planner",),
    PLAN_EVENTS: ("ves_sync",),
}
# Re-plans take from well under a second (a dome closing) to tens of seconds (a full night on a busy host).
REPLAN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
VES_HEALTH = ("skyops.ves_sync.last_success_age_s", "skyops.ves_sync.consecutive_failures", "skyops.ves_sync.lag_s")


class Metrics:
    """The HMI's metrics; `refresh` reads the platform's state (bus, alarms, VES health) into gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.logins = Counter("skyops_hmi_logins", "Login attempts", ["result"], registry=self.registry)
        self.stream_length = Gauge("skyops_stream_length", "Entries held by a bus stream", ["stream"],
                                   registry=self.registry)
        self.stream_lag = Gauge("skyops_stream_lag", "Entries a consumer group has not yet acknowledged",
                                ["stream", "group"], registry=self.registry)
        self.live_subscriptions = Gauge("skyops_hmi_live_subscriptions", "Live GraphQL subscriptions by feed",
                                        ["feed"], registry=self.registry)
        self.alarms_active = Gauge("skyops_alarms_active", "Alarms needing attention by severity", ["severity"],
                                   registry=self.registry)
        self.ves_health = Gauge("skyops_ves_sync_health", "VES-sync health points (latest values)", ["point"],
                                registry=self.registry)
        self.plans = Counter("skyops_plans_published", "Night plans published, by what caused them",
                             ["cause"], registry=self.registry)
        self.replan_seconds = Histogram("skyops_replan_duration_seconds",
                                        "From a re-plan trigger to its published plan", ["cause"],
                                        buckets=REPLAN_BUCKETS, registry=self.registry)
        self.ves_sync_ok = Gauge("skyops_ves_sync_ok", "1 when the last VES sync succeeded, 0 after failures",
                                 registry=self.registry)
        self.ves_last_change = Gauge("skyops_ves_last_change_timestamp_seconds",
                                     "When the VES sync last changed the operator's VES", registry=self.registry)
        self._plan_position: str | None = None
        self.refresh_failures = Counter("skyops_metrics_refresh_failures", "Metric refreshes that failed",
                                        ["part"], registry=self.registry)

    async def observe_plans(self, bus: Bus) -> int:
        """Count plans published since the last call and how long their re-plans took; returns how many.

        The first call only notes where the stream ends: a restart must not count old plans again.
        """
        if self._plan_position is None:
            self._plan_position = await bus.last_id(PLAN_EVENTS)
            return 0
        entries = await bus.range_after(PLAN_EVENTS, self._plan_position, count=1000)
        for entry in entries:
            self._plan_position = entry.id
            try:
                event = decode_plan_event(entry.payload)
            except ValidationError:
                continue  # the consumers of plan.events report undecodable entries
            cause = event.trigger.kind if event.trigger else "scheduled"
            self.plans.labels(cause=cause).inc()
            seconds = replan_seconds(event)
            if seconds is not None:
                self.replan_seconds.labels(cause=cause).observe(seconds)
        return len(entries)

    async def refresh(self, services: HmiServices) -> None:
        """Read bus, live-feed, alarm and VES-sync state; a part that fails is counted, the rest still refresh."""
        bus = services.bus or (services.live.alarms.bus if services.live is not None else None)
        if bus is not None:
            try:
                await self.observe_plans(bus)
            except SkyopsError as exc:
                self.refresh_failures.labels(part="plans").inc()
                log.warning("metrics: plan events unavailable: %s", exc)
        if services.live is not None:
            live = services.live
            fanout = services.extras.get(LIVE_FANOUT)
            for feed, n in (("alarms", live.alarms.subscribers), ("logs", live.logs.subscribers),
                            ("samples", live.samples.clients), ("plans", live.plans.subscribers)):
                # Shared subscriptions tap the bus once per group: count the client operations behind them.
                if fanout is not None:
                    field = LIVE_FIELDS[feed]
                    n += fanout.clients(field) - fanout.groups_of(field)
                self.live_subscriptions.labels(feed=feed).set(n)
            bus = live.alarms.bus
            try:
                for stream, groups in GROUPS.items():
                    self.stream_length.labels(stream=stream).set(await bus.length(stream))
                    for group in groups:
                        try:
                            self.stream_lag.labels(stream=stream, group=group).set(await bus.lag(stream, group))
                        except LookupError:  # that service has not created its group (not running)
                            continue
            except SkyopsError as exc:
                self.refresh_failures.labels(part="bus").inc()
                log.warning("metrics: bus unavailable: %s", exc)
        if services.alarms is not None:
            try:
                tally = Tally(v.severity.name for v in await services.alarms.alarms(active_only=True))
                for severity in ("WARNING", "SERIOUS", "CRITICAL"):
                    self.alarms_active.labels(severity=severity).set(tally.get(severity, 0))
            except Exception as exc:  # the alarm state store is another service's; report, don't fail
                self.refresh_failures.labels(part="alarms").inc()
                log.warning("metrics: alarm state unavailable: %s", exc)
        if services.archive is not None:
            try:
                latest = await services.archive.latest(
                    [p for p in VES_HEALTH if p in services.archive.known_points()])
                for point, sample in latest.items():
                    if isinstance(sample.value, int | float) and not isinstance(sample.value, bool):
                        self.ves_health.labels(point=point).set(float(sample.value))
                failures = latest.get("skyops.ves_sync.consecutive_failures")
                if failures is not None and isinstance(failures.value, int | float):
                    self.ves_sync_ok.set(1.0 if failures.value == 0 else 0.0)
            except Exception as exc:
                self.refresh_failures.labels(part="ves_sync").inc()
                log.warning("metrics: VES-sync health unavailable: %s", exc)
        if services.ves is not None:
            try:
                newest = await asyncio.to_thread(services.ves.history, limit=1)
                if newest:
                    self.ves_last_change.set(newest[0].ts.timestamp())
            except Exception as exc:  # the VES-sync store is another service's; report, don't fail
                self.refresh_failures.labels(part="ves_history").inc()
                log.warning("metrics: VES history unavailable: %s", exc)
