"""The same samples give the same alarm transitions however they were cut into bus entries."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from alarms.domain.engine import AlarmEngine, Outcome
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
from skyops.records import AlarmSeverity, Quality, Sample, SampleBatch

T0 = datetime(2026, 3, 1, 3, tzinfo=UTC)
WIND = "lasilla.asm.wind_speed"
POINTS = ("lasilla.asm.a", "lasilla.asm.b", "lasilla.asm.c")

Transition = tuple[datetime, int, str, AlarmSeverity, str]


def gust_rule(*, activation_s: float = 0.0, clear_s: float = 0.0) -> ThresholdConfig:
    return ThresholdConfig(
        name="WindSpeed", instance="ASM:1", guidance="g", point=WIND, unit=" m/s",
        threshold=ThresholdLevels(levels=PerLevel(warning=15, critical=20), hysteresis=1),
        activation_delay_s=Delays(warning=activation_s, critical=activation_s), clear_delay_s=clear_s,
    )


def one_second_at_10_hz(gust: Sequence[float]) -> list[Sample]:
    """A second of 10 Hz wind: calm (10 m/s) with `gust` values from the fourth sample on."""
    values = [10.0] * 10
    values[3:3 + len(gust)] = gust
    return [Sample(WIND, T0 + timedelta(milliseconds=100 * k), v) for k, v in enumerate(values)]


def transitions(outcomes: Sequence[Outcome]) -> dict[str, list[Transition]]:
    """Each alarm's events in order, with their times and sequence numbers."""
    by_alarm: dict[str, list[Transition]] = {}
    for out in outcomes:
        for e in out.events:
            by_alarm.setdefault(e.alarm_id, []).append((e.ts, e.seq, e.action, e.severity, e.state))
    return by_alarm


def triggers(outcomes: Sequence[Outcome]) -> list[tuple[str, datetime, bool]]:
    return sorted((t.alarm_id, t.ts, t.active) for out in outcomes for t in out.triggers)


def in_entries(configs: Sequence[RuleConfig], samples: Sequence[Sample], cuts: Sequence[int],
               vectorized: bool = True) -> tuple[AlarmEngine, list[Outcome]]:
    """The samples in entries ending before each index of `cuts` (and at the end), each entry processed at
    the time of its last sample, as a collector publishing at once would have it."""
    engine = AlarmEngine([build_rule(c) for c in configs], started=T0, vectorized=vectorized)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(samples))), len(samples)]
    outcomes = []
    for a, b in itertools.pairwise(bounds):
        part = samples[a:b]
        outcomes.append(engine.process(SampleBatch.from_samples(part), part[-1].ts))
    return engine, outcomes


def test_a_gust_inside_one_entry_raises_and_clears_the_alarm() -> None:
    samples = one_second_at_10_hz([16.0, 21.0, 16.0])  # 0.3 s above the warning level, 0.1 s critical
    engine, outcomes = in_entries([gust_rule()], samples, cuts=[])
    got = transitions(outcomes)["WindSpeed.ASM:1"]
    assert [(ts - T0, action, sev) for ts, _, action, sev, _ in got] == [
        (timedelta(milliseconds=300), "raise", AlarmSeverity.WARNING),
        (timedelta(milliseconds=400), "raise", AlarmSeverity.CRITICAL),
        (timedelta(milliseconds=500), "change", AlarmSeverity.WARNING),
        (timedelta(milliseconds=600), "clear", AlarmSeverity.NONE),
    ]
    assert engine.state("WindSpeed.ASM:1").latched == AlarmSeverity.CRITICAL  # cleared, awaiting an ack
    _, one_by_one = in_entries([gust_rule()], samples, cuts=range(len(samples)))
    assert transitions(one_by_one) == transitions(outcomes)


def test_delays_see_each_sample_time_inside_one_entry() -> None:
    gust = one_second_at_10_hz([16.0, 16.0, 16.0])
    # A 0.2 s activation delay is met by a 0.3 s gust; a 0.5 s one is not.
    _, out = in_entries([gust_rule(activation_s=0.2)], gust, cuts=[])
    assert [(a, s) for _, _, a, s, _ in transitions(out)["WindSpeed.ASM:1"]] == [
        ("raise", AlarmSeverity.WARNING), ("clear", AlarmSeverity.NONE)]
    _, out = in_entries([gust_rule(activation_s=0.5)], gust, cuts=[])
    assert transitions(out) == {}
    # A clear delay longer than the rest of the second holds the alarm.
    engine, out = in_entries([gust_rule(clear_s=5)], gust, cuts=[])
    assert [a for _, _, a, _, _ in transitions(out)["WindSpeed.ASM:1"]] == ["raise"]
    assert engine.tick(T0 + timedelta(seconds=6)).events[0].action == "clear"


