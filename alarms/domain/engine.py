"""The rule engine: newest input values in numpy arrays, rules indexed by point, and every alarm's state."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.domain.consequence import ConsequenceTracker
from alarms.domain.rules.base import EvalContext, Reading, Rule, Verdict
from alarms.domain.screen import NEVER, QuietScreen, Table
from alarms.domain.severity import SeverityFilter
from alarms.domain.state import AlarmActionError, AlarmState
from skyops.messages import PlanTrigger
from skyops.records import AlarmEvent, AlarmSeverity, Quality, SampleBatch
from skyops.timeutil import from_us, to_us


@dataclass
class Outcome:
    """What an evaluation produced: alarm events to publish and plan triggers to send."""

    events: list[AlarmEvent] = field(default_factory=list)
    triggers: list[PlanTrigger] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # alarms whose persisted state changed
    future: int = 0  # samples ignored for being dated too far ahead of the evaluation time
    future_points: tuple[str, ...] = ()  # a few of their points, for the log

    def extend(self, other: Outcome) -> None:
        self.events.extend(other.events)
        self.triggers.extend(other.triggers)
        self.changed |= other.changed
        self.future += other.future
        self.future_points = (self.future_points + other.future_points)[:5]


@dataclass(slots=True)
class AlarmRuntime:
    """A rule with everything it remembers: raw severity (hysteresis), delay timers, state, consequence."""

    rule: Rule[Any]
    input_ids: npt.NDArray[np.int64]
    inputs: tuple[int, ...]  # the same as Python ints, for the per-rule loop
    filter: SeverityFilter
    state: AlarmState
    consequence: ConsequenceTracker
    raw: AlarmSeverity = AlarmSeverity.NONE

    def dump(self) -> dict[str, Any]:
        return {
            "raw": int(self.raw), "filter": self.filter.dump(), "state": self.state.dump(),
            "consequence": self.consequence.dump(),
        }

    def load(self, data: Mapping[str, Any]) -> None:
        self.raw = AlarmSeverity(int(data["raw"]))
        self.filter.load(dict(data["filter"]))
        state = AlarmState.load(data["state"])
        state.alarm_id = self.state.alarm_id
        self.state = state
        self.consequence.load(dict(data["consequence"]))


@dataclass
class RestoreReport:
    restored: int = 0
    orphans: list[str] = field(default_factory=list)  # saved alarms no configured rule defines
    unreadable: dict[str, str] = field(default_factory=dict)  # alarm → why its saved state was refused


class UnknownAlarmError(AlarmActionError, LookupError):
    """An operator action named an alarm no rule defines."""


_QUALITIES: tuple[Quality, ...] = tuple(sorted(Quality))  # by code: _QUALITIES[int(q)] is q


def _future(batch: SampleBatch, limit_us: int) -> Outcome:
    """The samples of `batch` dated after `limit_us`, counted (with a few of their points) for the log."""
    ahead = np.flatnonzero(batch.ts_us > limit_us)
    if not len(ahead):
        return Outcome()
    idx = np.unique(batch.point_idx[ahead])[:5]
    return Outcome(future=len(ahead), future_points=tuple(batch.points[i] for i in idx.tolist()))


class AlarmEngine:
    """Evaluates configured rules on sample batches. Pure: time comes in as arguments.

    A batch updates the value table with numpy and re-evaluates only the rules whose inputs it touched;
    a tick re-evaluates at the given time what time alone can change (ages, delays, shelve expiry).
    Settled rules (OK, valid, no timer running) that the quiet screen proves would stay so are left
    out, decided for all of them at once with numpy; `vectorized=False` evaluates everything in full.
    """

    def __init__(
        self, rules: Sequence[Rule[Any]], *, started: datetime, max_shelve: timedelta = timedelta(hours=24),
        max_future: timedelta = timedelta(minutes=1), vectorized: bool = True,
    ) -> None:
        self.vectorized = vectorized  # False evaluates every touched rule in full (the reference behaviour)
        # A sample dated further ahead than this is refused: kept, it would hide every later sample of its
        # point (late samples never overwrite newer ones) and look fresh until its date.
        self.max_future_us = round(max_future / timedelta(microseconds=1))
        ids = [r.alarm_id for r in rules]
        dupes = sorted({a for a in ids if ids.count(a) > 1}) if len(set(ids)) != len(ids) else []
        if dupes:
            raise ValueError(f"alarm names must be unique; repeated: {', '.join(dupes)}")
        self.started_us = to_us(started)
        self.max_shelve = max_shelve
        self._last_us = self.started_us
        self.point_ids: dict[str, int] = {}
        for rule in rules:
            for p in rule.inputs:
                self.point_ids.setdefault(p, len(self.point_ids))
        n = len(self.point_ids)
        self.point_names = list(self.point_ids)
        self.value = np.full(n, np.nan)
        self.ts_us = np.full(n, NEVER, dtype=np.int64)
        self.quality = np.zeros(n, dtype=np.uint8)
        self.alarms: dict[str, AlarmRuntime] = {}
        self._order: list[AlarmRuntime] = []
        pair_point: list[int] = []
        pair_rule: list[int] = []
        for i, rule in enumerate(rules):
            input_ids = np.asarray([self.point_ids[p] for p in rule.inputs], dtype=np.int64)
            rt = AlarmRuntime(
                rule=rule,
                input_ids=input_ids,
                inputs=tuple(input_ids.tolist()),
                filter=SeverityFilter(
                    activation_us=rule.config.activation_delay_s.as_us(),
                    clear_us=round(rule.config.clear_delay_s * 1_000_000),
                ),
                state=AlarmState(rule.alarm_id, changed_us=self.started_us),
                consequence=ConsequenceTracker(rule.alarm_id, rule.config.consequence),
            )
            self.alarms[rule.alarm_id] = rt
            self._order.append(rt)
            pair_point.extend(input_ids.tolist())
            pair_rule.extend([i] * len(input_ids))
        # (point, rule) pairs: the rules a batch touches are one boolean gather away.
        self._pair_point = np.asarray(pair_point, dtype=np.int64)
        self._pair_rule = np.asarray(pair_rule, dtype=np.int64)
        self._lookups: dict[tuple[str, ...], npt.NDArray[np.int64]] = {}
        self._screen = QuietScreen(rules, self.point_ids, started_us=self.started_us)
        self._table = Table(self.value, self.ts_us, self.quality)
        # A rule is settled when it is OK, valid, with no timer running and no consequence held: while the
        # screen finds it quiet, evaluating it again would change nothing.
        self._settled = np.zeros(len(self._order), dtype=bool)
        # Rules whose last verdict was INVALID: time alone never makes input valid again (it only ages), so
        # ticks leave them to the next sample of their inputs.
        self._invalid = np.zeros(len(self._order), dtype=bool)

    # --- evaluation ---------------------------------------------------------------------------
    def _now(self, now: datetime) -> int:
        # Evaluation time never runs backwards, so delay timers stay monotonic.
        self._last_us = max(self._last_us, to_us(now))
        return self._last_us

    def ingest(self, batch: SampleBatch, *, not_after_us: int | None = None) -> npt.NDArray[np.int64]:
        """Update the value table with the newest sample of each point; returns the points that changed.

        Samples dated after `not_after_us` are left out (`process` counts them).
        """
        return self._ingest(batch, not_after_us)[0]

    def _ingest(
        self, batch: SampleBatch, not_after_us: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """`ingest`, also returning the rules that read the changed points."""
        none = np.zeros(0, dtype=np.int64)
        if not len(batch):
            return none, none
        lookup = self._lookup(batch.points)
        pid = lookup[batch.point_idx]
        keep = pid >= 0
        if not_after_us is not None:
            keep &= batch.ts_us <= not_after_us
        if not keep.any():
            return none, none
        pid = pid[keep]
        ts = batch.ts_us[keep]
        rows = np.flatnonzero(keep)
        if np.bincount(pid, minlength=len(self.point_names)).max() > 1:
            # Several samples of a point: keep its newest (a collector's usual batch has one of each: no sort).
            order = np.lexsort((ts, pid))
            pid, ts = pid[order], ts[order]
            last = np.ones(len(pid), dtype=bool)
            last[:-1] = pid[1:] != pid[:-1]
            rows = rows[order[last]]
            pid, ts = pid[last], ts[last]
        newer = ts >= self.ts_us[pid]  # a late sample never overwrites a newer one
        rows, pid, ts = rows[newer], pid[newer], ts[newer]
        numeric = batch.select(rows)
        values = np.where(numeric.usable(), numeric.numeric(), np.nan)
        self.value[pid] = values
        self.ts_us[pid] = ts
        self.quality[pid] = numeric.quality
        rules = self._rules_reading(pid)
        self._invalid[rules] = False
        return pid, rules

    def _rules_reading(self, points: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The rules that read any of `points`, ascending."""
        hit = np.zeros(len(self.point_names), dtype=bool)
        hit[points] = True
        wanted = np.zeros(len(self._order), dtype=bool)
        wanted[self._pair_rule[hit[self._pair_point]]] = True
        rules: npt.NDArray[np.int64] = np.flatnonzero(wanted)
        return rules

    def _lookup(self, points: tuple[str, ...]) -> npt.NDArray[np.int64]:
        """Batch point index → engine point id (-1: no rule reads it); collectors repeat their point lists."""
        lookup = self._lookups.get(points)
        if lookup is None:
            lookup = np.fromiter((self.point_ids.get(p, -1) for p in points), dtype=np.int64, count=len(points))
            if len(self._lookups) >= 64:
                self._lookups.clear()
            self._lookups[points] = lookup
        return lookup

    def process(self, batch: SampleBatch, now: datetime) -> Outcome:
        """Ingest a batch and re-evaluate the rules it touched, at time `now`."""
        now_us = self._now(now)
        limit_us = now_us + self.max_future_us
        touched, rules = self._ingest(batch, limit_us)
        future = _future(batch, limit_us)
        if not len(touched):
            return future
        # `rules` ascend: events come out in rule order, as in a full evaluation.
        out = self._evaluate(self._unsettled(rules, now_us), now_us)
        out.extend(future)
        return out

    def tick(self, now: datetime) -> Outcome:
        """Re-evaluate every rule at `now` (ages grow, delays elapse) and expire shelves."""
        now_us = self._now(now)
        every = np.arange(len(self._order), dtype=np.int64)
        due = every if not self.vectorized else every[~self._invalid]
        out = self._evaluate(self._unsettled(due, now_us), now_us)
        for rt in self._order:
            events = rt.state.expire_shelve(now_us)
            if events:
                out.events.extend(events)
                out.changed.add(rt.rule.alarm_id)
        return out

    def _unsettled(self, rules: npt.NDArray[np.int64], now_us: int) -> list[int]:
        """The rules among `rules` (ascending) that need a full evaluation: settled ones the screen finds
        quiet are left out."""
        if not self.vectorized or not len(rules):
            every: list[int] = rules.tolist()
            return every
        settled = self._settled[rules]
        if not settled.any():
            some: list[int] = rules.tolist()
            return some
        skip = np.zeros(len(rules), dtype=bool)
        skip[settled] = self._screen.quiet(rules[settled], self._table, now_us)
        left: list[int] = rules[~skip].tolist()
        return left

    def _evaluate(self, rule_indices: Sequence[int], now_us: int) -> Outcome:
        ctx = EvalContext(now_us=now_us, started_us=self.started_us)
        out = Outcome()
        if not rule_indices:
            return out
        # The table as Python lists once per call: building readings from numpy scalars costs more per rule.
        value, ts_us, quality = self.value.tolist(), self.ts_us.tolist(), self.quality.tolist()
        names = self.point_names
        for i in rule_indices:
            rt = self._order[i]
            readings = [
                None if ts_us[p] == NEVER else Reading(names[p], value[p], ts_us[p], _QUALITIES[quality[p]])
                for p in rt.inputs
            ]
            try:
                verdict = rt.rule.evaluate(readings, ctx, rt.raw)
            except Exception as exc:  # a broken rule must not stop the others: it shows INVALID, with why
                verdict = Verdict.invalid(f"rule evaluation failed: {type(exc).__name__}: {exc}")
            raw_before, revision = rt.raw, rt.filter.revision
            if verdict.valid:
                rt.raw = verdict.severity
                severity = rt.filter.step(verdict.severity, now_us)
            else:
                rt.filter.forget_timers()
                severity = rt.state.severity
            events = rt.state.update(now_us, severity, valid=verdict.valid, reason=verdict.reason,
                                     attributes=verdict.attributes)
            trigger = rt.consequence.update(now_us, severity, valid=verdict.valid, reason=verdict.reason,
                                            sector=verdict.sector)
            if events or trigger is not None or rt.raw != raw_before or rt.filter.revision != revision:
                out.changed.add(rt.rule.alarm_id)
            out.events.extend(events)
            if trigger is not None:
                out.triggers.append(trigger)
            self._invalid[i] = not verdict.valid
            self._settled[i] = (
                rt.raw == AlarmSeverity.NONE and rt.filter.current == AlarmSeverity.NONE and not rt.filter.since_us
                and rt.state.valid and rt.state.severity == AlarmSeverity.NONE and not rt.consequence.active
            )
        return out

    # --- operator actions ---------------------------------------------------------------------
    def state(self, alarm_id: str) -> AlarmState:
        try:
            return self.alarms[alarm_id].state
        except KeyError:
            raise UnknownAlarmError(f"no alarm named {alarm_id!r}") from None

    def ack(self, alarm_id: str, now: datetime, *, user: str, comment: str,
            seen: AlarmSeverity | None = None) -> list[AlarmEvent]:
        return self.state(alarm_id).ack(self._now(now), user=user, comment=comment, seen=seen)

    def shelve(self, alarm_id: str, now: datetime, *, user: str, comment: str, until: datetime) -> list[AlarmEvent]:
        return self.state(alarm_id).shelve(self._now(now), user=user, comment=comment,
                                           until_us=to_us(until, what="shelve expiry"), max_shelve=self.max_shelve)

    def unshelve(self, alarm_id: str, now: datetime, *, user: str, comment: str) -> list[AlarmEvent]:
        return self.state(alarm_id).unshelve(self._now(now), user=user, comment=comment)

    def comment(self, alarm_id: str, now: datetime, *, user: str, comment: str) -> list[AlarmEvent]:
        return self.state(alarm_id).comment(self._now(now), user=user, comment=comment)

    # --- persistence --------------------------------------------------------------------------
    def dump(self, alarm_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Serialisable state of the named alarms (all by default)."""
        ids = self.alarms if alarm_ids is None else alarm_ids
        return {a: self.alarms[a].dump() for a in ids}

    def restore(self, saved: Mapping[str, Mapping[str, Any]]) -> RestoreReport:
        """Take back saved alarm states; reports the ones no rule has any more and the unreadable ones
        (those start afresh rather than keep the service from starting)."""
        report = RestoreReport()
        self._settled[:] = False
        self._invalid[:] = False
        for alarm_id, data in saved.items():
            rt = self.alarms.get(alarm_id)
            if rt is None:
                report.orphans.append(alarm_id)
                continue
            backup = rt.dump()
            try:
                rt.load(data)
            except (KeyError, ValueError, TypeError) as exc:
                rt.load(backup)
                report.unreadable[alarm_id] = f"{type(exc).__name__}: {exc}"
                continue
            report.restored += 1
            self._last_us = max(self._last_us, rt.state.changed_us)
        return report

    def dump_values(self) -> dict[str, Any]:
        """The newest value of every input seen, compact (base64 arrays): restored after a restart, the
        inputs are not INVALID at once."""
        seen = np.flatnonzero(self.ts_us != NEVER)
        return {
            "points": [self.point_names[i] for i in seen.tolist()],
            "value": base64.b64encode(self.value[seen].astype("<f8").tobytes()).decode("ascii"),
            "ts_us": base64.b64encode(self.ts_us[seen].astype("<i8").tobytes()).decode("ascii"),
            "quality": base64.b64encode(self.quality[seen].tobytes()).decode("ascii"),
        }

    def restore_values(self, saved: Mapping[str, Any]) -> None:
        """Take back `dump_values`; points no rule reads any more are ignored, newer values kept."""
        if not saved:
            return
        if not isinstance(saved.get("points"), list):
            raise ValueError("saved input values have no point list")
        points = list(saved["points"])
        value = np.frombuffer(base64.b64decode(saved["value"]), dtype="<f8")
        ts = np.frombuffer(base64.b64decode(saved["ts_us"]), dtype="<i8")
        quality = np.frombuffer(base64.b64decode(saved["quality"]), dtype=np.uint8)
        if not len(points) == len(value) == len(ts) == len(quality):
            raise ValueError("saved input values are inconsistent (column lengths differ)")
        ids = np.fromiter((self.point_ids.get(p, -1) for p in points), dtype=np.int64, count=len(points))
        keep = ids >= 0
        ids, value, ts, quality = ids[keep], value[keep], ts[keep], quality[keep]
        newer = ts > self.ts_us[ids]
        self.value[ids[newer]] = value[newer]
        self.ts_us[ids[newer]] = ts[newer]
        self.quality[ids[newer]] = quality[newer]
        self._invalid[self._rules_reading(ids[newer])] = False

    def last_evaluated(self) -> datetime:
        return from_us(self._last_us)
