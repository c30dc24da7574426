"""Turning kernel records into GraphQL types: NaN and infinities become null, levels and severities names."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from strawberry.scalars import JSON

from alarms.api import AlarmView
from hmi_api.graphql.types import Alarm, AlarmHistoryEntry, LogEntry, NightPlan, PlanBlock, PointValue, TimeSeries
from hmi_api.live import LatestValue
from hmi_api.planops import shown_reason
from skyops.archive.binning import BinnedSeries
from skyops.messages import PlanEvent
from skyops.records import AlarmEvent, LogRecord, Quality, Sample
from skyops.timeutil import from_us


def finite_or_none(values: npt.NDArray[np.float64]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def point_value(s: Sample) -> PointValue:
    value = s.value
    quality = s.quality
    if isinstance(value, float) and not math.isfinite(value):
        value, quality = None, Quality.BAD
    return PointValue(point=s.point, time=s.ts, value=JSON(value), quality=quality.name)


def alarm(v: AlarmView) -> Alarm:
    return Alarm(alarm_id=v.alarm_id, status=v.status.value, severity=v.severity.name, latched=v.latched.name,
                 acked=v.acked, acked_severity=v.acked_severity.name, shelved_until=v.shelved_until,
                 shelved_by=v.shelved_by, reason=v.reason, changed=v.changed, kind=v.kind, description=v.description,
                 guidance=v.guidance, consequence=v.consequence, attributes=JSON(dict(v.attributes)))


def night_plan(seq: str, e: PlanEvent) -> NightPlan:
    return NightPlan(
        seq=seq, plan_id=e.plan_id, night=e.night, created=e.created, reason=shown_reason(e),
        trigger_alarm=e.trigger.alarm_id if e.trigger else None,
        trigger_kind=(e.trigger.consequence.value if e.trigger.consequence else e.trigger.kind) if e.trigger else None,
        blocks=[PlanBlock(ob_id=b.ob_id, name=b.name, target_name=b.target_name, ob_type=b.ob_type,
                          priority=b.priority, start=b.start, end=b.end, exposure_s=b.exposure_s, ra_deg=b.ra_deg,
                          dec_deg=b.dec_deg, magnitude=b.magnitude) for b in e.blocks],
        trigger_user=e.trigger.user if e.trigger else None,
    )


def live_value(v: LatestValue) -> PointValue:
    return point_value(Sample(point=v.point, ts=from_us(v.ts_us), value=v.value, quality=v.quality))


def time_series(b: BinnedSeries) -> TimeSeries:
    return TimeSeries(
        point=b.point,
        resolution=b.resolution.value,
        bin_seconds=b.width_us / 1e6,
        times=[from_us(t) for t in b.edges_us.tolist()],
        count=b.count.tolist(),
        bad_count=b.bad_count.tolist(),
        min=finite_or_none(b.vmin),
        max=finite_or_none(b.vmax),
        mean=finite_or_none(b.mean),
        first=finite_or_none(b.first),
        last=finite_or_none(b.last),
    )


def log_entry(r: LogRecord) -> LogEntry:
    return LogEntry(time=r.ts, level=logging.getLevelName(r.level), source=r.source, component=r.component,
                    host=r.host, message=r.message, attributes=JSON(dict(r.attributes)), trace_id=r.trace_id,
                    ob_id=r.ob_id)


def alarm_entries(events: Iterable[AlarmEvent]) -> list[AlarmHistoryEntry]:
    return [
        AlarmHistoryEntry(alarm_id=e.alarm_id, time=e.ts, seq=e.seq, action=e.action, severity=e.severity.name,
                          latched=e.latched.name, state=e.state, acked=e.acked, user=e.user, comment=e.comment,
                          reason=e.reason, attributes=JSON(dict(e.attributes)))
        for e in events
    ]
