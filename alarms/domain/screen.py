"""The quiet screen: which rules would surely evaluate to a valid NONE now, decided for all of them with numpy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.domain.expression import Expression
from alarms.domain.rules.base import LevelCheck, Rule
from alarms.domain.severity import ThresholdHandler
from skyops.records import Quality
from skyops.timeutil import US_PER_S

NEVER = np.iinfo(np.int64).min
NONE_YET = np.iinfo(np.int64).max  # `Span.first_ts` of a point the entry has no sample of
# An expression is computed by numpy here and by Python in the rule: a value this close to a level (relative)
# is left to the rule, so a last-bit difference (hypot, summation order) can never hide a crossing.
EXPRESSION_MARGIN = 1e-9

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Table:
    """The engine's newest input values, by point id."""

    value: Floats
    ts_us: Ints
    quality: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Span:
    """What one entry brought, by point id, for a screen that must hold at every instant of the entry.

    `lo`/`hi`: the smallest and largest value among the entry's samples of a point (the table's value for a
    point without any); `bad`: a sample of the point was BAD or not a number (None: only the table's value
    counts); `before_value`/`before_ts`: the point's value and time before the entry; `first_ts`: the time of
    its first sample in the entry (NONE_YET without any).
    """

    lo: Floats
    hi: Floats
    bad: Bools | None
    before_value: Floats
    before_ts: Ints
    first_ts: Ints


class _Levels:
    """Levels of many checks as a (rows, 3) array with a direction per row; NaN where a level is unused."""

    def __init__(self, handlers: Sequence[ThresholdHandler]) -> None:
        self.levels = np.full((len(handlers), 3), np.nan)
        self.sign = np.ones(len(handlers))
        for k, h in enumerate(handlers):
            for sev, level in h.levels:
                self.levels[k, int(sev) - 1] = level
            self.sign[k] = 1.0 if h.big_is_bad else -1.0

    def hit(self, rows: Ints | slice, value: Floats, margin: float = 0.0) -> Bools:
        """Rows whose value reaches a level (NaN never reaches one); `margin` widens every level."""
        sign = self.sign[rows]
        bar = sign[:, None] * self.levels[rows]
        if margin:
            bar = bar - margin * np.maximum(1.0, np.abs(bar))
        with np.errstate(invalid="ignore"):
            hit: Bools = ((sign * value)[:, None] >= bar).any(axis=1)
        return hit


class _ExpressionGroup:
    """Rules sharing one expression text and input names: evaluated together, one column per name."""

    def __init__(self, expression: Expression, names: tuple[str, ...]) -> None:
        self.expression = expression
        self.names = names
        self.rules: list[int] = []
        self.points: list[list[int]] = []
        self.handlers: list[ThresholdHandler] = []
        self.rule_arr: Ints = np.zeros(0, dtype=np.int64)
        self.point_arr: Ints = np.zeros((0, len(names)), dtype=np.int64)
        self.levels = _Levels(())

    def freeze(self) -> None:
        """Turn the rows added so far into the arrays `loud` reads."""
        self.rule_arr = np.asarray(self.rules, dtype=np.int64)
        self.point_arr = np.asarray(self.points, dtype=np.int64).reshape(len(self.rules), len(self.names))
        self.levels = _Levels(self.handlers)

    def loud(self, table: Table, span: Span | None) -> Ints:
        """The rules of the group whose value reaches (or nears) a level, or is uncertain.

        Without a span, the value of the table's inputs. With an entry's span, every combination of inputs the
        rule meets at the instants of the entry counts: each input ranges over its samples in the entry, and
        over its value from before the entry when another input changed first. Interval arithmetic bounds the
        value over all of them at once.
        """
        pts = self.point_arr
        if span is None:
            lo = hi = table.value[pts]
        else:
            lo, hi = span.lo[pts], span.hi[pts]
            first = span.first_ts[pts]
            # The value from before the entry is met at the instants before the point's first sample.
            old = first > first.min(axis=1, keepdims=True)
            if old.any():
                before = span.before_value[pts]
                lo = np.where(old, np.fmin(lo, before), lo)
                hi = np.where(old, np.fmax(hi, before), hi)
        cols = {n: (lo[:, j], hi[:, j]) for j, n in enumerate(self.names)}
        low, high, uncertain = self.expression.over_intervals(cols, len(self.rules))
        worst = np.where(self.levels.sign > 0, high, low)
        hit = uncertain | self.levels.hit(slice(None), worst, EXPRESSION_MARGIN)
        loud: Ints = self.rule_arr[hit]
        return loud


