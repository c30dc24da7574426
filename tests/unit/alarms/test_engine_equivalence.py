"""The numpy shortcuts (settled rules left out) change nothing: same events as evaluating every rule in full."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from alarms.domain.engine import AlarmEngine
from alarms.domain.rules import (
    ExpressionConfig,
    RuleConfig,
    StalenessConfig,
    ThresholdConfig,
    VesSyncConfig,
    WindRestrictionConfig,
    build_rule,
)
from alarms.domain.rules.base import Consequence, Delays, PerLevel, ThresholdLevels
from skyops.records import Quality, Sample, SampleBatch

T0 = datetime(2026, 3, 1, 3, tzinfo=UTC)
POINTS = ("lasilla.asm.a", "lasilla.asm.b", "lasilla.asm.c")


def rules() -> list[RuleConfig]:
    out: list[RuleConfig] = []
    for k, point in enumerate(POINTS):
        out.append(ThresholdConfig(
            name="High", instance=f"P{k}:1", guidance="g", point=point, max_age_s=25,
            threshold=ThresholdLevels(levels=PerLevel(warning=10, serious=15, critical=20), hysteresis=2),
            activation_delay_s=Delays(warning=10 * k, serious=5), clear_delay_s=10 * k,
        ))
        out.append(ThresholdConfig(
            name="Low", instance=f"P{k}:1", guidance="g", point=point,
            threshold=ThresholdLevels(levels=PerLevel(warning=3, critical=1), hysteresis=1, big_is_bad=False),
        ))
    a, b, c = POINTS
    out += [
        WindRestrictionConfig(name="Wind", instance="W:1", guidance="g", speed_point=a, direction_point=b,
                              azimuth_point=c, speed=ThresholdLevels(levels=PerLevel(warning=12), hysteresis=1),
                              half_width_deg=40, max_age_s=30, activation_delay_s=Delays(warning=5),
                              consequence=Consequence(kind="pointing_restriction", min_severity="WARNING")),
        ExpressionConfig(name="Expr", instance="E:1", guidance="g", inputs={"x": a, "y": c}, expression="x - y",
                         threshold=ThresholdLevels(levels=PerLevel(warning=5, critical=15)), max_age_s=40,
                         clear_delay_s=7),
        # Same text and names as Expr: screened together as one group.
        ExpressionConfig(name="Expr", instance="E:2", guidance="g", inputs={"x": b, "y": a}, expression="x - y",
                         threshold=ThresholdLevels(levels=PerLevel(warning=-4), big_is_bad=False), max_age_s=40),
        # Division by zero, square roots of negatives and hypot's rounding: the screen must defer to the rule.
        ExpressionConfig(name="Odd", instance="E:3", guidance="g", inputs={"x": a, "y": b},
                         expression="sqrt(x) / (y - 5) + hypot(x, y, 1) - min(x, y, 2)",
                         threshold=ThresholdLevels(levels=PerLevel(warning=8, critical=20), hysteresis=1)),
        StalenessConfig(name="Quiet", instance="S:1", guidance="g", points=(b,),
                        silence_s=ThresholdLevels(levels=PerLevel(warning=15, serious=30))),
        StalenessConfig(name="Quiet", instance="S:2", guidance="g", points=(a, c),
                        silence_s=ThresholdLevels(levels=PerLevel(warning=10), hysteresis=3)),
        VesSyncConfig(name="Ves", instance="V:1", guidance="g", failures_point=a, success_age_point=b,
                      failures=ThresholdLevels(levels=PerLevel(warning=12)),
                      success_age_s=ThresholdLevels(levels=PerLevel(serious=25)), max_age_s=20),
    ]
    return out


step = st.tuples(
    st.integers(0, len(POINTS) - 1),
    # None: a BAD sample; the sampled integers and halves land exactly on levels.
    st.one_of(st.floats(-5, 30, allow_nan=False), st.integers(-5, 30).map(float), st.none(),
              st.sampled_from([4.5, 5.0, 9.5, 12.0, 14.5])),
    st.integers(1, 20),  # seconds to the next step
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=60))
# Odd settles at a valid NONE, then sqrt of a negative input must make it INVALID, not leave it quiet.
@example([(0, 1.0, 1), (1, 1.0, 1), (2, 1.0, 1), (0, -1.0, 1)])
# y = 5 divides by zero: the screen sees inf, the rule NaN.
@example([(0, 1.0, 1), (1, 1.0, 1), (2, 1.0, 1), (1, 5.0, 1)])
def test_vectorized_equals_full_evaluation(steps: list[tuple[int, float | None, int]]) -> None:
    fast = AlarmEngine([build_rule(r) for r in rules()], started=T0)
    full = AlarmEngine([build_rule(r) for r in rules()], started=T0, vectorized=False)
    now = T0
    for point, value, gap in steps:
        sample = Sample(POINTS[point], now, value, Quality.GOOD if value is not None else Quality.BAD)
        batch = SampleBatch.from_samples([sample])
        for engine_events in ((fast.process(batch, now), full.process(batch, now)),
                              (fast.tick(now), full.tick(now))):
            a, b = engine_events
            assert [(e.alarm_id, e.action, e.severity) for e in a.events] == [
                (e.alarm_id, e.action, e.severity) for e in b.events]
            assert a.triggers == b.triggers
        now += timedelta(seconds=gap)
    fast.tick(now)
    full.tick(now)
    states = {a: rt.state.dump() for a, rt in fast.alarms.items()}
    assert states == {a: rt.state.dump() for a, rt in full.alarms.items()}
