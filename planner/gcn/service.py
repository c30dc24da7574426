"""Turning one GCN notice into a decision: a ToO OB in the store plus a `plan.triggers` entry, or a logged rejection."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from config_db.gcn import GcnConfig
from planner.config import SchedulerConfig, SiteConfig
from planner.domain.gcn import (
    Notice,
    NoticeError,
    Rejection,
    Verdict,
    ob_name,
    observable_tonight,
    parse_notice,
    refinement,
    screen,
    target_name,
    too_request,
)
from planner.domain.night import NightGrid
from planner.domain.observability import ObRequest
from planner.ephemeris import compute_night
from planner.gcn.store import EVENT_KEY, MESSAGE_KEY, REFINED_KEY, GcnObIndex
from planner.service import night_of
from planner.store import LIVE_STATES, ObConstraints, ObCreate, ObPublic, ObStore, ObType, TimeShare
from skyops.bus import Bus, StreamRetention
from skyops.messages import PlanTrigger
from skyops.streams import PLAN_TRIGGERS
from skyops.timeutil import Clock

log = logging.getLogger(__name__)

ACTOR = "gcn"
# As the alarm supervisor keeps plan.triggers: two days, so a planner down overnight still finds the ToO.
TRIGGERS_RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=2))


@dataclass(frozen=True)
class GcnMessage:
    """One message as the broker delivered it: where it sits in its topic, and its bytes."""

    topic: str
    partition: int
    offset: int
    value: bytes | None

    @property
    def ref(self) -> str:
        """The message's place in Kafka: the same after a redelivery, different for every other message."""
        return f"{self.topic}/{self.partition}/{self.offset}"


class Outcome(StrEnum):
    CREATED = "created"
    REDELIVERED = "redelivered"
    RETRACTED = "retracted"
    REFINED = "refined"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Decision:
    """What became of one message, and why."""

    message: str
    outcome: Outcome
    detail: str
    event_key: str | None = None
    ob_id: int | None = None
    rejection: Rejection | None = None


@dataclass
class GcnStats:
    """Counts since start: messages, ToO OBs created, and rejections by reason."""

    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)

    def record(self, decision: Decision) -> None:
        self.received += 1
        self.outcomes[decision.outcome.value] += 1
        if decision.rejection is not None:
            self.rejections[decision.rejection.value] += 1


NightSource = Callable[[date], NightGrid]


