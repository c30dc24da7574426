"""The rule engine: newest input values in numpy arrays, rules indexed by point, and every alarm's state."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.domain.consequence import ConsequenceTracker
from alarms.domain.rules.base import EvalContext, Reading, Rule, Verdict
from alarms.domain.screen import NEVER, NONE_YET, QuietScreen, Span, Table
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


def _single_instant(runs: list[int], first_ts: list[int], k: int, m: int) -> int | None:
    """The one time at which inputs `k:k+m` changed, if each has at most one sample and those share a time."""
    instant: int | None = None
    for j in range(k, k + m):
        run = runs[j]
        if run > 1:
            return None
        if run:
            if instant is None:
                instant = first_ts[j]
            elif first_ts[j] != instant:
                return None
    return instant


class UnknownAlarmError(AlarmActionError, LookupError):
    """An operator action named an alarm no rule defines."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """The samples of a batch the table took in, by point in time order: a point's run is
    `start[p]:stop[p]` of `ts`/`value`/`quality` (empty for points without samples)."""

    points: npt.NDArray[np.int64]  # the points with samples
    rules: npt.NDArray[np.int64]  # the rules reading them, ascending
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]  # NaN where the sample was not usable as a number
    quality: npt.NDArray[np.uint8]
    start: npt.NDArray[np.int64]
    stop: npt.NDArray[np.int64]
    last_ts: npt.NDArray[np.int64]  # by point: its newest sample (NEVER without any)
    before: Table  # the table before the batch
    span: Span


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

    A batch updates the value table with numpy and re-evaluates only the rules whose inputs it touched, at
    each instant at which their inputs changed (see `process`: the transitions do not depend on how samples
    were batched); a tick re-evaluates at the given time what time alone can change (ages, delays, shelve
    expiry). Settled rules (OK, valid, no timer running) that the quiet screen proves would stay so over the
    whole batch are left out, decided for all of them at once with numpy; `vectorized=False` evaluates
    everything in full.
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
        # Each rule's pairs are one run: where it starts and how long it is.
        self._pair_count = np.bincount(self._pair_rule, minlength=len(self._order)).astype(np.int64)
        self._pair_start = np.cumsum(self._pair_count) - self._pair_count
        self._lookups: dict[tuple[str, ...], npt.NDArray[np.int64]] = {}
        self._screen = QuietScreen(rules, self.point_ids, started_us=self.started_us)
        self._table = Table(self.value, self.ts_us, self.quality)
        # A rule is settled when it is OK, valid, with no timer running and no consequence held: while the
        # screen finds it quiet, evaluating it again would change nothing.
        self._settled = np.zeros(len(self._order), dtype=bool)
        # Per rule, when a batch or tick last evaluated it: a sample dated earlier is evaluated at this time.
        self._floor_us = np.full(len(self._order), self.started_us, dtype=np.int64)
        # Per rule, the newest sample time it was evaluated at (saved with its state): a batch handled again
        # after a restart does not replay instants before it, so its transitions are not repeated.
        self._seen_us = np.full(len(self._order), NEVER, dtype=np.int64)
        self._index = {rt.rule.alarm_id: i for i, rt in enumerate(self._order)}
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
        entry = self._ingest(batch, not_after_us)
        return np.zeros(0, dtype=np.int64) if entry is None else entry.points

    def _ingest(self, batch: SampleBatch, not_after_us: int | None) -> _Entry | None:
        """Take in an entry: the table gets each point's newest sample; returns all the samples kept, by point
        in time order, with the table as it was before and the rules that read the points."""
        if not len(batch):
            return None
        lookup = self._lookup(batch.points)
        pid = lookup[batch.point_idx]
        keep = pid >= 0
        if not_after_us is not None:
            keep &= batch.ts_us <= not_after_us
        # A late sample never overwrites a newer one, nor is it evaluated.
        keep[keep] = batch.ts_us[keep] >= self.ts_us[pid[keep]]
        if not keep.any():
            return None
        rows = np.flatnonzero(keep)
        pid, ts = pid[rows], batch.ts_us[rows]
        kept = batch.select(rows)
        value = np.where(kept.usable(), kept.numeric(), np.nan)
        quality = kept.quality
        n = len(self.point_names)
        before = Table(self.value.copy(), self.ts_us.copy(), self.quality.copy())
        start = np.zeros(n, dtype=np.int64)
        stop = np.zeros(n, dtype=np.int64)
        several = np.bincount(pid, minlength=n).max() > 1
        if several:
            # Several samples of a point: its run, in time order (row order among equal times).
            order = np.lexsort((ts, pid))
            pid, ts, value, quality = pid[order], ts[order], value[order], quality[order]
            first = np.ones(len(pid), dtype=bool)
            first[1:] = pid[1:] != pid[:-1]
            starts = np.flatnonzero(first)
            stops = np.append(starts[1:], len(pid))
        else:  # a collector's usual entry has one sample of each point: no sort
            starts = np.arange(len(pid), dtype=np.int64)
            stops = starts + 1
        points = pid[starts]
        last = stops - 1
        start[points] = starts
        stop[points] = stops
        self.value[points] = value[last]
        self.ts_us[points] = ts[last]
        self.quality[points] = quality[last]
        first_ts = np.full(n, NONE_YET, dtype=np.int64)
        first_ts[points] = ts[starts]
        last_ts = np.full(n, NEVER, dtype=np.int64)
        last_ts[points] = ts[last]
        if several:
            lo, hi = self.value.copy(), self.value.copy()
            lo[points] = np.minimum.reduceat(value, starts)
            hi[points] = np.maximum.reduceat(value, starts)
            bad = np.zeros(n, dtype=bool)
            bad[points] = np.logical_or.reduceat(np.isnan(value), starts)
            span = Span(lo, hi, bad, before.value, before.ts_us, first_ts)
        else:
            span = Span(self.value, self.value, None, before.value, before.ts_us, first_ts)
        rules = self._rules_reading(points)
        self._invalid[rules] = False
        return _Entry(points, rules, ts, value, quality, start, stop, last_ts, before, span)

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
        """Ingest a batch and re-evaluate the rules it touched, sample by sample, in time order.

        The transitions do not depend on how samples were cut into entries: a rule is evaluated at each
        distinct timestamp at which one of its inputs has a sample in the batch, in time order, with the
        value of every input as it was at that time (its latest sample not after it, else the value from
        before the batch). So a gust that rises and falls inside one entry raises and clears the alarm
        exactly as the same samples sent one by one would. A rule over several inputs (an expression, the
        wind restriction) is evaluated once per distinct timestamp, whichever of its inputs changed; samples
        of one point sharing a timestamp count as one instant, the last one listed giving the value.

        The evaluation time of a sample is its timestamp, but never before the rule was last evaluated (by a
        tick or an earlier batch: timers never run backwards) and never after `now` (a sample dated slightly
        ahead counts now). What time alone changes after the last sample (ages, delays) is the next tick's.
        A rule skips instants older than the newest it was already evaluated at: a batch handled again after
        a restart repeats no transition, and a sample of one input arriving after a newer sample of another
        is taken into the table for the rule's next instant (or tick) rather than evaluated out of order.
        Settled rules that the quiet screen proves quiet at every instant of the batch are left out, as
        evaluating them would change nothing.
        """
        now_us = self._now(now)
        limit_us = now_us + self.max_future_us
        entry = self._ingest(batch, limit_us)
        future = _future(batch, limit_us)
        if entry is None:
            return future
        # `rules` ascend: events come out in rule order, each rule's in time order.
        out = self._replay(self._unsettled(entry.rules, now_us, entry.span), entry, now_us)
        self._floor_us[entry.rules] = now_us
        newest = np.maximum.reduceat(entry.last_ts[self._pair_point], self._pair_start)[entry.rules]
        self._seen_us[entry.rules] = np.maximum(self._seen_us[entry.rules], newest)
        out.extend(future)
        return out

    def tick(self, now: datetime) -> Outcome:
        """Re-evaluate every rule at `now` (ages grow, delays elapse) and expire shelves."""
        now_us = self._now(now)
        every = np.arange(len(self._order), dtype=np.int64)
        due = every if not self.vectorized else every[~self._invalid]
        out = self._evaluate(self._unsettled(due, now_us), now_us)
        self._floor_us[:] = now_us
        for rt in self._order:
            events = rt.state.expire_shelve(now_us)
            if events:
                out.events.extend(events)
                out.changed.add(rt.rule.alarm_id)
        return out

    def _unsettled(self, rules: npt.NDArray[np.int64], now_us: int, span: Span | None = None) -> list[int]:
        """The rules among `rules` (ascending) that need a full evaluation: settled ones the screen finds
        quiet (over the whole `span` of an entry, if given) are left out."""
        if not self.vectorized or not len(rules):
            every: list[int] = rules.tolist()
            return every
        settled = self._settled[rules]
        if not settled.any():
            some: list[int] = rules.tolist()
            return some
        skip = np.zeros(len(rules), dtype=bool)
        skip[settled] = self._screen.quiet(rules[settled], self._table, now_us, span)
        left: list[int] = rules[~skip].tolist()
        return left

    def _replay(self, rule_indices: Sequence[int], entry: _Entry, now_us: int) -> Outcome:
        """Evaluate each rule at every instant at which the entry changed one of its inputs, in time order."""
        out = Outcome()
        if not rule_indices:
            return out
        names = self.point_names
        # Everything the loop reads, gathered for all (rule, input) pairs at once and turned into Python lists:
        # numpy scalars one by one cost more than the rules' own arithmetic.
        rules = np.asarray(rule_indices, dtype=np.int64)
        firsts, counts = self._pair_start[rules], self._pair_count[rules]
        offsets = np.repeat(firsts - np.cumsum(counts) + counts, counts)
        pts = self._pair_point[np.arange(int(counts.sum()), dtype=np.int64) + offsets]
        before = entry.before
        b_value, b_ts, b_quality = before.value[pts].tolist(), before.ts_us[pts].tolist(), before.quality[pts].tolist()
        a_idx, b_idx = entry.start[pts], entry.stop[pts]
        head = np.minimum(a_idx, len(entry.ts) - 1)  # a point's first sample (meaningless where it has none)
        h_ts, h_value, h_quality = entry.ts[head].tolist(), entry.value[head].tolist(), entry.quality[head].tolist()
        runs = (b_idx - a_idx).tolist()
        starts = a_idx.tolist()
        floors = self._floor_us[rules].tolist()
        seen = self._seen_us[rules].tolist()
        ctx: EvalContext | None = None
        k = 0
        for i, floor, done in zip(rule_indices, floors, seen, strict=True):
            rt = self._order[i]
            floor = max(floor, rt.state.changed_us)
            inputs = rt.inputs
            m = len(inputs)
            instant = _single_instant(runs, h_ts, k, m)
            if instant is not None and instant < done:  # evaluated before a restart
                k += m
                continue
            if instant is not None:
                # One instant (a collector's usual entry): each input's one sample, or its value from before.
                readings: list[Reading | None] = []
                for j in range(k, k + m):
                    if runs[j]:
                        readings.append(Reading(names[inputs[j - k]], h_value[j], h_ts[j], _QUALITIES[h_quality[j]]))
                    else:
                        ts = b_ts[j]
                        readings.append(None if ts == NEVER else
                                        Reading(names[inputs[j - k]], b_value[j], ts, _QUALITIES[b_quality[j]]))
                k += m
                when = min(max(instant, floor), now_us)
                if ctx is None or ctx.now_us != when:
                    ctx = EvalContext(now_us=when, started_us=self.started_us)
                self._step(i, rt, readings, ctx, out)
                continue
            readings = []
            timeline: list[tuple[int, int, int, float, int]] = []  # (time, position, input, value, quality)
            for j, p in enumerate(inputs):
                ts = b_ts[k]
                readings.append(None if ts == NEVER else Reading(names[p], b_value[k], ts, _QUALITIES[b_quality[k]]))
                run = runs[k]
                if run == 1:
                    timeline.append((h_ts[k], starts[k], j, h_value[k], h_quality[k]))
                elif run > 1:
                    a, b = starts[k], starts[k] + run
                    timeline.extend(zip(entry.ts[a:b].tolist(), range(a, b), itertools.repeat(j),
                                        entry.value[a:b].tolist(), entry.quality[a:b].tolist(), strict=False))
                k += 1
            timeline.sort()
            n, pos = len(timeline), 0
            while pos < n:
                t = timeline[pos][0]
                while pos < n and timeline[pos][0] == t:
                    _, _, j, value, quality = timeline[pos]
                    readings[j] = Reading(names[inputs[j]], value, t, _QUALITIES[quality])
                    pos += 1
                if t < done:  # evaluated before a restart
                    continue
                when = min(max(t, floor), now_us)
                if ctx is None or ctx.now_us != when:
                    ctx = EvalContext(now_us=when, started_us=self.started_us)
                self._step(i, rt, readings, ctx, out)
        return out

    def _evaluate(self, rule_indices: Sequence[int], now_us: int) -> Outcome:
        """Evaluate rules on the table as it is, at `now_us`."""
        out = Outcome()
        if not rule_indices:
            return out
        ctx = EvalContext(now_us=now_us, started_us=self.started_us)
        # The table as Python lists once per call: building readings from numpy scalars costs more per rule.
        value, ts_us, quality = self.value.tolist(), self.ts_us.tolist(), self.quality.tolist()
        names = self.point_names
        for i in rule_indices:
            rt = self._order[i]
            readings = [
                None if ts_us[p] == NEVER else Reading(names[p], value[p], ts_us[p], _QUALITIES[quality[p]])
                for p in rt.inputs
            ]
            self._step(i, rt, readings, ctx, out)
        return out

    def _step(self, i: int, rt: AlarmRuntime, readings: list[Reading | None], ctx: EvalContext, out: Outcome) -> None:
        """One evaluation of rule `i` on `readings` at `ctx.now_us`: its verdict through the delays into its state."""
        now_us = ctx.now_us
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
        return {a: {**self.alarms[a].dump(), "seen_us": int(self._seen_us[self._index[a]])} for a in ids}

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
                self._seen_us[self._index[alarm_id]] = int(data.get("seen_us", NEVER))
            except (KeyError, ValueError, TypeError, OverflowError) as exc:
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
