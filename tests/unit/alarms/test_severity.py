"""ThresholdHandler and SeverityFilter, by tables of values and no I/O."""

from __future__ import annotations

import pytest

from alarms.domain.severity import SeverityFilter, ThresholdHandler
from skyops.records import AlarmSeverity as S

W, SE, C, N = S.WARNING, S.SERIOUS, S.CRITICAL, S.NONE
HIGH = ThresholdHandler(levels=((W, 15.0), (SE, 18.0), (C, 20.0)), hysteresis=2.0)
LOW = ThresholdHandler(levels=((W, 3.0), (C, 2.0)), hysteresis=0.5, big_is_bad=False)


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (10, N, N), (15, N, W), (17.9, N, W), (18, N, SE), (20, N, C), (25, N, C),
        (14, W, W), (13, W, W), (12.9, W, N),  # hysteresis keeps WARNING down to 13
        (16.5, SE, SE), (15.9, SE, W), (18.5, C, C), (17.9, C, SE),
        (14, N, N),  # entering still needs the level itself
    ],
)
def test_big_is_bad(value: float, current: S, expected: S) -> None:
    assert HIGH.severity(value, current)[0] == expected


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [(5, N, N), (3, N, W), (2.5, N, W), (2, N, C), (2.4, C, C), (2.6, C, W), (3.5, W, W), (3.6, W, N)],
)
def test_small_is_bad(value: float, current: S, expected: S) -> None:
    assert LOW.severity(value, current)[0] == expected


def test_reason_names_value_and_level() -> None:
    h = ThresholdHandler(levels=((W, 15.0),), what="lasilla.asm.wind_speed", unit=" m/s")
    assert h.severity(16.0)[1] == "lasilla.asm.wind_speed 16 m/s >= WARNING level 15 m/s"


@pytest.mark.parametrize(
    ("levels", "big_is_bad"),
    [(((W, 15.0), (SE, 12.0)), True), (((W, 1.0), (C, 2.0)), False), ((), True)],
)
def test_levels_must_be_ordered(levels: tuple[tuple[S, float], ...], big_is_bad: bool) -> None:
    with pytest.raises(ValueError, match="level"):
        ThresholdHandler(levels=levels, big_is_bad=big_is_bad)


def test_negative_hysteresis_refused() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        ThresholdHandler(levels=((W, 1.0),), hysteresis=-1)


def _run(f: SeverityFilter, series: list[tuple[int, S]]) -> list[S]:
    return [f.step(raw, t * 1_000_000) for t, raw in series]


def test_activation_delay_per_level() -> None:
    f = SeverityFilter(activation_us={W: 30_000_000, SE: 10_000_000, C: 0})
    got = _run(f, [(0, W), (20, W), (30, W), (31, SE), (40, SE), (41, SE), (42, C)])
    assert got == [N, N, W, W, W, SE, C]


def test_interrupted_delay_starts_again() -> None:
    f = SeverityFilter(activation_us={W: 30_000_000})
    assert _run(f, [(0, W), (20, N), (25, W), (50, W), (55, W)]) == [N, N, N, N, W]


def test_clear_delay_holds_each_level_until_it_has_been_left_long_enough() -> None:
    f = SeverityFilter(activation_us={}, clear_us=60_000_000)
    assert _run(f, [(0, C), (10, N), (60, N), (65, W), (70, N), (129, N), (130, N)]) == [C, C, C, C, W, W, N]


def test_dump_and_load_keep_timers() -> None:
    f = SeverityFilter(activation_us={W: 30_000_000}, clear_us=5)
    f.step(W, 0)
    g = SeverityFilter(activation_us={W: 30_000_000}, clear_us=5)
    g.load(f.dump())
    assert g.step(W, 30_000_000) == W