class QuietScreen:
    """For rules that describe a `Screen`: inputs valid and every number short of every level means the
    rule would give a valid NONE. With the state settled (NONE, no timer, no consequence) evaluating such a
    rule would change nothing, so the engine leaves it out. Rules without a screen are never quiet.
    """

    def __init__(self, rules: Sequence[Rule[Any]], point_ids: Mapping[str, int], *, started_us: int) -> None:
        n = len(rules)
        self.started_us = started_us
        self.screened = np.zeros(n, dtype=bool)
        self.max_age_us = np.asarray([round(r.config.max_age_s * US_PER_S) for r in rules], dtype=np.int64)
        valid_rule: list[int] = []
        valid_point: list[int] = []
        input_rule: list[int] = []
        input_point: list[int] = []
        input_handlers: list[ThresholdHandler] = []
        silence_rule: list[int] = []
        silence_handlers: list[ThresholdHandler] = []
        silence_pairs: list[tuple[int, int]] = []
        groups: dict[tuple[str, tuple[str, ...]], _ExpressionGroup] = {}
        for i, rule in enumerate(rules):
            screen = rule.screen()
            if screen is None:
                continue
            ids = [point_ids[p] for p in rule.inputs]
            self.screened[i] = True
            for k in screen.valid:
                valid_rule.append(i)
                valid_point.append(ids[k])
            for check in screen.checks:
                self._add(i, ids, check, input_rule, input_point, input_handlers, silence_rule, silence_handlers,
                          silence_pairs, groups)
        self.valid_rule = np.asarray(valid_rule, dtype=np.int64)
        self.valid_point = np.asarray(valid_point, dtype=np.int64)
        self.input_rule = np.asarray(input_rule, dtype=np.int64)
        self.input_point = np.asarray(input_point, dtype=np.int64)
        self.input_levels = _Levels(input_handlers)
        self.silence_rule = np.asarray(silence_rule, dtype=np.int64)
        self.silence_levels = _Levels(silence_handlers)
        # Each silence check's inputs as a run in the pair arrays, for one maximum.reduceat.
        self.silence_pair_check = np.asarray([c for c, _ in silence_pairs], dtype=np.int64)
        self.silence_pair_point = np.asarray([p for _, p in silence_pairs], dtype=np.int64)
        self.silence_starts = np.searchsorted(self.silence_pair_check, np.arange(len(silence_rule)))
        self.groups = list(groups.values())
        for g in self.groups:
            g.freeze()

    @staticmethod
    def _add(
        i: int, ids: list[int], check: LevelCheck, input_rule: list[int], input_point: list[int],
        input_handlers: list[ThresholdHandler], silence_rule: list[int], silence_handlers: list[ThresholdHandler],
        silence_pairs: list[tuple[int, int]], groups: dict[tuple[str, tuple[str, ...]], _ExpressionGroup],
    ) -> None:
        if check.input is not None:
            input_rule.append(i)
            input_point.append(ids[check.input])
            input_handlers.append(check.handler)
        elif check.silence:
            if not ids:
                raise ValueError("a silence check needs at least one input")
            silence_pairs.extend((len(silence_rule), p) for p in ids)
            silence_rule.append(i)
            silence_handlers.append(check.handler)
        elif check.expression is not None:
            key = (check.expression.text, check.names)
            group = groups.setdefault(key, _ExpressionGroup(check.expression, check.names))
            group.rules.append(i)
            group.points.append(ids)
            group.handlers.append(check.handler)
        else:
            raise ValueError("a level check needs an input, silence or an expression")

    def quiet(self, rules: Ints, table: Table, now_us: int, span: Span | None = None) -> Bools:
        """Which of `rules` are surely quiet at `now_us` (one flag per entry of `rules`).

        With the `span` of an entry (the table already holds its newest values) the answer holds at every
        instant of the entry up to `now_us`: levels are checked against each point's extreme values, and ages
        and silences against the times before the entry (a rule is settled, so those values were quiet; time
        only makes them older). Without a span, only the table at `now_us` counts (a tick).
        """
        want = np.zeros(len(self.screened), dtype=bool)
        want[rules] = True
        loud = ~self.screened
        before_ts = table.ts_us if span is None else span.before_ts
        # Any input invalid (never seen, BAD, not a number, too old) makes the verdict INVALID.
        sel = want[self.valid_rule]
        r, pt = self.valid_rule[sel], self.valid_point[sel]
        ts = before_ts[pt]
        ok = (ts != NEVER) & (table.quality[pt] != Quality.BAD) & ~np.isnan(table.value[pt])
        if span is not None and span.bad is not None:
            ok &= ~span.bad[pt]
        ok &= now_us - ts <= self.max_age_us[r]
        loud[r[~ok]] = True
        sel_rows = np.flatnonzero(want[self.input_rule])
        if len(sel_rows):
            pts = self.input_point[sel_rows]
            if span is None:
                value = table.value[pts]
            elif span.lo is span.hi:
                value = span.hi[pts]
            else:
                value = np.where(self.input_levels.sign[sel_rows] > 0, span.hi[pts], span.lo[pts])
            loud[self.input_rule[sel_rows[self.input_levels.hit(sel_rows, value)]]] = True
        if len(self.silence_rule) and want[self.silence_rule].any():
            # The rule's own arithmetic: seconds since the newest input, or since start when none came.
            newest = np.maximum.reduceat(before_ts[self.silence_pair_point], self.silence_starts)
            newest = np.where(newest == NEVER, self.started_us, newest)
            silence = np.maximum(0.0, (now_us - newest) / US_PER_S)
            loud[self.silence_rule[self.silence_levels.hit(slice(None), silence)]] = True
        for g in self.groups:
            if want[g.rule_arr].any():
                loud[g.loud(table, span)] = True
        quiet: Bools = ~loud[rules]
        return quiet
