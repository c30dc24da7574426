"""GraphQL for the science team: OBs (query and edit), the plan's history, manual re-plans, management reports."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from enum import Enum

import strawberry
from pydantic import ValidationError
from strawberry.scalars import JSON

from hmi_api.graphql.common import Ctx, blocking, camel, checked_night, friendly
from hmi_api.graphql.context import HmiContext
from hmi_api.obchanges import publish_trigger, replan_if_planned
from hmi_api.planops import manual_trigger, replan_seconds, shown_reason
from planner.config import SiteConfig
from planner.domain.observability import Twilight
from planner.domain.reports import PeriodReport, period_report
from planner.ephemeris import local_noon_utc
from planner.reports import dark_hours
from planner.store import ObConstraints, ObCreate, ObPublic, ObState, ObType, ObUpdate, TimeShare
from skyops.bus import Bus
from skyops.messages import PlanEvent, PlanTrigger, decode_plan_event
from skyops.streams import PLAN_EVENTS

MAX_REPORT_NIGHTS = 31
MAX_PLAN_HISTORY = 2_000
RENAMES = {name: camel(name) for name in (*ObUpdate.model_fields, *ObCreate.model_fields,
                                          *ObConstraints.model_fields)}


@strawberry.type(description="An Observing Block as the OB store holds it")
class ObservingBlock:
    id: int
    ob_type: str = strawberry.field(description="CTOB, FUOB, ESO or ToO")
    mid: int | None = strawberry.field(description="Marshall id (transientBucketID) of Marshall OBs")
    name: str
    target_name: str
    ra_deg: float
    dec_deg: float
    magnitude: float | None
    mag_filter: str | None
    exposure_s: float
    priority: int
    max_airmass: float
    twilight: str
    min_moon_separation_deg: float
    max_moon_illumination: float
    max_seeing_arcsec: float
    programme: str
    time_share: str
    state: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    p2_ob_id: int | None
    version: int = strawberry.field(description="pass as expectedVersion to updateOb to refuse lost updates")

    @classmethod
    def of(cls, ob: ObPublic) -> ObservingBlock:
        return cls(id=ob.id, ob_type=ob.ob_type.value, mid=ob.mid, name=ob.name, target_name=ob.target_name,
                   ra_deg=ob.ra_deg, dec_deg=ob.dec_deg, magnitude=ob.magnitude, mag_filter=ob.mag_filter,
                   exposure_s=ob.exposure_s, priority=ob.priority, max_airmass=ob.max_airmass,
                   twilight=ob.twilight.value, min_moon_separation_deg=ob.min_moon_separation_deg,
                   max_moon_illumination=ob.max_moon_illumination, max_seeing_arcsec=ob.max_seeing_arcsec,
                   programme=ob.programme, time_share=ob.time_share.value, state=ob.state.value,
                   created_at=ob.created_at, updated_at=ob.updated_at, expires_at=ob.expires_at,
                   p2_ob_id=ob.p2_ob_id, version=ob.version)


@strawberry.type(description="One change of an OB: what, by whom, and each field before and after")
class ObChangeEntry:
    at: datetime
    action: str
    actor: str
    changes: JSON


@strawberry.enum(description="OB types the science team creates by hand (the Marshall creates CTOB and FUOB)")
class ManualObType(Enum):
    ESO = "ESO"
    TOO = "ToO"


@strawberry.input(description="A new ESO-proposal OB or manual ToO")
class ObInput:
    ob_type: ManualObType
    name: str
    target_name: str
    ra_deg: float
    dec_deg: float
    exposure_s: float
    priority: int
    programme: str
    time_share: str = "ESO"
    magnitude: float | None = None
    max_airmass: float = 2.0
    twilight: str = "nautical"
    min_moon_separation_deg: float = 30.0
    max_moon_illumination: float = 1.0
    max_seeing_arcsec: float = 2.0
    expires_at: datetime | None = None


@strawberry.input(description="Changes to an OB; omitted fields stay as they are")
class ObChanges:
    name: str | None = None
    target_name: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    magnitude: float | None = None
    exposure_s: float | None = None
    priority: int | None = None
    max_airmass: float | None = None
    twilight: str | None = None
    min_moon_separation_deg: float | None = None
    max_moon_illumination: float | None = None
    max_seeing_arcsec: float | None = None
    expires_at: datetime | None = None


@strawberry.type(description="A re-plan request as published to the planner")
class ReplanRequest:
    seq: str = strawberry.field(description="its entry on plan.triggers")
    requested_at: datetime
    user: str
    reason: str


@strawberry.type(description="One version of a night's plan, with why it changed")
class PlanChange:
    seq: str
    plan_id: str
    night: str
    created: datetime
    reason: str
    trigger_kind: str | None
    trigger_alarm: str | None
    trigger_user: str | None
    replan_seconds: float | None = strawberry.field(description="trigger → published plan")
    blocks: int


@strawberry.type(description="Programme completion: ESO-proposal OBs observed of all")
class ProgrammeCompletion:
    programme: str
    observed: int
    total: int
    fraction: float


@strawberry.type(description="One night's figures, for the plots")
class NightFigures:
    night: str
    dark_hours: float
    science_hours: float
    duty_cycle: float
    transient_hits: int
    transient_misses: int
    gto_hours: float
    eso_hours: float


@strawberry.type(description="Duty cycle, proposal completion, transient hit/miss and GTO/ESO time over nights")
class Report:
    first_night: str
    last_night: str
    start: datetime
    end: datetime
    dark_hours: float
    science_hours: float
    duty_cycle: float
    completed_proposals_fraction: float
    proposals: list[ProgrammeCompletion]
    transient_hits: int
    transient_misses: int
    hit_rate: float
    gto_hours: float
    eso_hours: float
    nights: list[NightFigures]


def _choice(value: str | None, enum: type[Enum], field: str) -> None:
    if value is not None and value not in {m.value for m in enum}:
        raise ValueError(f"{field}: unknown value {value!r}; use one of {', '.join(m.value for m in enum)}")


def _states(states: list[str] | None) -> tuple[ObState, ...] | None:
    if states is None:
        return None
    for s in states:
        _choice(s, ObState, "states")
    return tuple(ObState(s) for s in states)


async def night_plans(bus: Bus, site: SiteConfig, night: str) -> list[tuple[str, PlanEvent]]:
    """Every plan of `night` still on the bus with its stream id, oldest first."""
    # Stream ids are publication times: a night's plans are published from the day before it on, so only those
    # entries are read (the stream keeps weeks of plans).
    since = local_noon_utc(site, date.fromisoformat(night)) - timedelta(days=1)
    entries = await bus.range_after(PLAN_EVENTS, f"{int(since.timestamp() * 1000)}-0", count=MAX_PLAN_HISTORY)
    return [(e.id, ev) for e in entries if (ev := _decoded(e.payload)) is not None and ev.night == night]


def _decoded(payload: bytes) -> PlanEvent | None:
    try:
        return decode_plan_event(payload)
    except ValidationError:  # the stream's consumers report undecodable entries; history skips them
        return None


def _night_figures(night: date, r: PeriodReport) -> NightFigures:
    return NightFigures(night=night.isoformat(), dark_hours=r.dark_hours, science_hours=r.science_hours,
                        duty_cycle=r.duty_cycle, transient_hits=r.transient_hits,
                        transient_misses=r.transient_misses, gto_hours=r.gto_hours, eso_hours=r.eso_hours)


@strawberry.type
class PlanningQuery:
    @strawberry.field(description="OBs, filtered by state, programme and type, by id")
    async def obs(self, info: Ctx, states: list[str] | None = None, programme: str | None = None,
                  ob_type: str | None = None, limit: int = 1000) -> list[ObservingBlock]:
        ctx = info.context
        await ctx.allowed("read")
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        wanted = _states(states)
        _choice(ob_type, ObType, "obType")
        store = ctx.ob_store()
        found = await asyncio.to_thread(store.list, states=wanted)
        picked = [ob for ob in found if (programme is None or ob.programme == programme)
                  and (ob_type is None or ob.ob_type.value == ob_type)]
        return [ObservingBlock.of(ob) for ob in picked[:limit]]

    @strawberry.field(description="Every change of one OB, oldest first")
    async def ob_history(self, info: Ctx, ob_id: int) -> list[ObChangeEntry]:
        ctx = info.context
        await ctx.allowed("read")
        store = ctx.ob_store()
        changes = await asyncio.to_thread(store.history, ob_id=ob_id)
        return [ObChangeEntry(at=c.at, action=c.action, actor=c.actor, changes=JSON(c.changes)) for c in changes]

    @strawberry.field(description="Every version of a night's plan still on the bus, oldest first "
                                  "(the newest plan's night when none is named)")
    async def plan_history(self, info: Ctx, night: str | None = None) -> list[PlanChange]:
        ctx = info.context
        await ctx.allowed("read")
        night = checked_night(night)
        bus = ctx.bus()
        if night is None:
            newest = await bus.newest(PLAN_EVENTS)
            latest = None if newest is None else _decoded(newest.payload)
            if latest is None:
                return []
            night = latest.night
        events = await night_plans(bus, ctx.site(), night)
        return [
            PlanChange(seq=seq, plan_id=ev.plan_id, night=ev.night, created=ev.created, reason=shown_reason(ev),
                       trigger_kind=ev.trigger.kind if ev.trigger else None,
                       trigger_alarm=ev.trigger.alarm_id if ev.trigger else None,
                       trigger_user=ev.trigger.user if ev.trigger else None,
                       replan_seconds=replan_seconds(ev), blocks=len(ev.blocks))
            for seq, ev in events
        ]

    @strawberry.field(description=f"Management report over the nights firstNight..lastNight (at most "
                                  f"{MAX_REPORT_NIGHTS}), with per-night figures for plots")
    async def report(self, info: Ctx, first_night: date, last_night: date) -> Report:
        ctx = info.context
        await ctx.allowed("read")
        if last_night < first_night:
            raise ValueError(f"lastNight {last_night.isoformat()} is before firstNight {first_night.isoformat()}")
        n = (last_night - first_night).days + 1
        if n > MAX_REPORT_NIGHTS:
            raise ValueError(f"ask for at most {MAX_REPORT_NIGHTS} nights at a time, not {n}")
        site, store = ctx.site(), ctx.ob_store()

        def build() -> Report:
            records = store.report_records()
            nights: list[NightFigures] = []
            dark_total = 0.0
            for i in range(n):
                night = first_night + timedelta(days=i)
                dark = dark_hours(site, night, night)
                dark_total += dark
                start = local_noon_utc(site, night)
                nights.append(_night_figures(night, period_report(records, start=start,
                                                                  end=start + timedelta(days=1), dark_hours=dark)))
            r = period_report(records, start=local_noon_utc(site, first_night),
                              end=local_noon_utc(site, last_night) + timedelta(days=1), dark_hours=dark_total)
            return Report(
                first_night=first_night.isoformat(), last_night=last_night.isoformat(), start=r.start, end=r.end,
                dark_hours=r.dark_hours, science_hours=r.science_hours, duty_cycle=r.duty_cycle,
                completed_proposals_fraction=r.completed_proposals_fraction,
                proposals=[ProgrammeCompletion(programme=p.programme, observed=p.observed, total=p.total,
                                               fraction=p.fraction) for p in r.proposals],
                transient_hits=r.transient_hits, transient_misses=r.transient_misses, hit_rate=r.hit_rate,
                gto_hours=r.gto_hours, eso_hours=r.eso_hours, nights=nights,
            )

        return await asyncio.to_thread(build)


@strawberry.type
class PlanningMutation:
    @strawberry.mutation(description="Ask the planner to re-plan the rest of the night from now")
    async def replan(self, info: Ctx, reason: str) -> ReplanRequest:
        ctx = info.context
        user = await ctx.allowed("plan.replan")
        trigger = manual_trigger(user=user.username, reason=reason, now=ctx.services.clock.now())
        seq = await publish_trigger(ctx.bus(), trigger)
        await ctx.audit("plan.replan", reason=trigger.reason, trigger=seq)
        return ReplanRequest(seq=seq, requested_at=trigger.ts, user=user.username, reason=trigger.reason)

    @strawberry.mutation(description="Create an ESO-proposal OB or a manual ToO; a ToO with observeNow re-plans "
                                     "the night with it first")
    async def create_ob(self, info: Ctx, ob: ObInput, observe_now: bool = False) -> ObservingBlock:
        ctx = info.context
        user = await ctx.allowed("ob.edit")
        if observe_now and ob.ob_type is not ManualObType.TOO:
            raise ValueError("observeNow: only a ToO is observed at once; ESO OBs wait for the scheduler")
        _choice(ob.time_share, TimeShare, "timeShare")
        _choice(ob.twilight, Twilight, "twilight")
        try:
            data = ObCreate(
                ob_type=ObType(ob.ob_type.value), name=ob.name, target_name=ob.target_name, ra_deg=ob.ra_deg,
                dec_deg=ob.dec_deg, magnitude=ob.magnitude, exposure_s=ob.exposure_s, priority=ob.priority,
                programme=ob.programme, time_share=TimeShare(ob.time_share), expires_at=ob.expires_at,
                constraints=ObConstraints(max_airmass=ob.max_airmass, twilight=Twilight(ob.twilight),
                                          min_moon_separation_deg=ob.min_moon_separation_deg,
                                          max_moon_illumination=ob.max_moon_illumination,
                                          max_seeing_arcsec=ob.max_seeing_arcsec),
            )
        except ValidationError as exc:
            raise friendly(exc, RENAMES) from None
        store, now = ctx.ob_store(), ctx.services.clock.now()
        created = await blocking(lambda: store.create_ob(data=data, now=now, actor=user.username), RENAMES)
        await ctx.audit("ob.create", ob=str(created.id), name=created.name, type=created.ob_type.value)
        if observe_now:
            trigger = PlanTrigger(kind="too", ts=now, ob_id=str(created.id),
                                  reason=f"ToO {created.name} created by {user.username}")
            seq = await publish_trigger(ctx.bus(), trigger)
            await ctx.audit("plan.too", ob=str(created.id), trigger=seq)
        return ObservingBlock.of(created)

    @strawberry.mutation(description="Edit a queued or scheduled OB; with expectedVersion, refused if it changed")
    async def update_ob(self, info: Ctx, ob_id: int, changes: ObChanges,
                        expected_version: int | None = None) -> ObservingBlock:
        ctx = info.context
        user = await ctx.allowed("ob.edit")
        _choice(changes.twilight, Twilight, "twilight")
        try:
            data = ObUpdate.model_validate({k: v for k, v in vars(changes).items() if v is not None})
        except ValidationError as exc:
            raise friendly(exc, RENAMES) from None
        store, now = ctx.ob_store(), ctx.services.clock.now()
        updated = await blocking(lambda: store.update_ob(ob_id=ob_id, data=data, now=now, actor=user.username,
                                                         expected_version=expected_version), RENAMES)
        await ctx.audit("ob.update", ob=str(ob_id),
                        fields=",".join(camel(k) for k in data.model_dump(exclude_none=True)))
        await _replan_if_planned(ctx, ob_id, f"OB {ob_id} edited by {user.username}")
        return ObservingBlock.of(updated)

    @strawberry.mutation(description="Delete an OB (kept with its history, in state deleted)")
    async def delete_ob(self, info: Ctx, ob_id: int) -> ObservingBlock:
        ctx = info.context
        user = await ctx.allowed("ob.edit")
        store, now = ctx.ob_store(), ctx.services.clock.now()
        deleted = await blocking(lambda: store.delete_ob(ob_id=ob_id, now=now, actor=user.username))
        await ctx.audit("ob.delete", ob=str(ob_id))
        await _replan_if_planned(ctx, ob_id, f"OB {ob_id} deleted by {user.username}")
        return ObservingBlock.of(deleted)

    @strawberry.mutation(description="A transient's new magnitude (the auto OB's exposure follows), by Marshall id")
    async def update_ob_magnitude(self, info: Ctx, mid: int, magnitude: float) -> ObservingBlock:
        ctx = info.context
        user = await ctx.allowed("ob.edit")
        store, now = ctx.ob_store(), ctx.services.clock.now()
        updated = await blocking(lambda: store.update_auto_ob_magnitude(mid=mid, magnitude=magnitude, now=now,
                                                                        actor=user.username))
        await ctx.audit("ob.magnitude", ob=str(updated.id), mid=str(mid), magnitude=str(magnitude))
        await _replan_if_planned(ctx, updated.id, f"OB {updated.id} magnitude updated by {user.username}")
        return ObservingBlock.of(updated)


async def _replan_if_planned(ctx: HmiContext, ob_id: int, reason: str) -> None:
    seq = await replan_if_planned(ctx.bus(), ob_id=ob_id, reason=reason, now=ctx.services.clock.now())
    if seq is not None:
        await ctx.audit("plan.ob_change", ob=str(ob_id), trigger=seq)
