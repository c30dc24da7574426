"""Re-plan requests from the HMI and the Marshall API: `plan.triggers` entries, and one when a planned OB changes."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import ValidationError

from hmi_api.planops import pending_blocks
from skyops.bus import Bus, StreamRetention
from skyops.messages import PlanTrigger, decode_plan_event
from skyops.streams import PLAN_EVENTS, PLAN_TRIGGERS

# As the alarm supervisor keeps plan.triggers: two days, so a planner down overnight still finds them.
TRIGGERS_RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=2))


async def publish_trigger(bus: Bus, trigger: PlanTrigger) -> str:
    return await bus.publish(PLAN_TRIGGERS, trigger.encode(), retention=TRIGGERS_RETENTION)


async def replan_if_planned(bus: Bus, *, ob_id: int, reason: str, now: datetime) -> str | None:
    """An OB was edited or deleted: when the current plan has yet to start it, ask for a re-plan (the planner
    re-reads the OB store, so a deleted OB is not executed and an edited one is placed as it is now). Returns the
    trigger's stream id, or None when the OB is not waiting in the plan (it is taken at the next re-plan)."""
    newest = await bus.newest(PLAN_EVENTS)
    if newest is None:
        return None
    try:
        plan = decode_plan_event(newest.payload)
    except ValidationError:  # the planner's consumers report an undecodable plan; nothing here depends on it
        return None
    _, pending = pending_blocks(plan, now)
    if not any(b.ob_id == str(ob_id) for b in pending):
        return None
    return await publish_trigger(bus, PlanTrigger(kind="ob_change", ts=now, reason=reason[:500], ob_id=str(ob_id)))
