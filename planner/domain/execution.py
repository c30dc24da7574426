"""Execution tracking: OB states follow the telescope's exposure points and the executions P2 records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np

from skyops.records import Quality, Sample, SampleBatch

OB_POINT = "ntt.exposure.ob_id"
STATE_POINT = "ntt.exposure.state"
TRACKED_POINTS = (OB_POINT, STATE_POINT)

# The OB states (planner.store.ObState values) an execution outcome can move an OB between.
QUEUED = "queued"
SCHEDULED = "scheduled"
OBSERVED = "observed"
FAILED = "failed"


class Outcome(StrEnum):
    """How an execution of an OB went, whether the telescope's points or P2 told."""

    STARTED = "started"
    OBSERVED = "observed"
    ABORTED = "aborted"  # cut short (dome closed, taken over): the OB is still wanted
    FAILED = "failed"  # the telescope could not do it (no tracking, exposure refused)


# (from, outcome) → to; a pair that is not here changes nothing. Observed is never undone by a later
# execution, and expired or deleted OBs stay so: the report must count an OB once, as a hit or a miss.
_TRANSITIONS: dict[tuple[str, Outcome], str] = {
    (QUEUED, Outcome.OBSERVED): OBSERVED,
    (SCHEDULED, Outcome.OBSERVED): OBSERVED,
    (FAILED, Outcome.OBSERVED): OBSERVED,
    # An aborted OB goes back to the queue, so the next plan places it again.
    (SCHEDULED, Outcome.ABORTED): QUEUED,
    (QUEUED, Outcome.FAILED): FAILED,
    (SCHEDULED, Outcome.FAILED): FAILED,
}


def next_state(current: str, outcome: Outcome) -> str | None:
    """The OB state after an execution `outcome` in state `current`; None: nothing changes (idempotent)."""
    return _TRANSITIONS.get((current, outcome))


# P2's OB status letters after an execution (what the emulator and P2 set): started, executed, aborted.
_P2_OUTCOMES = {"S": Outcome.STARTED, "X": Outcome.OBSERVED, "A": Outcome.ABORTED}


def p2_outcome(status: str, previous: str = "") -> Outcome | None:
    """The execution outcome a P2 status change means; None for moves that are not executions (e.g. a revision).

    A failed execution leaves a visitor OB observable again: started ('S') back to ready ('+').
    """
    if status == "+" and previous == "S":
        return Outcome.FAILED
    return _P2_OUTCOMES.get(status)


@dataclass(frozen=True)
class ExecutionEvent:
    """OB `ob_id` (the planner's id) reached `outcome` at `ts`; `p2_ob_id` when the telescope named it by P2 id."""

    ob_id: int
    outcome: Outcome
    ts: datetime
    p2_ob_id: int | None = None


@dataclass(frozen=True)
class ResolvedOb:
    ob_id: int
    p2_ob_id: int | None


class ObResolver:
    """Which planner OB an `ntt.exposure.ob_id` value names: the telescope executes P2 OBs, so the value is a
    P2 OB id, found through the VES sync's links; without a link, the value is taken as the planner's own id
    (OBs executed outside P2), unless that OB has a link (then the value is some other P2 OB, not ours)."""

    def __init__(self, links: Mapping[int, int] | None = None) -> None:
        self._by_p2: dict[int, int] = {}
        self._p2_of: dict[int, int] = {}
        for p2_ob_id, ob_id in (links or {}).items():
            self.link(ob_id=ob_id, p2_ob_id=p2_ob_id)

    def link(self, *, ob_id: int, p2_ob_id: int) -> None:
        """Planner OB `ob_id` is P2 OB `p2_ob_id` (replacing either side's earlier link)."""
        old_p2 = self._p2_of.pop(ob_id, None)
        if old_p2 is not None:
            self._by_p2.pop(old_p2, None)
        old_ob = self._by_p2.pop(p2_ob_id, None)
        if old_ob is not None:
            self._p2_of.pop(old_ob, None)
        self._by_p2[p2_ob_id] = ob_id
        self._p2_of[ob_id] = p2_ob_id

    def resolve(self, value: int) -> ResolvedOb | None:
        ob_id = self._by_p2.get(value)
        if ob_id is not None:
            return ResolvedOb(ob_id, value)
        if value in self._p2_of:
            return None
        return ResolvedOb(value, None)

    def __len__(self) -> int:
        return len(self._by_p2)


class ExecutionTracker:
    """Turns the exposure points into OB outcomes: EXPOSING starts an OB, back to IDLE completes it,
    ABORTED aborts it. Samples of bad quality are ignored (the telescope's word is not known then).
    The OB point's value is resolved to a planner OB when an event is emitted (a link may arrive late)."""

    def __init__(self, resolver: ObResolver | None = None) -> None:
        self.resolver = resolver or ObResolver()
        self.ob_id = 0
        self.state = "IDLE"
        self.unresolved = 0
        self._exposed = False

    def feed_batch(self, batch: SampleBatch) -> list[ExecutionEvent]:
        """The tracked points of a monitoring batch, in time order; everything else is skipped with numpy."""
        if not len(batch):
            return []
        wanted = np.asarray([name in TRACKED_POINTS for name in batch.points], dtype=bool)
        rows = np.flatnonzero(wanted[batch.point_idx] & (batch.quality == Quality.GOOD))
        if rows.size == 0:
            return []
        part = batch.select(rows[np.argsort(batch.ts_us[rows], kind="stable")])
        return self.feed(part.samples())

    def feed(self, samples: Iterable[Sample]) -> list[ExecutionEvent]:
        events: list[ExecutionEvent] = []
        for sample in samples:
            if sample.quality is not Quality.GOOD:
                continue
            if sample.point == OB_POINT and isinstance(sample.value, int) and not isinstance(sample.value, bool):
                if sample.value != self.ob_id:
                    self.ob_id, self._exposed = sample.value, False
            elif sample.point == STATE_POINT and isinstance(sample.value, str):
                outcome = self._on_state(sample.value.upper())
                if outcome is not None:
                    event = self._event(outcome, sample.ts)
                    if event is not None:
                        events.append(event)
        return events

    def _event(self, outcome: Outcome, ts: datetime) -> ExecutionEvent | None:
        resolved = self.resolver.resolve(self.ob_id)
        if resolved is None:
            self.unresolved += 1
            return None
        return ExecutionEvent(resolved.ob_id, outcome, ts, resolved.p2_ob_id)

    def _on_state(self, state: str) -> Outcome | None:
        previous, self.state = self.state, state
        if self.ob_id <= 0 or state == previous:
            return None
        if state == "EXPOSING" and not self._exposed:
            self._exposed = True
            return Outcome.STARTED
        if state == "ABORTED" and self._exposed:
            self._exposed = False
            return Outcome.ABORTED
        if state == "IDLE" and self._exposed and previous in ("EXPOSING", "READOUT"):
            self._exposed = False
            return Outcome.OBSERVED
        return None
