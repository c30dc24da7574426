"""A seeded, physically plausible La Silla weather model and scripted scenarios over it (pure: time is an argument)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from config_db.loader import load_model
from skyops.timeutil import require_utc, to_us

FIELDS: tuple[str, ...] = (
    "wind_speed", "wind_direction", "wind_gust", "humidity", "temperature", "dew_point", "seeing",
    "pressure", "transparency",
)
Reading = dict[str, float]


def dew_point(temperature_c: float, humidity_pct: float) -> float:
    """Magnus formula: at or below the temperature for any humidity up to 100 %."""
    a, b = 17.62, 243.12
    rh = min(max(humidity_pct, 0.1), 100.0) / 100.0
    gamma = math.log(rh) + a * temperature_c / (b + temperature_c)
    return b * gamma / (a - gamma)


class WeatherModel:
    """Weather at an instant: slow drifts are sums of seeded sinusoids, fast noise is seeded per second.

    The reading is a pure function of (seed, time), so a simulator that is polled twice at the same
    instant answers the same, and a replay with the same seed and clock is identical.
    """

    def __init__(self, *, seed: int = 0, longitude_deg: float = -70.7346) -> None:
        self.seed = seed
        self.longitude_deg = longitude_deg
        rng = np.random.default_rng(seed)
        # Four slow drifts (seeing, wind, humidity, direction), each three periods of 1-12 hours.
        self._periods = rng.uniform(3600.0, 12 * 3600.0, size=(4, 3))
        self._phases = rng.uniform(0, 2 * math.pi, size=(4, 3))

    def _drift(self, which: int, t_s: float) -> float:
        """A smooth signal of zero mean and unit variance."""
        waves = np.sin(2 * math.pi * t_s / self._periods[which] + self._phases[which])
        return float(waves.sum() * math.sqrt(2.0 / 3.0))

    def _noise(self, t_s: float) -> npt.NDArray[np.float64]:
        return np.random.default_rng([self.seed, max(0, math.floor(t_s))]).standard_normal(6)

    def reading(self, when: datetime) -> Reading:
        """Every ASM field at `when`, rounded as the ASM reports them."""
        t_s = to_us(require_utc(when)) / 1e6
        z = self._noise(t_s)
        solar_hour = (t_s / 3600.0 + self.longitude_deg / 15.0) % 24.0
        # Warmest mid-afternoon, coldest before dawn; ±4 °C about 10 °C.
        temperature = 10.0 + 4.0 * math.cos(2 * math.pi * (solar_hour - 15.0) / 24.0) + 0.05 * z[0]
        humidity = min(98.0, max(3.0, 25.0 - 2.5 * (temperature - 10.0) + 10.0 * self._drift(2, t_s) + 0.3 * z[1]))
        # Log-normal seeing, median ~0.9", slowly drifting and with second-to-second scintillation.
        seeing = math.exp(math.log(0.9) + 0.3 * self._drift(0, t_s) + 0.08 * z[2])
        wind = max(0.0, 6.0 + 3.0 * self._drift(1, t_s) + 0.8 * z[3])
        gust = wind * (1.0 + 0.25 * abs(z[4])) + 0.5
        direction = (20.0 + 40.0 * self._drift(3, t_s) + 5.0 * z[5]) % 360.0
        transparency = min(1.0, max(0.0, 0.95 - 0.1 * max(0.0, self._drift(2, t_s))))
        return {
            "wind_speed": round(wind, 2),
            "wind_direction": round(direction, 1),
            "wind_gust": round(gust, 2),
            "humidity": round(humidity, 1),
            "temperature": round(temperature, 2),
            "dew_point": round(dew_point(temperature, humidity), 2),
            "seeing": round(seeing, 3),
            "pressure": round(771.0 + 1.5 * math.sin(2 * math.pi * (solar_hour - 10.0) / 12.0), 1),
            "transparency": round(transparency, 3),
        }


WeatherField = Literal[
    "wind_speed", "wind_direction", "wind_gust", "humidity", "temperature", "dew_point", "seeing",
    "pressure", "transparency",
]


class Step(BaseModel):
    """One scripted change, active from `at_s` for `duration_s` after the scenario starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    field: WeatherField | None = None
    ramp_to: float | None = Field(default=None, description="linear from the model's value to this, then held")
    ramp_s: float | None = Field(default=None, gt=0, description="how long the ramp takes (default: the whole step)")
    set: float | None = None
    scale: float | None = Field(default=None, gt=0, description="multiply, ramped in over the step")
    outage: Literal["http_503", "stale", "timeout"] | None = None
    malform: Literal["missing", "string", "nan", "null", "not_json"] | None = None

    @model_validator(mode="after")
    def _one_effect(self) -> Step:
        effects = [x for x in (self.ramp_to, self.set, self.scale, self.outage, self.malform) if x is not None]
        if len(effects) != 1:
            raise ValueError("a step has exactly one of ramp_to, set, scale, outage, malform")
        needs_field = self.outage is None and self.malform != "not_json"
        if needs_field and self.field is None:
            raise ValueError("ramp_to, set, scale and malform (except not_json) need a field")
        return self

    def active(self, t_s: float) -> bool:
        return self.at_s <= t_s < self.at_s + self.duration_s

    def progress(self, t_s: float) -> float:
        return min(1.0, max(0.0, (t_s - self.at_s) / (self.ramp_s or self.duration_s)))


