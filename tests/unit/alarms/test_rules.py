"""Each rule kind's pure evaluation, by tables of readings."""

from __future__ import annotations

import math

import pytest

from alarms.domain.rules import (
    ExpressionConfig,
    StalenessConfig,
    ThresholdConfig,
    VesSyncConfig,
    WindRestrictionConfig,
    build_rule,
)
from alarms.domain.rules.base import EvalContext, PerLevel, Reading, ThresholdLevels
from alarms.domain.rules.wind import sector_around
from skyops.records import AlarmSeverity as S
from skyops.records import Quality

NOW = 1_800_000_000_000_000
CTX = EvalContext(now_us=NOW, started_us=NOW - 3_600_000_000)


def r(point: str, value: float, age_s: float = 0, quality: Quality = Quality.GOOD) -> Reading:
    return Reading(point, value, NOW - int(age_s * 1_000_000), quality)


WIND = build_rule(WindRestrictionConfig(
    name="WindPointing", instance="NTT:1", guidance="g", speed_point="lasilla.asm.wind_speed",
    direction_point="lasilla.asm.wind_direction", azimuth_point="ntt.tcs.azimuth",
    speed=ThresholdLevels(levels=PerLevel(warning=12, critical=20)), half_width_deg=45, in_sector_severity="SERIOUS",
))


@pytest.mark.parametrize(
    ("direction", "start", "end"),
    [(10, 325, 55), (180, 135, 225), (350, 305, 35), (0, 315, 45), (359.9999, 315, 45)],
)
def test_sector_wraps_through_north(direction: float, start: float, end: float) -> None:
    sector = sector_around(direction, 45)
    assert (sector.start_deg, sector.end_deg) == pytest.approx((start, end), abs=1e-3)
    assert sector.contains(direction)
    assert not sector.contains(direction + 180)


@pytest.mark.parametrize(
    ("speed", "azimuth", "expected"),
    [(8, 10, S.NONE), (13, 200, S.WARNING), (13, 30, S.SERIOUS), (21, 30, S.CRITICAL), (21, 200, S.CRITICAL)],
)
def test_wind_restriction(speed: float, azimuth: float, expected: S) -> None:
    readings = [r("lasilla.asm.wind_speed", speed), r("lasilla.asm.wind_direction", 10), r("ntt.tcs.azimuth", azimuth)]
    verdict = WIND.evaluate(list(readings), CTX, S.NONE)
    assert verdict.severity == expected
    assert (verdict.sector is None) == (expected == S.NONE)


def test_wind_restriction_holds_without_the_telescope_azimuth() -> None:
    readings = [r("lasilla.asm.wind_speed", 13), r("lasilla.asm.wind_direction", 10), None]
    verdict = WIND.evaluate(readings, CTX, S.NONE)
    assert verdict.severity == S.WARNING
    assert verdict.sector is not None
    bad_az: list[Reading | None] = [r("lasilla.asm.wind_speed", 13), r("lasilla.asm.wind_direction", 10),
              r("ntt.tcs.azimuth", math.nan, quality=Quality.BAD)]
    assert WIND.evaluate(bad_az, CTX, S.NONE).severity == S.WARNING


@pytest.mark.parametrize(
    ("reading", "why"),
    [
        (None, "no sample of lasilla.asm.humidity yet"),
        (r("lasilla.asm.humidity", 50, age_s=121), "is 121 s old (max age 120 s)"),
        (r("lasilla.asm.humidity", 50, quality=Quality.BAD), "BAD quality"),
        (r("lasilla.asm.humidity", math.nan), "no numeric value"),
    ],
)
def test_threshold_input_validity(reading: Reading | None, why: str) -> None:
    rule = build_rule(ThresholdConfig(name="Humidity", instance="ASM:1", guidance="g", point="lasilla.asm.humidity",
                                      threshold=ThresholdLevels(levels=PerLevel(warning=80))))
    verdict = rule.evaluate([reading], CTX, S.NONE)
    assert not verdict.valid
    assert why in verdict.reason


def test_uncertain_quality_is_still_used() -> None:
    rule = build_rule(ThresholdConfig(name="Humidity", instance="ASM:1", guidance="g", point="lasilla.asm.humidity",
                                      threshold=ThresholdLevels(levels=PerLevel(warning=80))))
    verdict = rule.evaluate([r("lasilla.asm.humidity", 85, quality=Quality.UNCERTAIN)], CTX, S.NONE)
    assert (verdict.valid, verdict.severity) == (True, S.WARNING)


def test_staleness_counts_any_sample_and_counts_from_start_when_nothing_came() -> None:
    rule = build_rule(StalenessConfig(name="AsmHeartbeat", instance="ASM:1", guidance="g",
                                      points=("lasilla.asm.wind_speed", "lasilla.asm.humidity"),
                                      silence_s=ThresholdLevels(levels=PerLevel(warning=60, critical=600))))
    fresh_bad = r("lasilla.asm.humidity", math.nan, age_s=5, quality=Quality.BAD)
    assert rule.evaluate([None, fresh_bad], CTX, S.NONE).severity == S.NONE
    old = r("lasilla.asm.wind_speed", 1, age_s=90)
    assert rule.evaluate([old, None], CTX, S.NONE).severity == S.WARNING
    never = rule.evaluate([None, None], CTX, S.NONE)
    assert never.severity == S.CRITICAL
    assert "nothing received since start" in never.reason


@pytest.mark.parametrize(
    ("failures", "age", "expected"), [(0, 10, S.NONE), (3, 10, S.WARNING), (0, 1000, S.WARNING), (10, 4000, S.SERIOUS)]
)
def test_ves_sync(failures: float, age: float, expected: S) -> None:
    rule = build_rule(VesSyncConfig(name="VesSync", instance="P2:1", guidance="g",
                                    failures=ThresholdLevels(levels=PerLevel(warning=3, serious=10)),
                                    success_age_s=ThresholdLevels(levels=PerLevel(warning=900, serious=3600))))
    readings = [r("skyops.ves_sync.consecutive_failures", failures), r("skyops.ves_sync.last_success_age_s", age)]
    assert rule.evaluate(list(readings), CTX, S.NONE).severity == expected


def test_expression_undefined_is_invalid() -> None:
    rule = build_rule(ExpressionConfig(name="Ratio", instance="ASM:1", guidance="g",
                                       inputs={"g": "lasilla.asm.wind_gust", "w": "lasilla.asm.wind_speed"},
                                       expression="g / w", threshold=ThresholdLevels(levels=PerLevel(warning=2))))
    verdict = rule.evaluate([r("lasilla.asm.wind_gust", 5), r("lasilla.asm.wind_speed", 0)], CTX, S.NONE)
    assert not verdict.valid
    assert "undefined" in verdict.reason


def test_alarm_names_carry_their_instance() -> None:
    assert WIND.alarm_id == "WindPointing.NTT:1"
