"""Prometheus metrics of the platform, on a registry per app (never the global one, so apps stay independent)."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from skyops.errors import SkyopsError
from skyops.streams import ALARM_EVENTS, LOG_RECORDS, MON_SAMPLES, PLAN_EVENTS, PLAN_TRIGGERS

if TYPE_CHECKING:
    from hmi_api.graphql.context import HmiServices

log = logging.getLogger(__name__)

# The consumer groups of the platform, by stream: their lag is what an operator watches for a stuck service.
GROUPS: Mapping[str, Sequence[str]] = {
    MON_SAMPLES: ("archive", "live", "alarms", "planner-execution"),
    LOG_RECORDS: ("archive",),
    ALARM_EVENTS: ("alarm-dispatch",),
    PLAN_TRIGGERS: ("planner",),
    PLAN_EVENTS: ("ves_sync",),
}
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
        self.refresh_failures = Counter("skyops_metrics_refresh_failures", "Metric refreshes that failed",
                                        ["part"], registry=self.registry)

    async def refresh(self, services: HmiServices) -> None:
        """Read bus, live-feed, alarm and VES-sync state; a part that fails is counted, the rest still refresh."""
        if services.live is not None:
            live = services.live
            for feed, n in (("alarms", live.alarms.subscribers), ("logs", live.logs.subscribers),
                            ("samples", live.samples.clients), ("plans", live.plans.subscribers)):
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
            except Exception as exc:
                self.refresh_failures.labels(part="ves_sync").inc()
                log.warning("metrics: VES-sync health unavailable: %s", exc)