class Scenario(BaseModel):
    """A named script of weather changes and faults, read from YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    steps: list[Step] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path | str) -> Scenario:
        return load_model(path, cls)



AnswerKind = Literal["ok", "http_503", "timeout", "not_json"]


@dataclass(frozen=True)
class AsmAnswer:
    """What the simulated ASM answers at one instant: a payload, or a fault."""

    kind: AnswerKind
    measured_at: datetime
    payload: dict[str, object] = field(default_factory=dict)


MALFORMED: dict[str, object] = {"string": "n/a", "nan": float("nan"), "null": None}


def answer(model: WeatherModel, when: datetime, scenario: Scenario | None = None,
           started: datetime | None = None) -> AsmAnswer:
    """The ASM's answer at `when`, with `scenario` (begun at `started`) applied over the model."""
    when = require_utc(when)
    if scenario is None:
        return AsmAnswer("ok", when, dict(model.reading(when)))
    start = require_utc(started if started is not None else when)
    t_s = (when - start).total_seconds()
    active = [s for s in scenario.steps if s.active(t_s)]
    measured = when
    for s in active:
        if s.outage == "stale":
            measured = start + timedelta(seconds=s.at_s)
        elif s.outage is not None:
            return AsmAnswer(s.outage, when)
        elif s.malform == "not_json":
            return AsmAnswer("not_json", when)
    base = model.reading(measured)
    values = dict(base)
    t_eff = (measured - start).total_seconds()
    scripted = set()
    for s in active:
        if s.field is None or s.malform is not None:
            continue
        scripted.add(s.field)
        v = base[s.field]
        if s.ramp_to is not None:
            values[s.field] = v + (s.ramp_to - v) * s.progress(t_eff)
        elif s.set is not None:
            values[s.field] = s.set
        elif s.scale is not None:
            values[s.field] = v * (1.0 + (s.scale - 1.0) * s.progress(t_eff))
    # Keep the scripted weather physical: gusts above the mean wind, dew point at or below the air.
    if "wind_gust" not in scripted and "wind_speed" in scripted:
        ratio = base["wind_gust"] / base["wind_speed"] if base["wind_speed"] > 0.1 else 1.2
        values["wind_gust"] = round(values["wind_speed"] * max(ratio, 1.0), 2)
    if "dew_point" not in scripted and scripted & {"humidity", "temperature"}:
        values["dew_point"] = round(dew_point(values["temperature"], values["humidity"]), 2)
    payload: dict[str, object] = {k: round(v, 3) for k, v in values.items()}
    for s in active:
        if s.malform is not None and s.field is not None:
            if s.malform == "missing":
                payload.pop(s.field, None)
            else:
                payload[s.field] = MALFORMED[s.malform]
    return AsmAnswer("ok", measured, payload)
