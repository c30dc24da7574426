"""The rule engine over sample batches: value table, rule index, late and odd samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from alarms.domain.engine import AlarmEngine, UnknownAlarmError
from alarms.domain.rules import ThresholdConfig, build_rule
from alarms.domain.rules.base import PerLevel, ThresholdLevels
from skyops.records import AlarmSeverity, Quality, Sample, SampleBatch
from skyops.timeutil import to_us

T0 = datetime(2026, 3, 1, 3, tzinfo=UTC)


def threshold(name: str, point: str, warning: float) -> ThresholdConfig:
    return ThresholdConfig(
        name=name, instance="ASM:1", guidance="g", point=point,
        threshold=ThresholdLevels(levels=PerLevel(warning=warning)),
    )


def engine() -> AlarmEngine:
    rules = [threshold("Humidity", "lasilla.asm.humidity", 80), threshold("Seeing", "lasilla.asm.seeing", 1.5)]
    return AlarmEngine([build_rule(r) for r in rules], started=T0)


def test_only_rules_whose_inputs_arrived_are_evaluated() -> None:
    e = engine()
    out = e.process(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0, 85.0)]), T0)
    assert [ev.alarm_id for ev in out.events] == ["Humidity.ASM:1"]
    assert e.state("Seeing.ASM:1").valid  # not evaluated yet: no event


def test_unknown_points_and_empty_batches_are_ignored() -> None:
    e = engine()
    assert e.process(SampleBatch.empty(), T0).events == []
    out = e.process(SampleBatch.from_samples([Sample("ntt.dome.slit", T0, 1.0)]), T0)
    assert out.events == []


def test_newest_sample_of_a_batch_wins_and_late_samples_never_overwrite() -> None:
    e = engine()
    batch = SampleBatch.from_samples([
        Sample("lasilla.asm.humidity", T0 + timedelta(seconds=2), 50.0),
        Sample("lasilla.asm.humidity", T0, 90.0),
    ])
    e.process(batch, T0 + timedelta(seconds=2))
    assert e.state("Humidity.ASM:1").severity == AlarmSeverity.NONE
    late = SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0 + timedelta(seconds=1), 95.0)])
    e.process(late, T0 + timedelta(seconds=3))
    assert e.state("Humidity.ASM:1").severity == AlarmSeverity.NONE


def test_string_and_bad_values_make_the_alarm_invalid() -> None:
    e = engine()
    out = e.process(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0, "n/a")]), T0)
    assert out.events[0].action == "invalid"
    assert "no numeric value" in out.events[0].reason
    e.process(SampleBatch.from_samples([Sample("lasilla.asm.seeing", T0, 1.0, Quality.BAD)]), T0)
    assert "BAD quality" in e.state("Seeing.ASM:1").reason


def test_from_floats_batch_with_nan() -> None:
    e = engine()
    batch = SampleBatch.from_floats(
        ["lasilla.asm.humidity", "lasilla.asm.seeing"], [0, 1], [to_us(T0)] * 2, [np.nan, 2.0]
    )
    e.process(batch, T0)
    assert not e.state("Humidity.ASM:1").valid
    assert e.state("Seeing.ASM:1").severity == AlarmSeverity.WARNING


def test_duplicate_alarm_names_refused() -> None:
    rule = build_rule(threshold("Humidity", "lasilla.asm.humidity", 80))
    with pytest.raises(ValueError, match=r"repeated: Humidity\.ASM:1"):
        AlarmEngine([rule, rule], started=T0)


def test_unknown_alarm_in_an_action() -> None:
    with pytest.raises(UnknownAlarmError, match="no alarm named"):
        engine().ack("Nope.X:1", T0, user="a", comment="b")


def test_time_never_runs_backwards() -> None:
    e = engine()
    e.process(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0, 85.0)]), T0 + timedelta(seconds=10))
    (ev,) = e.comment("Humidity.ASM:1", T0, user="a", comment="b")
    assert ev.ts == T0 + timedelta(seconds=10)


def test_restore_reports_alarms_no_longer_configured() -> None:
    e = engine()
    e.process(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0, 85.0)]), T0)
    saved = e.dump()
    saved["Gone.X:1"] = saved["Humidity.ASM:1"]
    saved["Seeing.ASM:1"] = {"raw": "?"}
    fresh = engine()
    report = fresh.restore(saved)
    assert report.orphans == ["Gone.X:1"]
    assert list(report.unreadable) == ["Seeing.ASM:1"]
    assert report.restored == 1
    assert fresh.state("Humidity.ASM:1").latched == AlarmSeverity.WARNING
    assert fresh.state("Seeing.ASM:1").status.value == "OK"


def test_settled_rules_are_screened_out_until_a_value_or_time_could_change_them() -> None:
    """Every kind describes a screen: quiet rules cost no Python evaluation, and the screen lets through
    exactly the rules a crossing, a math error, a silence or an old input concerns."""
    from alarms.domain.rules import ExpressionConfig, StalenessConfig, VesSyncConfig, WindRestrictionConfig
    from alarms.domain.rules.base import Rule
    from alarms.domain.rules.base import Verdict as V

    points = [f"lasilla.asm.p{k}" for k in range(6)]
    configs = [threshold(f"T{k}", p, 10) for k, p in enumerate(points)] + [
        WindRestrictionConfig(name="Wind", instance="W:1", guidance="g", speed_point=points[0],
                              direction_point=points[1], speed=ThresholdLevels(levels=PerLevel(warning=10)),
                              half_width_deg=30),
        ExpressionConfig(name="Ratio", instance="E:1", guidance="g", inputs={"a": points[2], "b": points[3]},
                         expression="a / b", threshold=ThresholdLevels(levels=PerLevel(warning=10))),
        StalenessConfig(name="Silent", instance="S:1", guidance="g", points=(points[4],),
                        silence_s=ThresholdLevels(levels=PerLevel(warning=60))),
        VesSyncConfig(name="Ves", instance="V:1", guidance="g", failures_point=points[4], success_age_point=points[5],
                      failures=ThresholdLevels(levels=PerLevel(warning=3)),
                      success_age_s=ThresholdLevels(levels=PerLevel(warning=600))),
    ]
    rules = [build_rule(c) for c in configs]
    calls: list[str] = []

    def counted(rule: Rule[ThresholdConfig]) -> None:
        evaluate = rule.evaluate

        def wrapper(*args: object, **kwargs: object) -> V:
            calls.append(rule.alarm_id)
            return evaluate(*args, **kwargs)  # type: ignore[arg-type]

        rule.evaluate = wrapper  # type: ignore[method-assign]

    for rule in rules:
        counted(rule)
    e = AlarmEngine(rules, started=T0)

    def batch(t: datetime, values: list[float]) -> SampleBatch:
        return SampleBatch.from_samples([Sample(p, t, v) for p, v in zip(points, values, strict=True)])

    calm = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    e.process(batch(T0, calm), T0)
    assert len(calls) == len(rules)  # the first time, every rule is evaluated
    calls.clear()
    e.process(batch(T0 + timedelta(seconds=10), calm), T0 + timedelta(seconds=10))
    e.tick(T0 + timedelta(seconds=20))
    assert calls == []
    # A crossing, and a division by zero the screen cannot judge: only those rules are evaluated.
    e.process(batch(T0 + timedelta(seconds=30), [11.0, 1.0, 1.0, 0.0, 1.0, 1.0]), T0 + timedelta(seconds=30))
    assert sorted(calls) == ["Ratio.E:1", "T0.ASM:1", "Wind.W:1"]
    assert e.state("Ratio.E:1").status.value == "INVALID"
    calls.clear()
    # Silence past its level, and inputs past their max age (120 s), reach the rules by time alone.
    e.tick(T0 + timedelta(seconds=91))
    assert "Silent.S:1" in calls
    calls.clear()
    e.tick(T0 + timedelta(seconds=151))
    assert {"T1.ASM:1", "T2.ASM:1", "T4.ASM:1", "T5.ASM:1", "Ves.V:1"} <= set(calls)
    assert e.state("T1.ASM:1").status.value == "INVALID"
    # INVALID stays INVALID while time passes: ticks leave such rules to their next sample.
    calls.clear()
    e.tick(T0 + timedelta(seconds=152))
    assert "T1.ASM:1" not in calls and "Ratio.E:1" not in calls
    e.process(SampleBatch.from_samples([Sample(points[1], T0 + timedelta(seconds=153), 1.0)]),
              T0 + timedelta(seconds=153))
    assert "T1.ASM:1" in calls
    assert e.state("T1.ASM:1").status.value == "OK"


def test_a_sample_dated_in_the_future_is_refused_and_does_not_hide_later_ones() -> None:
    e = engine()
    wrong_clock = Sample("lasilla.asm.humidity", T0 + timedelta(hours=2), 95.0)
    out = e.process(SampleBatch.from_samples([wrong_clock]), T0)
    assert (out.future, out.future_points, out.events) == (1, ("lasilla.asm.humidity",), [])
    # Within the tolerance (a minute) a sample counts; the refused one hides nothing.
    later = Sample("lasilla.asm.humidity", T0 + timedelta(seconds=70), 85.0)
    out = e.process(SampleBatch.from_samples([later]), T0 + timedelta(seconds=20))
    assert out.future == 0
    assert [(ev.alarm_id, ev.severity) for ev in out.events] == [("Humidity.ASM:1", AlarmSeverity.WARNING)]


def test_a_rule_that_raises_is_invalid_with_the_reason_and_the_others_go_on() -> None:
    from alarms.domain.rules.base import Reading, Verdict

    rules = [build_rule(threshold("Humidity", "lasilla.asm.humidity", 80)),
             build_rule(threshold("Seeing", "lasilla.asm.humidity", 1.5))]

    def broken(readings: list[Reading | None], *args: object) -> Verdict:
        raise RuntimeError("bug in a rule")

    rules[0].evaluate = broken  # type: ignore[method-assign,assignment]
    e = AlarmEngine(rules, started=T0)
    out = e.process(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0, 85.0)]), T0)
    by_alarm = {ev.alarm_id: ev for ev in out.events}
    assert by_alarm["Humidity.ASM:1"].state == "INVALID"
    assert "rule evaluation failed: RuntimeError: bug in a rule" in by_alarm["Humidity.ASM:1"].reason
    assert by_alarm["Seeing.ASM:1"].severity == AlarmSeverity.WARNING


def test_a_tick_after_fresh_input_reevaluates_an_invalid_rule() -> None:
    """Input taken in without an evaluation (`ingest`, restored values) reaches INVALID rules on the next tick."""
    e = engine()
    e.process(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0, 50.0)]), T0)
    e.tick(T0 + timedelta(seconds=200))
    assert e.state("Humidity.ASM:1").status.value == "INVALID"
    e.ingest(SampleBatch.from_samples([Sample("lasilla.asm.humidity", T0 + timedelta(seconds=201), 85.0)]))
    out = e.tick(T0 + timedelta(seconds=202))
    assert [(ev.action, ev.severity) for ev in out.events] == [("valid", AlarmSeverity.NONE),
                                                               ("raise", AlarmSeverity.WARNING)]