def test_an_entry_processed_late_evaluates_its_samples_at_their_own_times() -> None:
    """A backlog read 30 s late still shows the gust, at the time it blew; then the present is evaluated."""
    engine = AlarmEngine([build_rule(gust_rule(activation_s=0.2))], started=T0)
    out = engine.process(SampleBatch.from_samples(one_second_at_10_hz([16.0, 16.0, 16.0])),
                         T0 + timedelta(seconds=30))
    assert [(e.ts - T0, e.action) for e in out.events] == [
        (timedelta(milliseconds=500), "raise"), (timedelta(milliseconds=600), "clear")]


def test_samples_older_than_the_last_evaluation_count_at_that_time() -> None:
    """Timers never run backwards: a tick at 0.5 s pins the earlier samples to 0.5 s, in their order."""
    engine = AlarmEngine([build_rule(gust_rule())], started=T0)
    engine.process(SampleBatch.from_samples([Sample(WIND, T0, 10.0)]), T0)
    engine.tick(T0 + timedelta(milliseconds=500))
    out = engine.process(SampleBatch.from_samples(one_second_at_10_hz([16.0, 16.0])[1:]), T0 + timedelta(seconds=1))
    assert [(e.ts - T0, e.action) for e in out.events] == [
        (timedelta(milliseconds=500), "raise"), (timedelta(milliseconds=500), "clear")]


def test_an_expression_sees_each_combination_of_its_inputs_in_time() -> None:
    """x - y with y following x 0.1 s later: the gap opens for 0.1 s, whatever the batching."""
    expr = ExpressionConfig(name="Gap", instance="E:1", guidance="g", inputs={"x": POINTS[0], "y": POINTS[1]},
                            expression="x - y", threshold=ThresholdLevels(levels=PerLevel(warning=5)))
    at = [T0 + timedelta(milliseconds=100 * k) for k in range(4)]
    samples = [Sample(POINTS[0], at[0], 1.0), Sample(POINTS[1], at[0], 1.0),
               Sample(POINTS[0], at[1], 10.0), Sample(POINTS[1], at[2], 9.0), Sample(POINTS[0], at[3], 9.5)]
    _, big = in_entries([expr], samples, cuts=[])
    assert [(ts - T0, a) for ts, _, a, _, _ in transitions(big)["Gap.E:1"]] == [
        (timedelta(milliseconds=100), "raise"), (timedelta(milliseconds=200), "clear")]
    for vectorized in (True, False):
        # The two first samples share a time: they are one instant, so they stay in one entry.
        _, singles = in_entries([expr], samples, cuts=[2, 3, 4], vectorized=vectorized)
        assert transitions(singles) == transitions(big)


def test_late_and_repeated_samples_in_one_entry() -> None:
    """A sample older than the table's is dropped; of two at one time, the last listed counts."""
    engine = AlarmEngine([build_rule(gust_rule())], started=T0)
    engine.process(SampleBatch.from_samples([Sample(WIND, T0 + timedelta(seconds=1), 10.0)]), T0 + timedelta(seconds=1))
    t = T0 + timedelta(seconds=2)
    out = engine.process(SampleBatch.from_samples([
        Sample(WIND, T0, 30.0),  # late: never evaluated
        Sample(WIND, t, 30.0), Sample(WIND, t, 16.0),
    ]), t)
    assert [(e.action, e.severity) for e in out.events] == [("raise", AlarmSeverity.WARNING)]


# --- property: any cut of the same samples, the same transitions ------------------------------------------------

