"""What the HMI asks of the plan, as pure functions: manual re-plan triggers, VES reorders and re-sends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise

from skyops.messages import PlanEvent, PlannedBlock, PlanTrigger
from skyops.timeutil import require_utc

REASON_MAX = 300
VES_REASONS = ("VES reordered by ", "VES sync requested by ")


def clean_reason(reason: str) -> str:
    """A reason the operator typed: required, one line, bounded."""
    text = " ".join(reason.split())
    if not text:
        raise ValueError("reason: say why (it goes into the plan and the VES history)")
    if len(text) > REASON_MAX:
        raise ValueError(f"reason: at most {REASON_MAX} characters")
    return text


def manual_trigger(*, user: str, reason: str, now: datetime) -> PlanTrigger:
    """A person asks the planner to re-plan the rest of the night from now."""
    return PlanTrigger(kind="manual", ts=require_utc(now), reason=clean_reason(reason), user=user)


def pending_blocks(event: PlanEvent, now: datetime) -> tuple[tuple[PlannedBlock, ...], tuple[PlannedBlock, ...]]:
    """The plan's blocks split into (started before `now`, not started yet), each in plan order."""
    now = require_utc(now)
    started = tuple(b for b in event.blocks if b.start <= now)
    return started, tuple(b for b in event.blocks if b.start > now)


def reorder_plan(event: PlanEvent, order: Sequence[str], *, user: str, reason: str, now: datetime) -> PlanEvent:
    """The plan with its not-yet-started OBs in `order` (a permutation of them), re-timed back to back.

    Started OBs keep their place. The reordered OBs keep their durations and the gaps between slots stay
    where they were, so the night's end does not move and the VES sync writes the new sequence.
    """
    started, pending = pending_blocks(event, now)
    ids = [b.ob_id for b in pending]
    twice = sorted(k for k, n in Counter(order).items() if n > 1)
    if twice:
        raise ValueError(f"order: OB(s) {', '.join(twice)} listed more than once")
    unknown = sorted(set(order) - set(ids))
    if unknown:
        raise ValueError(f"order: OB(s) {', '.join(unknown)} are not waiting in the plan "
                         f"(started or not planned); waiting: {', '.join(ids) or 'none'}")
    missing = [i for i in ids if i not in set(order)]
    if missing:
        raise ValueError(f"order: list every waiting OB; missing {', '.join(missing)}")
    by_id = {b.ob_id: b for b in pending}
    gaps = [b.start - a.end for a, b in pairwise(pending)] + [timedelta(0)]
    cursor = pending[0].start if pending else now
    placed: list[PlannedBlock] = []
    for ob_id, gap in zip(order, gaps, strict=True):
        block = by_id[ob_id]
        end = cursor + (block.end - block.start)
        placed.append(block.model_copy(update={"start": cursor, "end": end}))
        cursor = end + max(gap, timedelta(0))
    text = clean_reason(reason)
    trigger = manual_trigger(user=user, reason=f"VES reordered: {text}", now=now)
    return PlanEvent(plan_id=f"{event.plan_id}+reorder@{int(now.timestamp())}", night=event.night,
                     created=require_utc(now), reason=f"VES reordered by {user}: {text}", trigger=trigger,
                     blocks=started + tuple(placed))


def resent_plan(event: PlanEvent, *, user: str, reason: str, now: datetime) -> PlanEvent:
    """The same plan again, newer: the VES sync (idempotent) brings P2 back in line with it."""
    text = clean_reason(reason)
    trigger = manual_trigger(user=user, reason=f"VES sync requested: {text}", now=now)
    return PlanEvent(plan_id=f"{event.plan_id}+sync@{int(now.timestamp())}", night=event.night,
                     created=require_utc(now), reason=f"VES sync requested by {user}: {text}", trigger=trigger,
                     blocks=event.blocks)


def shown_reason(event: PlanEvent) -> str:
    """The reason to show: for a person's re-plan, theirs and their name (the planner words it for alarms)."""
    trigger = event.trigger
    if trigger is not None and trigger.kind == "manual" and not event.reason.startswith(VES_REASONS):
        return f"re-plan asked by {trigger.user}: {trigger.reason}"
    return event.reason


def replan_seconds(event: PlanEvent) -> float | None:
    """How long the platform took from the trigger to the published plan (None for untriggered plans)."""
    if event.trigger is None:
        return None
    return max(0.0, (event.created - event.trigger.ts).total_seconds())
