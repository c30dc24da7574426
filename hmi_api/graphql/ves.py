"""GraphQL for the operator's VES: its sequence and history (VES-sync store), reorder and re-sync (via the bus)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import strawberry

from hmi_api.graphql.common import Ctx, checked_night
from hmi_api.graphql.convert import night_plan
from hmi_api.graphql.planning import night_plans
from hmi_api.graphql.types import NightPlan
from hmi_api.planops import reorder_plan, resent_plan
from planner.service import PLAN_EVENTS_RETENTION
from skyops.messages import PlanEvent
from skyops.streams import PLAN_EVENTS
from ves_sync.domain.ves import VesChange
from ves_sync.store import ObLink


@strawberry.type(description="One OB in the VES, in execution order")
class VesEntry:
    position: int
    p2_ob_id: int
    ob_id: str | None = strawberry.field(description="our OB id (null: an OB someone put in the VES by hand)")
    p2_status: str | None = strawberry.field(description="P2 status last seen: + ready, S started, X executed…")
    name: str | None
    target_name: str | None
    start: datetime | None = strawberry.field(description="planned start, from the plan the VES was written from")


@strawberry.type(description="The operator's VES as last written by the sync, and why")
class Ves:
    night: str
    plan_id: str
    changed_at: datetime
    written_by: str
    reason: str
    trigger_kind: str | None
    alarm_id: str | None
    entries: list[VesEntry]


@strawberry.type(description="One change of the VES: who, when, why, and the P2 OB ids before and after")
class VesChangeEntry:
    time: datetime
    instrument: str
    written_by: str
    night: str
    plan_id: str
    reason: str
    trigger_kind: str | None
    alarm_id: str | None
    too_ob_id: str | None
    before: list[int]
    after: list[int]

    @classmethod
    def of(cls, c: VesChange) -> VesChangeEntry:
        return cls(time=c.ts, instrument=c.instrument, written_by=c.written_by, night=c.night, plan_id=c.plan_id,
                   reason=c.reason, trigger_kind=c.trigger_kind, alarm_id=c.alarm_id, too_ob_id=c.too_ob_id,
                   before=list(c.before), after=list(c.after))


def _ves(change: VesChange, links: dict[str, ObLink], plan: PlanEvent | None) -> Ves:
    by_p2 = {link.p2_ob_id: link for link in links.values()}
    blocks = {b.ob_id: b for b in plan.blocks} if plan is not None and plan.night == change.night else {}
    entries = []
    for i, p2_id in enumerate(change.after):
        link = by_p2.get(p2_id)
        block = blocks.get(link.ob_id) if link else None
        entries.append(VesEntry(position=i + 1, p2_ob_id=p2_id, ob_id=link.ob_id if link else None,
                                p2_status=link.p2_status if link else None,
                                name=block.name if block else None, target_name=block.target_name if block else None,
                                start=block.start if block else None))
    return Ves(night=change.night, plan_id=change.plan_id, changed_at=change.ts, written_by=change.written_by,
               reason=change.reason, trigger_kind=change.trigger_kind, alarm_id=change.alarm_id, entries=entries)


@strawberry.type
class VesQuery:
    @strawberry.field(description="The VES as the sync last wrote it to P2 (null before the first sync)")
    async def ves(self, info: Ctx, night: str | None = None) -> Ves | None:
        ctx = info.context
        await ctx.allowed("read")
        store = ctx.ves_store()
        wanted = checked_night(night)
        changes, links = await asyncio.gather(asyncio.to_thread(store.history, night=wanted, limit=1),
                                              asyncio.to_thread(store.links))
        if not changes:
            return None
        change = changes[0]
        # The planned starts shown are those of the plan this VES was written from, not of a newer plan.
        plans = await night_plans(ctx.bus(), ctx.site(), change.night) if ctx.services.site is not None else []
        plan = next((ev for _, ev in reversed(plans) if ev.plan_id == change.plan_id), None)
        return _ves(change, links, plan)

    @strawberry.field(description="Changes of the VES, newest first")
    async def ves_history(self, info: Ctx, night: str | None = None, limit: int = 50) -> list[VesChangeEntry]:
        ctx = info.context
        await ctx.allowed("read")
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        store = ctx.ves_store()
        wanted = checked_night(night)
        return [VesChangeEntry.of(c) for c in await asyncio.to_thread(store.history, night=wanted, limit=limit)]


async def _current_plan(info: Ctx) -> tuple[str, PlanEvent]:
    found = await info.context.live().latest_plan()
    if found is None:
        raise ValueError("no plan has been published yet: there is no VES to change")
    return found


@strawberry.type
class VesMutation:
    @strawberry.mutation(description="Put the OBs that have not started in a new order; the VES sync writes it")
    async def reorder_ves(self, info: Ctx, order: list[str], reason: str) -> NightPlan:
        ctx = info.context
        user = await ctx.allowed("ves.edit")
        _, plan = await _current_plan(info)
        event = reorder_plan(plan, order, user=user.username, reason=reason, now=ctx.services.clock.now())
        seq = await ctx.bus().publish(PLAN_EVENTS, event.encode(), retention=PLAN_EVENTS_RETENTION)
        await ctx.audit("ves.reorder", plan=event.plan_id, order=",".join(order),
                        reason=event.trigger.reason if event.trigger else reason)
        return night_plan(seq, event)

    @strawberry.mutation(description="Have the VES sync write the current plan to P2 again (e.g. after a failure)")
    async def sync_ves(self, info: Ctx, reason: str) -> NightPlan:
        ctx = info.context
        user = await ctx.allowed("ves.edit")
        _, plan = await _current_plan(info)
        event = resent_plan(plan, user=user.username, reason=reason, now=ctx.services.clock.now())
        seq = await ctx.bus().publish(PLAN_EVENTS, event.encode(), retention=PLAN_EVENTS_RETENTION)
        await ctx.audit("ves.sync", plan=event.plan_id, reason=event.trigger.reason if event.trigger else reason)
        return night_plan(seq, event)