def rules() -> list[RuleConfig]:
    a, b, c = POINTS
    out: list[RuleConfig] = []
    for k, point in enumerate(POINTS):
        out.append(ThresholdConfig(
            name="High", instance=f"P{k}:1", guidance="g", point=point, max_age_s=25,
            threshold=ThresholdLevels(levels=PerLevel(warning=10, serious=15, critical=20), hysteresis=2),
            activation_delay_s=Delays(warning=[0, 0.5, 5][k], serious=[0.3, 5, 0][k]), clear_delay_s=[0, 0.4, 7][k],
        ))
        out.append(ThresholdConfig(
            name="Low", instance=f"P{k}:1", guidance="g", point=point,
            threshold=ThresholdLevels(levels=PerLevel(warning=3, critical=1), hysteresis=1, big_is_bad=False),
            activation_delay_s=Delays(warning=0.2 * k), clear_delay_s=0.3 * k,
        ))
    out += [
        WindRestrictionConfig(name="Wind", instance="W:1", guidance="g", speed_point=a, direction_point=b,
                              azimuth_point=c, speed=ThresholdLevels(levels=PerLevel(warning=12), hysteresis=1),
                              half_width_deg=40, max_age_s=30, activation_delay_s=Delays(warning=0.5),
                              consequence=Consequence(kind="pointing_restriction", min_severity="WARNING")),
        ExpressionConfig(name="Expr", instance="E:1", guidance="g", inputs={"x": a, "y": c}, expression="x - y",
                         threshold=ThresholdLevels(levels=PerLevel(warning=5, critical=15), hysteresis=1),
                         max_age_s=40, activation_delay_s=Delays(critical=0.3), clear_delay_s=0.7),
        ExpressionConfig(name="Odd", instance="E:2", guidance="g", inputs={"x": a, "y": b},
                         expression="sqrt(x) / (y - 5) + hypot(x, y, 1) - min(x, y, 2)",
                         threshold=ThresholdLevels(levels=PerLevel(warning=8, critical=20), hysteresis=1)),
        StalenessConfig(name="Quiet", instance="S:1", guidance="g", points=(a, c),
                        silence_s=ThresholdLevels(levels=PerLevel(warning=10), hysteresis=3)),
        VesSyncConfig(name="Ves", instance="V:1", guidance="g", failures_point=a, success_age_point=b,
                      failures=ThresholdLevels(levels=PerLevel(warning=12)),
                      success_age_s=ThresholdLevels(levels=PerLevel(serious=25)), max_age_s=20,
                      activation_delay_s=Delays(warning=1)),
    ]
    return out


step = st.tuples(
    st.integers(0, len(POINTS) - 1),
    # None: a BAD sample; the sampled values land on levels and their hysteresis bands.
    st.one_of(st.floats(-5, 30, allow_nan=False), st.integers(-5, 30).map(float), st.none(),
              st.sampled_from([3.0, 4.0, 8.0, 10.0, 12.0, 13.0, 15.0])),
    st.sampled_from([1, 1, 2, 3, 5, 10, 40, 300]),  # tenths of a second to the next sample
)


def samples_of(steps: Sequence[tuple[int, float | None, int]]) -> list[Sample]:
    out, t = [], T0
    for point, value, gap in steps:
        out.append(Sample(POINTS[point], t, value, Quality.GOOD if value is not None else Quality.BAD))
        t += timedelta(milliseconds=100 * gap)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(step, min_size=1, max_size=50), st.lists(st.integers(1, 49), max_size=8))
# A 0.3 s rise over a threshold inside one entry, with and without activation delays.
@example([(0, 11.0, 1), (0, 16.0, 1), (0, 21.0, 1), (0, 2.0, 1), (1, 2.0, 1), (2, 2.0, 1)], [])
# The expression's inputs change at different instants inside one entry.
@example([(0, 1.0, 1), (2, 1.0, 1), (0, 20.0, 1), (2, 14.0, 1), (2, 20.0, 1)], [])
def test_one_entry_equals_one_sample_entries_and_any_cut(
    steps: list[tuple[int, float | None, int]], cuts: list[int]
) -> None:
    samples = samples_of(steps)
    singles, one_by_one = in_entries(rules(), samples, cuts=range(len(samples)))
    expected = transitions(one_by_one)
    for some_cuts, vectorized in (([], True), ([], False), (cuts, True)):
        engine, outcomes = in_entries(rules(), samples, some_cuts, vectorized=vectorized)
        assert transitions(outcomes) == expected
        assert triggers(outcomes) == triggers(one_by_one)
        later = samples[-1].ts + timedelta(seconds=8)
        assert transitions([engine.tick(later)]) == transitions([singles.tick(later)])
        assert {a: rt.state.dump() for a, rt in engine.alarms.items()} == {
            a: rt.state.dump() for a, rt in singles.alarms.items()}
        singles, one_by_one = in_entries(rules(), samples, cuts=range(len(samples)))


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=50), st.lists(st.integers(1, 49), max_size=8),
       st.lists(st.tuples(st.sampled_from([0, 50, 500, 3000, 30_000]), st.sampled_from([None, 0, 200, 2000])),
                min_size=9, max_size=9))
