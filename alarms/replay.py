"""Deterministic replay of alarm rules (promtool style): input series, operator actions and expected states."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from alarms.config import load_alarms
from alarms.domain.engine import AlarmEngine
from alarms.domain.rules import RuleConfig, RuleSpec, build_rule
from alarms.domain.rules.base import PointName, SeverityName, Strict
from alarms.domain.state import AlarmActionError, AlarmStatus
from config_db.loader import load_model
from skyops.records import AlarmEvent, AlarmSeverity, Quality, Sample, SampleBatch
from skyops.timeutil import FakeClock

_TOKEN = re.compile(r"^(?P<a>-?\d+(?:\.\d+)?)(?:(?P<op>[+-])(?P<b>\d+(?:\.\d+)?)x(?P<n>\d+))?$")
Slot = float | Literal["_", "bad"]


def expand_series(text: str) -> list[Slot]:
    """promtool's notation: `1 2 _ bad 5+1x3` → 1, 2, (no sample), (BAD sample), 5, 6, 7, 8."""
    out: list[Slot] = []
    for token in text.split():
        if token in ("_", "bad"):
            out.append(token)  # type: ignore[arg-type]  # checked literal
            continue
        m = _TOKEN.match(token)
        if m is None:
            raise ValueError(f"series token {token!r}: use a number, '_', 'bad' or 'a+bxN'")
        a = float(m["a"])
        out.append(a)
        if m["op"]:
            step = float(m["b"]) * (1 if m["op"] == "+" else -1)
            out.extend(a + step * (i + 1) for i in range(int(m["n"])))
    return out


class Series(Strict):
    point: PointName
    values: str
    interval_s: float = Field(default=10.0, gt=0)
    start_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _parse(self) -> Series:
        expand_series(self.values)
        return self


class Action(Strict):
    at_s: float = Field(ge=0)
    do: Literal["ack", "shelve", "unshelve", "comment", "restart"]
    alarm: str = ""
    user: str = "operator"
    comment: str = "replay"
    seen: SeverityName | None = None
    for_s: float | None = Field(default=None, gt=0)
    refused: bool = False  # the action is expected to be refused


class Expect(Strict):
    at_s: float = Field(ge=0)
    alarm: str
    status: AlarmStatus | None = None
    severity: SeverityName | Literal["NONE"] | None = None
    latched: SeverityName | Literal["NONE"] | None = None
    shelved: bool | None = None
    consequence_active: bool | None = None
    sector: str | None = None  # forbidden sector of an active pointing restriction, "start-end" or "none"
    actions: list[str] | None = None  # actions of the events this alarm produced at this instant


class ReplayCase(Strict):
    name: str
    start: AwareDatetime
    default_rules: bool = Field(default=False, description="also load the shipped La Silla rules")
    rules: list[RuleSpec] = []
    series: list[Series] = []
    actions: list[Action] = []
    expect: list[Expect] = Field(min_length=1)
    eval_interval_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _has_rules(self) -> ReplayCase:
        if not self.rules and not self.default_rules:
            raise ValueError("a case needs rules: list them, or set default_rules: true")
        return self

    def rule_configs(self) -> list[RuleConfig]:
        shipped: list[RuleConfig] = list(load_alarms().rules) if self.default_rules else []
        return [*shipped, *self.rules]


@dataclass
class ReplayResult:
    name: str
    failures: list[str] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _samples_at(case: ReplayCase, start: datetime) -> dict[float, list[Sample]]:
    by_time: dict[float, list[Sample]] = {}
    for s in case.series:
        for i, slot in enumerate(expand_series(s.values)):
            if slot == "_":
                continue
            t = round(s.start_s + i * s.interval_s, 6)
            ts = start + timedelta(seconds=t)
            sample = Sample(s.point, ts, None, Quality.BAD) if slot == "bad" else Sample(s.point, ts, float(slot))
            by_time.setdefault(t, []).append(sample)
    return by_time


