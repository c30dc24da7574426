"""The VES side of a sync (pure): which plan wins, what the sequence must be, why it changed, and health figures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from skyops.messages import PlanEvent
from skyops.records import Sample
from skyops.timeutil import require_utc

HEALTH_PREFIX = "skyops.ves_sync"
POINT_LAST_SUCCESS_AGE = f"{HEALTH_PREFIX}.last_success_age_s"
POINT_CONSECUTIVE_FAILURES = f"{HEALTH_PREFIX}.consecutive_failures"
POINT_LAG = f"{HEALTH_PREFIX}.lag_s"
POINT_REJECTED_OBS = f"{HEALTH_PREFIX}.rejected_obs"


class VesMismatchError(Exception):
    """The VES read back from P2 is not the one just written."""


def latest_per_night(events: Iterable[PlanEvent]) -> list[PlanEvent]:
    """The newest plan of each night, oldest night first: a backlog of plans collapses to what is current."""
    newest: dict[str, PlanEvent] = {}
    for event in events:
        kept = newest.get(event.night)
        if kept is None or event.created >= kept.created:
            newest[event.night] = event
    return sorted(newest.values(), key=lambda e: (e.night, e.created))


def is_superseded(event: PlanEvent, synced_created: datetime | None) -> bool:
    """A plan older than the one already in P2 for that night must not overwrite it (e.g. a replayed entry)."""
    return synced_created is not None and event.created < synced_created


def check_read_back(expected: Sequence[int], read_back: Sequence[int]) -> None:
    """Raise `VesMismatchError` unless P2's VES lists exactly `expected`, in order."""
    if list(expected) == list(read_back):
        return
    missing = [i for i in expected if i not in read_back]
    extra = [i for i in read_back if i not in expected]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if extra:
        detail.append(f"unexpected {extra}")
    if not detail:
        detail.append("same OBs in another order")
    raise VesMismatchError(f"VES read back differs from what was written: {'; '.join(detail)}")


@dataclass(frozen=True)
class VesChange:
    """One change of the operator's VES: who wrote it, when, why, and the sequence before and after."""

    ts: datetime
    instrument: str
    written_by: str
    night: str
    plan_id: str
    reason: str
    trigger_kind: str | None
    alarm_id: str | None
    too_ob_id: str | None
    before: tuple[int, ...]
    after: tuple[int, ...]


def change_for(event: PlanEvent, *, ts: datetime, instrument: str, written_by: str,
               before: Sequence[int], after: Sequence[int]) -> VesChange:
    trigger = event.trigger
    return VesChange(
        ts=require_utc(ts),
        instrument=instrument,
        written_by=written_by,
        night=event.night,
        plan_id=event.plan_id,
        reason=event.reason,
        trigger_kind=trigger.kind if trigger else None,
        alarm_id=trigger.alarm_id if trigger else None,
        too_ob_id=trigger.ob_id if trigger else None,
        before=tuple(before),
        after=tuple(after),
    )


class SyncHealth:
    """The figures the VES-sync alarm rule watches: age of the last success, failures in a row, lag behind the plan."""

    def __init__(self, started: datetime) -> None:
        self.started = require_utc(started)
        self.last_success: datetime | None = None
        self.consecutive_failures = 0
        self.rejected_obs = 0
        # When the oldest plan not yet in P2 was made; None when P2 is up to date.
        self.pending_since: datetime | None = None

    def plan_received(self, created: datetime) -> None:
        created = require_utc(created)
        if self.pending_since is None or created < self.pending_since:
            self.pending_since = created

    def succeeded(self, now: datetime, *, rejected_obs: int = 0) -> None:
        self.last_success = require_utc(now)
        self.consecutive_failures = 0
        self.rejected_obs = rejected_obs
        self.pending_since = None

    def failed(self) -> None:
        self.consecutive_failures += 1

    def samples(self, now: datetime) -> list[Sample]:
        now = require_utc(now)
        since = self.last_success or self.started
        lag = 0.0 if self.pending_since is None else max(0.0, (now - self.pending_since).total_seconds())
        return [
            Sample(POINT_LAST_SUCCESS_AGE, now, max(0.0, (now - since).total_seconds())),
            Sample(POINT_CONSECUTIVE_FAILURES, now, self.consecutive_failures),
            Sample(POINT_LAG, now, lag),
            Sample(POINT_REJECTED_OBS, now, self.rejected_obs),
        ]
