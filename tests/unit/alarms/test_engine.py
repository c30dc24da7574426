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
