"""The planner service: plans nights from the OB store, re-plans on `plan.triggers`, publishes `plan.events`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from planner.config import SchedulerConfig, SiteConfig
from planner.domain.execution import ExecutionEvent, ExecutionTracker, ObResolver, Outcome, p2_outcome
from planner.domain.night import NightGrid
from planner.domain.observability import ObRequest, priority_weight
from planner.domain.replan import NightPlanner, PlanOutcome, UnknownObError
from planner.domain.reports import PeriodReport
from planner.domain.scheduler import Block
from planner.ephemeris import compute_night
from planner.reports import build_report
from planner.store import LIVE_STATES, ObPublic, ObStore
from skyops.bus import Bus, Entry, StreamConsumer, StreamRetention
from skyops.codec import decode_samples
from skyops.errors import CodecError, NotFoundError
from skyops.messages import (
    P2ObLinked,
    P2ObStatus,
    P2ObUpdate,
    PlanEvent,
    PlannedBlock,
    PlanTrigger,
    decode_p2_ob_update,
    decode_plan_event,
    decode_plan_trigger,
)
from skyops.streams import MON_SAMPLES, P2_OBS, PLAN_EVENTS, PLAN_TRIGGERS
from skyops.timeutil import Clock, require_utc

log = logging.getLogger(__name__)

NightSource = Callable[[date], NightGrid]
ObSource = Callable[[], Sequence[ObRequest]]

# Marshall OBs (classification, follow-up and the manual ToOs it raises) are the consortium's GTO time.
GTO_TYPES = ("CTOB", "FUOB", "ToO")
PLAN_EVENTS_RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=30))


def night_of(site: SiteConfig, when: datetime) -> date:
    """The local date of the evening whose night holds `when` (a night runs from local noon to noon)."""
    local_mean_time = require_utc(when) + timedelta(hours=site.longitude_deg / 15.0)
    return (local_mean_time - timedelta(hours=12)).date()


@dataclass(frozen=True)
class NightSummary:
    """The morning report of one night's plan: how much of the dark time went to science."""

    night: str
    dark_minutes: int
    exposure_minutes: float
    duty_cycle: float
    scheduled_obs: int
    weighted_exposure_h: float
    gto_exposure_h: float
    eso_exposure_h: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PlannerService:
    """Keeps one `NightPlanner` per night and turns triggers into published plans."""

    def __init__(
        self,
        *,
        bus: Bus,
        site: SiteConfig,
        config: SchedulerConfig,
        clock: Clock,
        obs: ObSource,
        nights: NightSource | None = None,
        store: ObStore | None = None,
        retention: StreamRetention = PLAN_EVENTS_RETENTION,
        triggers_stream: str = PLAN_TRIGGERS,
        events_stream: str = PLAN_EVENTS,
        samples_stream: str = MON_SAMPLES,
        p2_stream: str = P2_OBS,
    ) -> None:
        self._bus = bus
        self._site = site
        self._config = config
        self._clock = clock
        self._obs = obs
        self._nights = nights or (lambda night: compute_night(site, night, config=config))
        self._store = store
        self._retention = retention
        self._triggers_stream = triggers_stream
        self._events_stream = events_stream
        self._samples_stream = samples_stream
        self._p2_stream = p2_stream
        self._tracker = ExecutionTracker()
        self._links_loaded = False
        self.undecodable_p2 = 0
        self._planners: dict[str, NightPlanner] = {}
        self._revision: dict[str, int] = {}
        self.published: list[PlanEvent] = []

    @property
    def clock(self) -> Clock:
        return self._clock

    def planner_for(self, night: date) -> NightPlanner | None:
        return self._planners.get(night.isoformat())

    async def plan_night(self, night: date, *, reason: str = "night plan") -> PlanEvent:
        """Plan the whole night from the live OBs and publish it."""
        # astropy takes a few hundred milliseconds: keep the event loop free meanwhile.
        grid = await asyncio.to_thread(self._nights, night)
        planner = NightPlanner(grid, list(self._obs()), self._config)
        outcome = planner.plan()
        self._planners[night.isoformat()] = planner
        return await self._publish(planner, PlanOutcome(outcome.blocks, reason=reason), from_min=0)

    async def handle(self, trigger: PlanTrigger) -> PlanEvent | None:
        """Re-plan the trigger's night from the trigger's minute; None if the trigger cannot be applied."""
        night = night_of(self._site, trigger.ts)
        planner = self._planners.get(night.isoformat())
        if planner is None:
            await self.plan_night(night, reason="night plan (first trigger of the night)")
            planner = self._planners[night.isoformat()]
        else:
            # OBs deleted, retracted, edited or added since the night was planned: re-plan with the store as it is.
            changed = planner.reconcile(list(self._obs()))
            if changed:
                log.info("OB store changes taken into tonight's plan: %s", changed)
        if trigger.kind == "too" and trigger.ob_id is not None:
            try:
                planner.row_of(trigger.ob_id)
            except UnknownObError:
                request = self._too_request(trigger.ob_id)
                if request is None:
                    log.warning(
                        "ToO trigger ignored: OB %s is not in the OB store (reason: %s)", trigger.ob_id, trigger.reason
                    )
                    return None
                planner.add(request)
        outcome = planner.replan(trigger)
        from_min = planner.current_minute(trigger.ts)
        if trigger.kind == "too" and not any(
            b.start_min >= from_min and planner.request(b.row).ob_id == trigger.ob_id for b in outcome.blocks
        ):
            outcome = PlanOutcome(
                outcome.blocks, reason=f"{outcome.reason} (ToO not observable tonight)", trigger=trigger
            )
        return await self._publish(planner, outcome, from_min=from_min)

    async def handle_entries(self, entries: list[Entry]) -> None:
        """Stream handler for `plan.triggers`: a bad payload is logged with its reason and skipped."""
        for entry in entries:
            try:
                trigger = decode_plan_trigger(entry.payload)
            except ValidationError as exc:
                log.error("plan trigger %s refused: %s", entry.id, exc.errors(include_url=False))
                continue
            await self.handle(trigger)

    def consumer(self, *, consumer: str = "planner-1", group: str = "planner", block_ms: int = 1000) -> StreamConsumer:
        return StreamConsumer(
            self._bus,
            stream=self._triggers_stream,
            group=group,
            consumer=consumer,
            handler=self.handle_entries,
            block_ms=block_ms,
        )

    async def handle_samples(self, entries: list[Entry]) -> list[ExecutionEvent]:
        """Stream handler for `mon.samples`: OB states follow the exposure points of the telescope."""
        self._load_links()
        events: list[ExecutionEvent] = []
        for entry in entries:
            try:
                batch = decode_samples(entry.payload)
            except CodecError as exc:
                log.error("monitoring batch %s refused: %s", entry.id, exc)
                continue
            events.extend(self._tracker.feed_batch(batch))
        for event in events:
            self._apply_execution(event)
        return events

    def samples_consumer(self, *, consumer: str = "planner-1", group: str = "planner-execution") -> StreamConsumer:
        return StreamConsumer(
            self._bus, stream=self._samples_stream, group=group, consumer=consumer, handler=self._handle_samples
        )

    async def _handle_samples(self, entries: list[Entry]) -> None:
        await self.handle_samples(entries)

    @property
    def resolver(self) -> ObResolver:
        """P2 OB id → planner OB id, as the VES sync announced them (loaded from the store on first use)."""
        self._load_links()
        return self._tracker.resolver

    def _load_links(self) -> None:
        if self._links_loaded or self._store is None:
            return
        for p2_ob_id, ob_id in self._store.p2_links().items():
            self._tracker.resolver.link(ob_id=ob_id, p2_ob_id=p2_ob_id)
        self._links_loaded = True

    def _apply_execution(self, event: ExecutionEvent) -> None:
        """An execution seen on the telescope's points.

        For an OB the VES sync put in P2, P2's record of the execution (on `p2.obs`) is the source of truth
        for the OB store: the points only update tonight's plan at once, so a re-plan does not place the OB
        again. An OB with no P2 link has no other witness, so its points move it in the store.
        """
        if event.outcome is Outcome.STARTED:
            log.info("OB %d started at %s", event.ob_id, event.ts.isoformat())
            return
        if event.p2_ob_id is None:
            self._record(event.ob_id, event.outcome, event.ts, actor="telescope")
        if event.outcome is Outcome.OBSERVED:
            self._mark_observed(event.ob_id, event.ts)

    def _record(self, ob_id: int, outcome: Outcome, ts: datetime, *, actor: str) -> None:
        if self._store is None:
            return
        try:
            changed = self._store.record_execution(ob_id=ob_id, outcome=outcome, now=ts, actor=actor)
        except NotFoundError:
            log.warning("OB %d was %s, but the OB store does not hold it", ob_id, outcome.value)
            return
        if changed is not None:
            log.info("OB %d %s (%s): now %s", ob_id, outcome.value, actor, changed.state.value)

    def _mark_observed(self, ob_id: int, ts: datetime) -> None:
        planner = self._planners.get(night_of(self._site, ts).isoformat())
        if planner is not None:
            # An OB outside tonight's plan (e.g. taken by hand from the VES) has nothing to update there.
            with contextlib.suppress(UnknownObError):
                planner.mark_observed(str(ob_id))

    async def handle_p2_entries(self, entries: list[Entry]) -> list[P2ObUpdate]:
        """Stream handler for `p2.obs`: links go to the store and the resolver, P2 executions move OB states.

        Every write is idempotent, so a redelivered entry or a status reported twice changes nothing; a store
        failure raises, leaving the entries pending for a retry. Bad payloads are logged and skipped.
        """
        self._load_links()
        applied: list[P2ObUpdate] = []
        for entry in entries:
            try:
                update = decode_p2_ob_update(entry.payload)
            except ValidationError as exc:
                self.undecodable_p2 += 1
                log.error("P2 OB update %s refused: %s", entry.id, exc.errors(include_url=False)[:3])
                continue
            if not update.ob_id.isdigit():
                log.info("P2 OB %d is linked to %r, which is not a planner OB id; ignored", update.p2_ob_id,
                         update.ob_id)
                continue
            if isinstance(update, P2ObLinked):
                self._link(update)
            else:
                self._p2_status(update)
            applied.append(update)
        return applied

    def p2_consumer(self, *, consumer: str = "planner-1", group: str = "planner-p2") -> StreamConsumer:
        return StreamConsumer(
            self._bus, stream=self._p2_stream, group=group, consumer=consumer, handler=self._handle_p2_entries
        )

    async def _handle_p2_entries(self, entries: list[Entry]) -> None:
        await self.handle_p2_entries(entries)

    def _link(self, update: P2ObLinked) -> None:
        ob_id = int(update.ob_id)
        if self._store is not None:
            try:
                self._store.record_p2_link(ob_id=ob_id, p2_ob_id=update.p2_ob_id, p2_version=update.p2_version,
                                           now=update.ts, actor="ves_sync")
            except NotFoundError:
                log.warning("P2 OB %d is linked to OB %d, which the OB store does not hold", update.p2_ob_id, ob_id)
                return
        self._tracker.resolver.link(ob_id=ob_id, p2_ob_id=update.p2_ob_id)

    def _p2_status(self, update: P2ObStatus) -> None:
        ob_id = int(update.ob_id)
        self._tracker.resolver.link(ob_id=ob_id, p2_ob_id=update.p2_ob_id)
        outcome = p2_outcome(update.status, update.previous)
        if outcome is None:
            log.info("P2 OB %d (OB %d) is now %r (was %r): not an execution", update.p2_ob_id, ob_id,
                     update.status, update.previous)
            return
        if outcome is Outcome.STARTED:
            log.info("P2 OB %d (OB %d) started", update.p2_ob_id, ob_id)
            return
        when = update.execution_end or update.ts  # when the telescope finished, not when the sync looked
        self._record(ob_id, outcome, when, actor="p2")
        if outcome is Outcome.OBSERVED:
            self._mark_observed(ob_id, when)

    def auto_clean(self) -> list[ObPublic]:
        """The daily autoCleanOBs job."""
        if self._store is None:
            return []
        expired = self._store.auto_clean(now=self._clock.now())
        log.info("autoCleanOBs: %d auto OB(s) expired", len(expired))
        return expired

    async def afternoon_plan(self) -> PlanEvent:
        """The afternoon job: plan the coming night."""
        return await self.plan_night(night_of(self._site, self._clock.now()), reason="afternoon plan")

    def executed_report(self, night: date | None = None) -> PeriodReport | None:
        """What the telescope executed in the night that just ended (default), from the OB store: the duty
        cycle and transient hits as P2 and the telescope recorded them, not as planned. None without a store."""
        if self._store is None:
            return None
        night = night or night_of(self._site, self._clock.now() - timedelta(hours=12))
        return build_report(self._store, self._site, night, night, config=self._config)

    def morning_report(self, night: date | None = None) -> NightSummary | None:
        """The morning job: the summary of the night that just ended (None if it was never planned)."""
        night = night or night_of(self._site, self._clock.now() - timedelta(hours=12))
        planner = self._planners.get(night.isoformat())
        if planner is None:
            return None
        return summarize(planner)

    async def _publish(self, planner: NightPlanner, outcome: PlanOutcome, *, from_min: int) -> PlanEvent:
        night = planner.night.night
        if night not in self._revision:  # a restarted planner goes on numbering where it stopped
            self._revision[night] = await self._last_revision(night)
        revision = self._revision[night] + 1
        self._revision[night] = revision
        blocks = tuple(planned_block(planner, b) for b in outcome.blocks if b.end_min > from_min and not b.interrupted)
        event = PlanEvent(
            plan_id=f"{night}#{revision}",
            night=night,
            created=self._clock.now(),
            reason=outcome.reason,
            trigger=outcome.trigger,
            blocks=blocks,
        )
        await self._bus.publish(self._events_stream, event.encode(), retention=self._retention)
        self.published.append(event)
        # After the publish: the VES sync waits on the plan, not on the OB states' bookkeeping (half of a
        # re-plan's time). A store failure here raises, so the trigger is retried and the states follow.
        if self._store is not None:
            planned = {int(b.ob_id) for b in blocks if b.ob_id.isdigit()}
            self._store.mark_planned(ob_ids=planned, now=self._clock.now())
        return event

    async def _last_revision(self, night: str) -> int:
        newest = await self._bus.newest(self._events_stream)
        if newest is None:
            return 0
        try:
            return revision_of(decode_plan_event(newest.payload).plan_id, night)
        except ValueError:  # not a plan we can read: numbering starts again, which only costs uniqueness of ids
            log.warning("the newest entry on %s is not a plan; plan ids of night %s restart at 1",
                        self._events_stream, night)
            return 0

    def _too_request(self, ob_id: str) -> ObRequest | None:
        if self._store is None or not ob_id.isdigit():
            return None
        try:
            ob = self._store.get(ob_id=int(ob_id))
        except NotFoundError:
            return None
        return ob.to_request() if ob.state in LIVE_STATES else None


