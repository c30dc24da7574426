"""One night's planner state: the cached bucket, the active alarm consequences, and re-planning on triggers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from planner.config import SchedulerConfig
from planner.domain.night import NightGrid
from planner.domain.observability import ObRequest, ObTable, concat_observability, observability
from planner.domain.scheduler import Block, Conditions, NightContext, Sector, ceil_minute, schedule
from skyops.messages import ConsequenceKind, PlanTrigger
from skyops.timeutil import require_utc


class UnknownObError(LookupError):
    """A trigger or an operation named an OB the night's planner does not hold."""


@dataclass(frozen=True)
class PlanOutcome:
    """A plan for the night and why it is what it is."""

    blocks: tuple[Block, ...]
    reason: str
    trigger: PlanTrigger | None = None


@dataclass(frozen=True)
class Reconciled:
    """What `NightPlanner.reconcile` changed, by OB id."""

    added: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()
    returned: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.edited or self.withdrawn or self.returned)

    def __str__(self) -> str:
        parts = [f"{label} {', '.join(ids)}" for label, ids in (("added", self.added), ("edited", self.edited),
                 ("withdrawn", self.withdrawn), ("back", self.returned)) if ids]
        return "; ".join(parts) or "no change"


class NightPlanner:
    """Plans one night and re-plans it from the current minute when a trigger arrives."""

    def __init__(self, night: NightGrid, requests: Sequence[ObRequest], config: SchedulerConfig) -> None:
        self.night = night
        self.config = config
        self._requests = list(requests)
        self._dome: set[str] = set()
        self._sectors: dict[str, Sector] = {}
        self._seeing: dict[str, float] = {}
        self._observed: set[int] = set()
        self._withdrawn: set[int] = set()  # rows no longer live in the OB store (deleted, retracted, expired)
        self.blocks: tuple[Block, ...] = ()
        self._rebuild()

    def _rebuild(self) -> None:
        self.table = ObTable.from_requests(self._requests)
        self.obs = observability(self.table, self.night, overhead_s=self.config.overhead_s)
        self.ctx = NightContext(self.night, self.table, self.obs, self.config)
        self._row = {r.ob_id: i for i, r in enumerate(self._requests)}

    @property
    def conditions(self) -> Conditions:
        return Conditions(
            dome_closed=bool(self._dome),
            sectors=tuple(self._sectors[k] for k in sorted(self._sectors)),
            seeing_limit_arcsec=min(self._seeing.values()) if self._seeing else None,
        )

    def row_of(self, ob_id: str) -> int:
        try:
            return self._row[ob_id]
        except KeyError:
            raise UnknownObError(f"OB {ob_id!r} is not in tonight's planner") from None

    def request(self, row: int) -> ObRequest:
        return self._requests[row]

    def add(self, request: ObRequest) -> int:
        """Add (or replace) an OB, e.g. a ToO that arrived during the night; returns its row."""
        if request.ob_id in self._row:
            self._requests[self._row[request.ob_id]] = request
            self._rebuild()
            return self._row[request.ob_id]
        # Only the new row is computed; the night's cached arrays are reused for the others.
        self._requests.append(request)
        table = ObTable.from_requests(self._requests)
        added = observability(ObTable.from_requests([request]), self.night, overhead_s=self.config.overhead_s)
        self.obs = concat_observability(self.obs, added)
        self.table = table
        self.ctx = NightContext(self.night, table, self.obs, self.config, base=self.ctx)
        self._row[request.ob_id] = len(self._requests) - 1
        return self._row[request.ob_id]

    def reconcile(self, live: Sequence[ObRequest]) -> Reconciled:
        """Bring tonight's OBs in line with the store's live ones: new OBs are added, edited ones replaced, OBs no
        longer live are withdrawn (never placed again unless they come back). Takes effect at the next re-plan."""
        wanted = {r.ob_id: r for r in live}
        edited = [r for oid, r in wanted.items() if oid in self._row and self._requests[self._row[oid]] != r]
        for request in edited:
            self._requests[self._row[request.ob_id]] = request
        if edited:
            self._rebuild()
        added = [r.ob_id for r in wanted.values() if r.ob_id not in self._row]
        for ob_id in added:
            self.add(wanted[ob_id])
        gone = {row for oid, row in self._row.items() if oid not in wanted} - self._observed
        back = {self._row[oid] for oid in wanted} & self._withdrawn
        withdrawn = gone - self._withdrawn
        self._withdrawn = (self._withdrawn | gone) - back
        return Reconciled(added=tuple(added), edited=tuple(r.ob_id for r in edited),
                          withdrawn=tuple(sorted(self._requests[r].ob_id for r in withdrawn)),
                          returned=tuple(sorted(self._requests[r].ob_id for r in back)))

    def mark_observed(self, ob_id: str) -> None:
        """An OB the telescope has completed: never placed again tonight."""
        self._observed.add(self.row_of(ob_id))

    def plan(self) -> PlanOutcome:
        """The whole night, from its first minute."""
        self.blocks = tuple(self._schedule(0, kept=[], first=None))
        return PlanOutcome(blocks=self.blocks, reason="night plan")

    def replan(self, trigger: PlanTrigger) -> PlanOutcome:
        """Re-plan from the trigger's minute: keep what ran, drop the rest, put a ToO first, refill."""
        now = require_utc(trigger.ts, what="trigger.ts")
        first = self.row_of(trigger.ob_id) if trigger.kind == "too" and trigger.ob_id is not None else None
        if first in self._withdrawn:
            first = None  # a ToO retracted before its trigger was handled
        if trigger.kind == "consequence":
            self._apply_consequence(trigger)
        from_min = ceil_minute(self.night, now.timestamp())
        cond = self.conditions
        kept: list[Block] = []
        for block in self.blocks:
            if block.end_min <= from_min:
                kept.append(block)
            elif block.start_min < from_min:
                if block.row in self._observed:
                    # Finished earlier than planned: the rest of its slot is free again.
                    kept.append(replace(block, end_min=from_min))
                elif first is None and block.row not in self._withdrawn and self._still_allowed(block, from_min, cond):
                    kept.append(block)
                else:
                    # The telescope still points there, so the next slew starts from this target.
                    kept.append(replace(block, end_min=from_min, interrupted=True))
        self.blocks = tuple(self._schedule(from_min, kept=kept, first=first))
        return PlanOutcome(blocks=self.blocks, reason=_reason(trigger), trigger=trigger)

    def current_minute(self, when: datetime) -> int:
        return ceil_minute(self.night, require_utc(when).timestamp())

    def _apply_consequence(self, trigger: PlanTrigger) -> None:
        alarm = trigger.alarm_id or ""
        kind = trigger.consequence
        if kind is ConsequenceKind.CLOSE_DOME:
            (self._dome.add if trigger.active else self._dome.discard)(alarm)
        elif kind is ConsequenceKind.POINTING_RESTRICTION:
            if trigger.active and trigger.sector is not None:
                self._sectors[alarm] = Sector(trigger.sector.start_deg, trigger.sector.end_deg)
            else:
                self._sectors.pop(alarm, None)
        elif kind is ConsequenceKind.SEEING_LIMIT:
            if trigger.active and trigger.seeing_limit_arcsec is not None:
                self._seeing[alarm] = trigger.seeing_limit_arcsec
            else:
                self._seeing.pop(alarm, None)

    def _still_allowed(self, block: Block, from_min: int, cond: Conditions) -> bool:
        allowed = self.ctx.allowed_under(cond, np.asarray([block.row], dtype=np.int64))[0]
        return bool(allowed[from_min : block.end_min].all())

    def _schedule(self, from_min: int, *, kept: list[Block], first: int | None) -> list[Block]:
        taken = {b.row for b in kept if not b.interrupted} | self._observed | self._withdrawn
        pool = np.asarray([r for r in range(len(self._requests)) if r not in taken], dtype=np.int64)
        return schedule(
            self.ctx, from_min=from_min, kept=kept, candidates=pool, conditions=self.conditions, first=first
        )


def _reason(trigger: PlanTrigger) -> str:
    if trigger.kind == "too":
        return f"ToO {trigger.ob_id}: {trigger.reason}"
    if trigger.kind == "manual":
        return f"re-plan asked by {trigger.user}: {trigger.reason}"
    if trigger.kind == "ob_change":
        return f"OB {trigger.ob_id} changed: {trigger.reason}" if trigger.ob_id else f"OBs changed: {trigger.reason}"
    state = "active" if trigger.active else "cleared"
    kind = trigger.consequence.value if trigger.consequence is not None else "consequence"
    return f"alarm {trigger.alarm_id} {state} ({kind}): {trigger.reason}"
