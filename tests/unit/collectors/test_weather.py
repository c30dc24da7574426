"""The weather model and its scenarios: seeded, plausible, scripted faults as the ASM would show them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from collectors.domain.weather import FIELDS, Scenario, Step, WeatherModel, answer, dew_point
from collectors.simulators.asm import load_scenario, shipped_scenarios

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def series(model: WeatherModel, field: str, hours: float = 24, step_s: int = 300) -> np.ndarray:
    return np.array([model.reading(T0 + timedelta(seconds=s))[field] for s in range(0, int(hours * 3600), step_s)])


def test_same_seed_same_weather_other_seed_other_weather() -> None:
    a, b, c = WeatherModel(seed=1), WeatherModel(seed=1), WeatherModel(seed=2)
    assert a.reading(T0) == b.reading(T0)
    assert a.reading(T0) != c.reading(T0)
    assert set(a.reading(T0)) == set(FIELDS)


def test_weather_is_physically_plausible_over_a_day() -> None:
    m = WeatherModel(seed=7)
    rows = [m.reading(T0 + timedelta(minutes=10 * i)) for i in range(144)]
    for r in rows:
        assert r["dew_point"] <= r["temperature"]
        assert r["wind_gust"] >= r["wind_speed"] >= 0
        assert 0 <= r["humidity"] <= 100
        assert 0 <= r["wind_direction"] < 360
        assert 0 <= r["transparency"] <= 1
        assert 740 < r["pressure"] < 800  # 2375 m
    seeing = series(m, "seeing")
    assert 0.4 < float(np.median(seeing)) < 1.6
    assert seeing.min() > 0.2
    # Seeing drifts slowly: 5-minute steps change it by far less than its range over the day.
    assert np.median(np.abs(np.diff(seeing))) < 0.3 * (seeing.max() - seeing.min())


def test_diurnal_temperature_warmest_in_the_local_afternoon() -> None:
    temps = series(WeatherModel(seed=3), "temperature", step_s=600)
    hottest_utc_h = int(np.argmax(temps)) * 600 / 3600
    local_h = (hottest_utc_h - 70.7346 / 15) % 24
    assert 13 <= local_h <= 17
    assert temps.max() - temps.min() > 6


def test_dew_point_formula() -> None:
    assert dew_point(20.0, 100.0) == pytest.approx(20.0, abs=0.01)
    assert dew_point(20.0, 50.0) == pytest.approx(9.3, abs=0.2)


def test_wind_rising_scenario_reaches_its_target_in_twenty_minutes() -> None:
    model, sc = WeatherModel(seed=1), load_scenario("wind_rising")
    start = T0
    before = answer(model, start + timedelta(seconds=30), sc, start).payload["wind_speed"]
    mid = answer(model, start + timedelta(seconds=60 + 600), sc, start).payload
    top = answer(model, start + timedelta(seconds=60 + 1200), sc, start).payload
    later = answer(model, start + timedelta(seconds=60 + 2400), sc, start).payload
    assert before == model.reading(start + timedelta(seconds=30))["wind_speed"]
    assert top["wind_speed"] == pytest.approx(20.0)
    assert later["wind_speed"] == pytest.approx(20.0)
    assert before < mid["wind_speed"] < 20.0  # type: ignore[operator]
    assert top["wind_gust"] >= top["wind_speed"]  # type: ignore[operator]


def test_humidity_scenario_keeps_dew_point_below_temperature() -> None:
    model, sc = WeatherModel(seed=1), load_scenario("humidity_95")
    p = answer(model, T0 + timedelta(seconds=60 + 900), sc, T0).payload
    assert p["humidity"] == pytest.approx(95.0)
    assert p["dew_point"] <= p["temperature"]  # type: ignore[operator]
    assert p["temperature"] - p["dew_point"] < 1.5  # type: ignore[operator]


def test_seeing_degrades() -> None:
    model, sc = WeatherModel(seed=1), load_scenario("seeing_degrading")
    t = T0 + timedelta(seconds=60 + 1800)
    assert answer(model, t, sc, T0).payload["seeing"] == pytest.approx(3 * model.reading(t)["seeing"], rel=1e-3)


def test_outage_scenario_goes_stale_then_fails_then_hangs() -> None:
    model, sc = WeatherModel(seed=1), load_scenario("data_outage")
    stale = answer(model, T0 + timedelta(seconds=200), sc, T0)
    assert stale.kind == "ok"
    assert stale.measured_at == T0 + timedelta(seconds=60)
    assert answer(model, T0 + timedelta(seconds=400), sc, T0).kind == "http_503"
    assert answer(model, T0 + timedelta(seconds=500), sc, T0).kind == "timeout"
    assert answer(model, T0 + timedelta(seconds=600), sc, T0).kind == "ok"


def test_malformed_scenario() -> None:
    model, sc = WeatherModel(seed=1), load_scenario("malformed")
    at = [answer(model, T0 + timedelta(seconds=s), sc, T0) for s in (10, 70, 130, 190, 250)]
    assert "seeing" not in at[0].payload
    assert at[1].payload["wind_speed"] == "n/a"
    assert math.isnan(at[2].payload["humidity"])  # type: ignore[arg-type]
    assert at[3].payload["temperature"] is None
    assert at[4].kind == "not_json"


def test_every_shipped_scenario_loads() -> None:
    assert set(shipped_scenarios()) >= {"wind_rising", "seeing_degrading", "humidity_95", "data_outage", "malformed"}
    for name in shipped_scenarios():
        assert load_scenario(name).name == name


def test_a_step_has_exactly_one_effect() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        Step(at_s=0, duration_s=1, field="seeing", set=1.0, scale=2.0)
    with pytest.raises(ValidationError, match="need a field"):
        Step(at_s=0, duration_s=1, set=1.0)
    with pytest.raises(ValidationError):
        Scenario(name="x", steps=[])