def revision_of(plan_id: str, night: str) -> int:
    """The revision in a plan id `<night>#<n>`; 0 when the id is of another night."""
    prefix = f"{night}#"
    if not plan_id.startswith(prefix):
        return 0
    revision = plan_id[len(prefix):]
    if not revision.isdigit():
        raise ValueError(f"plan id {plan_id!r} has no revision number")
    return int(revision)


def store_obs(store: ObStore) -> ObSource:
    """The live OBs of the store, as the scheduler takes them."""
    return lambda: [ob.to_request() for ob in store.list(states=LIVE_STATES)]


def planned_block(planner: NightPlanner, block: Block) -> PlannedBlock:
    request = planner.request(block.row)
    start = planner.night.start_unix + 60.0 * block.start_min
    end = planner.night.start_unix + 60.0 * block.end_min
    return PlannedBlock(
        ob_id=request.ob_id,
        name=request.name or request.ob_id,
        target_name=request.target_name or request.ob_id,
        ra_deg=request.ra_deg,
        dec_deg=request.dec_deg,
        magnitude=request.magnitude,
        exposure_s=request.exposure_s,
        priority=request.priority,
        ob_type=request.ob_type,
        start=datetime.fromtimestamp(start, tz=UTC),
        end=datetime.fromtimestamp(end, tz=UTC),
        max_airmass=request.constraints.max_airmass,
        min_moon_distance_deg=request.constraints.min_moon_separation_deg,
        max_seeing_arcsec=request.constraints.max_seeing_arcsec,
        p2_ob_id=request.p2_ob_id,
    )


def summarize(planner: NightPlanner) -> NightSummary:
    """Duty cycle (science exposure over dark time) and the GTO/ESO split of a night's plan."""
    night = planner.night
    dark = int(night.dark_cells(planner.config.dark_sun_altitude_deg).sum()) * night.slot_minutes
    done = [b for b in planner.blocks if not b.interrupted]
    exposure_s = [planner.request(b.row).exposure_s for b in done]
    gto = sum(e for b, e in zip(done, exposure_s, strict=True) if planner.request(b.row).ob_type in GTO_TYPES)
    weighted = sum(
        float(priority_weight(planner.request(b.row).priority)) * e for b, e in zip(done, exposure_s, strict=True)
    )
    total_min = sum(exposure_s) / 60.0
    return NightSummary(
        night=night.night,
        dark_minutes=dark,
        exposure_minutes=total_min,
        duty_cycle=min(total_min / dark, 1.0) if dark else math.nan,
        scheduled_obs=len(done),
        weighted_exposure_h=weighted / 3600.0,
        gto_exposure_h=gto / 3600.0,
        eso_exposure_h=(sum(exposure_s) - gto) / 3600.0,
    )