def run_case(case: ReplayCase) -> ReplayResult:
    """Replay one case on a FakeClock; every mismatch is reported, none stops the run."""
    result = ReplayResult(case.name)
    start = case.start
    clock = FakeClock(start)
    rules = [build_rule(r) for r in case.rule_configs()]
    engine = AlarmEngine(rules, started=start)
    samples = _samples_at(case, start)
    end = max([*samples, *(a.at_s for a in case.actions), *(e.at_s for e in case.expect)])
    instants = {round(i * case.eval_interval_s, 6) for i in range(int(end // case.eval_interval_s) + 1)}
    instants |= set(samples) | {a.at_s for a in case.actions} | {e.at_s for e in case.expect}
    for t in sorted(instants):
        clock.set(start + timedelta(seconds=t))
        now = clock.now()
        events: list[AlarmEvent] = []
        if t in samples:
            events += engine.process(SampleBatch.from_samples(samples[t]), now).events
        events += engine.tick(now).events
        for action in (a for a in case.actions if a.at_s == t):
            if action.do == "restart":
                # Through JSON, as the supervisor persists it: what is not serialisable fails here.
                saved = json.loads(json.dumps({"alarms": engine.dump(), "values": engine.dump_values()}))
                engine = AlarmEngine([build_rule(r) for r in case.rule_configs()], started=now)
                engine.restore(saved["alarms"])
                engine.restore_values(saved["values"])
                continue
            events += _act(engine, action, now, result)
        result.events += events
        for exp in (e for e in case.expect if e.at_s == t):
            _check(engine, exp, events, result)
    return result


def _act(engine: AlarmEngine, action: Action, now: datetime, result: ReplayResult) -> list[AlarmEvent]:
    seen = None if action.seen is None else AlarmSeverity[action.seen]
    try:
        if action.do == "ack":
            events = engine.ack(action.alarm, now, user=action.user, comment=action.comment, seen=seen)
        elif action.do == "shelve":
            until = now + timedelta(seconds=action.for_s or 3600)
            events = engine.shelve(action.alarm, now, user=action.user, comment=action.comment, until=until)
        elif action.do == "unshelve":
            events = engine.unshelve(action.alarm, now, user=action.user, comment=action.comment)
        else:
            events = engine.comment(action.alarm, now, user=action.user, comment=action.comment)
    except AlarmActionError as exc:
        if not action.refused:
            result.failures.append(f"t={action.at_s:g}s {action.do} {action.alarm}: refused: {exc}")
        refused_event = getattr(exc, "event", None)
        return [refused_event] if isinstance(refused_event, AlarmEvent) else []
    if action.refused:
        result.failures.append(f"t={action.at_s:g}s {action.do} {action.alarm}: accepted, expected a refusal")
    return events


def _check(engine: AlarmEngine, exp: Expect, events: list[AlarmEvent], result: ReplayResult) -> None:
    rt = engine.alarms.get(exp.alarm)
    if rt is None:
        result.failures.append(f"t={exp.at_s:g}s: no alarm {exp.alarm}")
        return
    st = rt.state
    got: dict[str, Any] = {
        "status": st.status,
        "severity": st.severity.name,
        "latched": st.latched.name,
        "shelved": st.shelved,
        "consequence_active": rt.consequence.active,
        "sector": "none" if rt.consequence.sector is None
        else f"{rt.consequence.sector.start_deg:g}-{rt.consequence.sector.end_deg:g}",
        "actions": [e.action for e in events if e.alarm_id == exp.alarm],
    }
    for key, value in got.items():
        want = getattr(exp, key)
        if want is not None and want != value:
            result.failures.append(
                f"t={exp.at_s:g}s {exp.alarm}: {key} is {value!s}, expected {want!s} (reason: {st.reason})"
            )


def load_case(path: Path | str) -> ReplayCase:
    return load_model(path, ReplayCase)