@example([(0, 11.0, 1), (0, 16.0, 1), (0, 2.0, 1), (0, 16.0, 1), (0, 2.0, 1)], [2, 4], [(500, 200)] * 9)
def test_the_screen_changes_nothing_when_entries_come_late_and_ticks_fall_between(
    steps: list[tuple[int, float | None, int]], cuts: list[int], timing: list[tuple[int, int | None]]
) -> None:
    """Entries processed late (their earlier samples pinned to the last tick) and ticks between them: the
    numpy screen over each entry's extremes leaves out only rules that evaluating would not change."""
    samples = samples_of(steps)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(samples))), len(samples)]
    fast = AlarmEngine([build_rule(c) for c in rules()], started=T0)
    full = AlarmEngine([build_rule(c) for c in rules()], started=T0, vectorized=False)
    for (a, b), (late_ms, tick_ms) in zip(itertools.pairwise(bounds), timing, strict=False):
        batch = SampleBatch.from_samples(samples[a:b])
        now = samples[b - 1].ts + timedelta(milliseconds=late_ms)
        pairs = [(fast.process(batch, now), full.process(batch, now))]
        if tick_ms is not None:
            pairs.append((fast.tick(now + timedelta(milliseconds=tick_ms)),
                          full.tick(now + timedelta(milliseconds=tick_ms))))
        for x, y in pairs:
            assert transitions([x]) == transitions([y])
            assert triggers([x]) == triggers([y])
    assert {a: rt.state.dump() for a, rt in fast.alarms.items()} == {
        a: rt.state.dump() for a, rt in full.alarms.items()}


def test_the_screen_proves_quiet_over_every_sample_of_an_entry() -> None:
    """A settled rule is left out only if none of the entry's samples (not just the newest) concerns it."""
    from alarms.domain.rules.base import Rule, Verdict

    expr = ExpressionConfig(name="Gap", instance="E:1", guidance="g", inputs={"x": POINTS[0], "y": POINTS[1]},
                            expression="x - y", threshold=ThresholdLevels(levels=PerLevel(warning=5)))
    built: list[Rule[RuleConfig]] = [build_rule(gust_rule()), build_rule(expr)]
    calls: list[tuple[str, int]] = []
    for rule in built:
        def counted(readings: list[Any], ctx: Any, current: AlarmSeverity, evaluate: Any = rule.evaluate,
                    alarm: str = rule.alarm_id) -> Verdict:
            calls.append((alarm, ctx.now_us))
            result: Verdict = evaluate(readings, ctx, current)
            return result

        rule.evaluate = counted  # type: ignore[method-assign]
    engine = AlarmEngine(built, started=T0)
    engine.process(SampleBatch.from_samples(
        [Sample(WIND, T0, 10.0), Sample(POINTS[0], T0, 1.0), Sample(POINTS[1], T0, 1.0)]), T0)
    calls.clear()
    second = [T0 + timedelta(seconds=1, milliseconds=100 * k) for k in range(4)]
    quiet = [Sample(WIND, second[0], 12.0), Sample(WIND, second[1], 9.0),
             Sample(POINTS[0], second[0], 3.0), Sample(POINTS[1], second[1], -1.0), Sample(POINTS[0], second[2], 2.0)]
    assert engine.process(SampleBatch.from_samples(quiet), second[3]).events == []
    assert calls == []  # x - y stays within -1..4 whatever the combination: proven by intervals, not evaluated
    # The wind's newest value is calm, but one sample of the entry gusts: that rule alone is evaluated,
    # once per sample of the entry.
    gusty = [Sample(WIND, second[0] + timedelta(seconds=1), 16.0), Sample(WIND, second[1] + timedelta(seconds=1), 9.0)]
    out = engine.process(SampleBatch.from_samples(gusty), second[3] + timedelta(seconds=1))
    assert [e.action for e in out.events] == ["raise", "clear"]
    assert [a for a, _ in calls] == ["WindSpeed.ASM:1", "WindSpeed.ASM:1"]


def test_an_entry_handled_again_after_a_restart_repeats_no_transition() -> None:
    """The supervisor saved the states of the gust's transitions, then died before acknowledging the entry:
    handled again by a new engine (input values from an older save), the entry gives no second raise/clear."""
    import json

    gust = SampleBatch.from_samples(one_second_at_10_hz([16.0, 21.0, 16.0]))
    first = AlarmEngine([build_rule(gust_rule())], started=T0)
    older_values = json.loads(json.dumps(first.dump_values()))  # before the entry: values are saved every 10 s
    out = first.process(gust, T0 + timedelta(seconds=1))
    assert [e.action for e in out.events] == ["raise", "raise", "change", "clear"]
    saved = json.loads(json.dumps(first.dump(out.changed)))
    again = AlarmEngine([build_rule(gust_rule())], started=T0 + timedelta(seconds=5))
    assert again.restore(saved).restored == 1
    again.restore_values(older_values)
    assert again.process(gust, T0 + timedelta(seconds=5)).events == []
    later = Sample(WIND, T0 + timedelta(seconds=6), 17.0)
    assert [e.action for e in again.process(SampleBatch.from_samples([later]), T0 + timedelta(seconds=6)).events] \
        == ["change"]  # WARNING again, below the CRITICAL latched and not acknowledged