class GcnTriggerService:
    """Applies the planner's criteria to a notice and, when it passes, stores the ToO OB and triggers a re-plan."""

    def __init__(
        self,
        *,
        config: GcnConfig,
        store: ObStore,
        index: GcnObIndex,
        bus: Bus,
        site: SiteConfig,
        scheduler: SchedulerConfig,
        clock: Clock,
        nights: NightSource | None = None,
        triggers_stream: str = PLAN_TRIGGERS,
        retention: StreamRetention = TRIGGERS_RETENTION,
    ) -> None:
        self._config = config
        self._store = store
        self._index = index
        self._bus = bus
        self._site = site
        self._scheduler = scheduler
        self._clock = clock
        self._nights = nights or (lambda night: compute_night(site, night, config=scheduler))
        self._night_cache: dict[date, NightGrid] = {}
        self._triggers_stream = triggers_stream
        self._retention = retention
        self.stats = GcnStats()

    @property
    def topics(self) -> list[str]:
        return list(self._config.topics)

    async def handle(self, message: GcnMessage) -> Decision:
        """Decide on one message. Store or bus failures raise (the message is then retried); bad input never does."""
        decision = await self._decide(message)
        self.stats.record(decision)
        if decision.outcome is Outcome.REJECTED:
            log.info("GCN notice %s rejected (%s): %s", decision.message, decision.rejection, decision.detail)
        else:
            log.warning("GCN notice %s %s: %s", decision.message, decision.outcome.value, decision.detail)
        return decision

    async def _decide(self, message: GcnMessage) -> Decision:
        now = self._clock.now()
        topic = self._config.topics.get(message.topic)
        if topic is None:
            unknown = Verdict.no(Rejection.UNKNOWN_TOPIC, f"topic {message.topic} is not configured")
            return _rejected(message, None, unknown)
        try:
            notice = parse_notice(topic.kind, message.value)
        except NoticeError as exc:
            return _rejected(message, None, Verdict.no(Rejection.MALFORMED, f"not a {topic.kind.value} notice: {exc}"))
        if notice.retraction and not notice.test:
            retracted = self._retract(message, notice, now)
            if retracted is not None:
                await self._changed(retracted.ob_id, f"GCN {notice.source} {notice.event_id} retracted", now)
                return retracted
        existing = self._index.find(name=ob_name(notice), event_key=notice.key)
        if existing is not None and existing.setup.get(MESSAGE_KEY) == message.ref:
            # Judged before the criteria: by now the notice may be too old, yet its OB still needs its trigger.
            return await self._redelivered(message, notice, existing, now)
        refined_reason = f"GCN {notice.source} {notice.event_id} position refined"
        if existing is not None and existing.setup.get(REFINED_KEY) == message.ref:
            await self._changed(existing.id, refined_reason, now)
            return Decision(message=message.ref, outcome=Outcome.REDELIVERED, event_key=notice.key, ob_id=existing.id,
                            detail=f"already refined OB {existing.id}; re-plan trigger published again")
        verdict = screen(notice, self._config.criteria, topic, now)
        if not verdict.accepted:
            return _rejected(message, notice, verdict)
        if existing is not None:
            refined = self._refine(message, notice, existing, now) if existing.state in LIVE_STATES else None
            if refined is not None:
                await self._changed(existing.id, refined_reason, now)
                return refined
            detail = f"event {notice.key} already became OB {existing.id} ({existing.state.value})"
            return _rejected(message, notice, Verdict.no(Rejection.DUPLICATE, detail))
        try:
            request = too_request(notice, self._config.too, topic)
            create = self._ob_create(message, notice, request, now)
        except ValueError as exc:
            return _rejected(message, notice, Verdict.no(Rejection.MALFORMED, f"no OB can be made of it: {exc}"))
        night = await self._night(now)
        verdict = observable_tonight(request, night, now, overhead_s=self._scheduler.overhead_s)
        if not verdict.accepted:
            return _rejected(message, notice, verdict)
        ob = self._store.create_ob(data=create, now=now, actor=ACTOR)
        await self._trigger(ob, notice, now)
        return Decision(
            message=message.ref,
            outcome=Outcome.CREATED,
            detail=f"ToO OB {ob.id} for {ob.target_name}: {verdict.detail}",
            event_key=notice.key,
            ob_id=ob.id,
        )

    def _retract(self, message: GcnMessage, notice: Notice, now: datetime) -> Decision | None:
        existing = self._index.find(name=ob_name(notice), event_key=notice.key)
        if existing is None or existing.state not in LIVE_STATES:
            return None
        ob = self._store.delete_ob(ob_id=existing.id, now=now, actor=ACTOR)
        return Decision(
            message=message.ref,
            outcome=Outcome.RETRACTED,
            detail=f"{notice.source} {notice.event_id} retracted: ToO OB {ob.id} deleted",
            event_key=notice.key,
            ob_id=ob.id,
        )

    def _refine(self, message: GcnMessage, notice: Notice, existing: ObPublic, now: datetime) -> Decision | None:
        radius = existing.setup.get("gcn_error_radius_deg")
        why = refinement(notice, float(radius) if isinstance(radius, int | float) else None)
        if why is None or notice.ra_deg is None or notice.dec_deg is None or notice.error_radius_deg is None:
            return None
        ob = self._store.refine_position(
            ob_id=existing.id, ra_deg=notice.ra_deg, dec_deg=notice.dec_deg, now=now, actor=ACTOR,
            setup={"gcn_error_radius_deg": notice.error_radius_deg, REFINED_KEY: message.ref},
        )
        return Decision(
            message=message.ref,
            outcome=Outcome.REFINED,
            detail=f"ToO OB {ob.id} moved to RA {ob.ra_deg:.4f} Dec {ob.dec_deg:+.4f} ({why})",
            event_key=notice.key,
            ob_id=ob.id,
        )

    async def _changed(self, ob_id: int | None, reason: str, now: datetime) -> None:
        """The planner re-plans from the store: a retracted OB leaves the plan, a refined one is placed anew."""
        await self._publish(PlanTrigger(kind="ob_change", ts=now, reason=reason[:500],
                                        ob_id=None if ob_id is None else str(ob_id)))

    async def _redelivered(self, message: GcnMessage, notice: Notice, existing: ObPublic, now: datetime) -> Decision:
        # The OB was stored from this very message but its offset was never committed (a crash in between), so the
        # trigger may not have been published either: publish it again, the planner takes a repeated ToO in stride.
        live = existing.state in LIVE_STATES
        if live:
            await self._trigger(existing, notice, now)
        return Decision(
            message=message.ref,
            outcome=Outcome.REDELIVERED,
            detail=f"already stored as OB {existing.id} ({existing.state.value})"
            + ("; trigger published again" if live else ""),
            event_key=notice.key,
            ob_id=existing.id,
        )

    def _ob_create(self, message: GcnMessage, notice: Notice, request: ObRequest, now: datetime) -> ObCreate:
        t = self._config.too
        setup: dict[str, str | float | int | bool] = {
            EVENT_KEY: notice.key,
            MESSAGE_KEY: message.ref,
            "gcn_topic": message.topic,
            "gcn_event_id": notice.event_id,
        }
        if notice.error_radius_deg is not None:
            setup["gcn_error_radius_deg"] = notice.error_radius_deg
        if notice.trigger_time is not None:
            setup["gcn_trigger_time"] = notice.trigger_time.isoformat()
        return ObCreate(
            ob_type=ObType.TOO,
            name=ob_name(notice),
            target_name=target_name(notice),
            ra_deg=request.ra_deg,
            dec_deg=request.dec_deg,
            exposure_s=request.exposure_s,
            priority=request.priority,
            constraints=ObConstraints(
                max_airmass=t.max_airmass,
                twilight=t.twilight,
                min_moon_separation_deg=t.min_moon_separation_deg,
                max_moon_illumination=t.max_moon_illumination,
                max_seeing_arcsec=t.max_seeing_arcsec,
            ),
            programme=t.programme,
            time_share=TimeShare(t.time_share),
            setup=setup,
            expires_at=now + timedelta(hours=t.lifetime_h),
        )

    async def _trigger(self, ob: ObPublic, notice: Notice, now: datetime) -> None:
        await self._publish(PlanTrigger(kind="too", ts=now, reason=f"GCN {notice.source} {notice.event_id}"[:500],
                                        ob_id=str(ob.id)))

    async def _publish(self, trigger: PlanTrigger) -> None:
        await self._bus.publish(self._triggers_stream, trigger.encode(), retention=self._retention)

    async def _night(self, now: datetime) -> NightGrid:
        night = night_of(self._site, now)
        grid = self._night_cache.get(night)
        if grid is None:
            # astropy takes a few hundred milliseconds, once per night: keep the event loop free meanwhile.
            grid = await asyncio.to_thread(self._nights, night)
            self._night_cache = {night: grid}
        return grid


def _rejected(message: GcnMessage, notice: Notice | None, verdict: Verdict) -> Decision:
    return Decision(
        message=message.ref,
        outcome=Outcome.REJECTED,
        detail=verdict.detail,
        event_key=notice.key if notice is not None else None,
        rejection=verdict.rejection,
    )
