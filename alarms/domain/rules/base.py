"""What every rule kind shares: its config fields, its inputs, the validity check and the verdict it returns."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alarms.domain.expression import Expression
from alarms.domain.severity import ThresholdHandler
from skyops.messages import AzimuthSector
from skyops.records import POINT_NAME, AlarmSeverity, Quality
from skyops.timeutil import US_PER_S

PointName = Annotated[str, Field(pattern=POINT_NAME.pattern, max_length=200)]
SeverityName = Literal["WARNING", "SERIOUS", "CRITICAL"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerLevel(Strict):
    """One number per severity level; a level left out is not used."""

    warning: float | None = None
    serious: float | None = None
    critical: float | None = None

    def items(self) -> list[tuple[AlarmSeverity, float]]:
        pairs = [
            (AlarmSeverity.WARNING, self.warning),
            (AlarmSeverity.SERIOUS, self.serious),
            (AlarmSeverity.CRITICAL, self.critical),
        ]
        return [(s, float(v)) for s, v in pairs if v is not None]


class Delays(Strict):
    """Seconds a level must hold before the alarm takes it."""

    warning: float = Field(default=0.0, ge=0)
    serious: float = Field(default=0.0, ge=0)
    critical: float = Field(default=0.0, ge=0)

    def as_us(self) -> dict[AlarmSeverity, int]:
        return {
            AlarmSeverity.WARNING: round(self.warning * US_PER_S),
            AlarmSeverity.SERIOUS: round(self.serious * US_PER_S),
            AlarmSeverity.CRITICAL: round(self.critical * US_PER_S),
        }


class Consequence(Strict):
    """What the alarm means for the night plan, from which severity on."""

    kind: Literal["none", "close_dome", "pointing_restriction", "seeing_limit"] = "none"
    min_severity: SeverityName = "SERIOUS"
    seeing_limit_arcsec: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> Consequence:
        if self.kind == "seeing_limit" and self.seeing_limit_arcsec is None:
            raise ValueError("a seeing_limit consequence needs seeing_limit_arcsec")
        if self.kind != "seeing_limit" and self.seeing_limit_arcsec is not None:
            raise ValueError("seeing_limit_arcsec only goes with a seeing_limit consequence")
        return self

    @property
    def threshold(self) -> AlarmSeverity:
        return AlarmSeverity[self.min_severity]


class RuleConfig(Strict):
    """Fields of every rule; the alarm is named `<name>.<instance>`, e.g. `WindSpeed.ASM:1`."""

    kind: str
    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=80)
    instance: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*:[0-9]+$", max_length=80)
    description: str = ""
    guidance: str = Field(min_length=1, description="what the operator should do")
    max_age_s: float = Field(default=120.0, gt=0, description="older input makes the alarm INVALID")
    activation_delay_s: Delays = Delays()
    clear_delay_s: float = Field(default=0.0, ge=0)
    consequence: Consequence = Consequence()

    @property
    def alarm_id(self) -> str:
        return f"{self.name}.{self.instance}"


class ThresholdLevels(Strict):
    """Levels, hysteresis and direction, shared by the rule kinds that compare a number to limits."""

    levels: PerLevel
    hysteresis: float = Field(default=0.0, ge=0)
    big_is_bad: bool = True

    @model_validator(mode="after")
    def _check_levels(self) -> ThresholdLevels:
        self.handler("value")  # raises with the reason when levels are missing or out of order
        return self

    def handler(self, what: str, unit: str = "") -> ThresholdHandler:
        return ThresholdHandler(
            levels=tuple(self.levels.items()), hysteresis=self.hysteresis, big_is_bad=self.big_is_bad,
            what=what, unit=unit,
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """The newest sample of one input: NaN value when it was not usable as a number."""

    point: str
    value: float
    ts_us: int
    quality: Quality


@dataclass(frozen=True, slots=True)
class EvalContext:
    now_us: int
    started_us: int  # when the engine started: the age of an input never seen is counted from here


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule makes of its inputs now: a raw severity and why, or INVALID and why."""

    severity: AlarmSeverity
    reason: str
    valid: bool = True
    sector: AzimuthSector | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def invalid(reason: str) -> Verdict:
        return Verdict(AlarmSeverity.NONE, reason, valid=False)


@dataclass(frozen=True, slots=True)
class LevelCheck:
    """A number a rule holds against levels, named so numpy can compute it for many rules at once: the
    value of one input (`input`, an index into `Rule.inputs`), the silence of all inputs in seconds
    (`silence`), or an expression over the inputs (`expression`, its names in the order of `Rule.inputs`)."""

    handler: ThresholdHandler
    input: int | None = None
    silence: bool = False
    expression: Expression | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Screen:
    """When a rule's verdict is surely a valid NONE: the `valid` inputs (indices into `Rule.inputs`) pass
    `check_inputs`, and every check's number is short of every level (held severity NONE: no hysteresis)."""

    valid: tuple[int, ...]
    checks: tuple[LevelCheck, ...]


C = TypeVar("C", bound=RuleConfig)


class Rule(ABC, Generic[C]):
    """A configured alarm rule: named inputs and one pure evaluation."""

    kind: ClassVar[str]

    def __init__(self, config: C) -> None:
        self.config = config
        self.alarm_id = config.alarm_id
        self.max_age_us = round(config.max_age_s * US_PER_S)

    @property
    @abstractmethod
    def inputs(self) -> tuple[str, ...]:
        """The monitoring points the rule reads, in the order `evaluate` receives them."""

    @abstractmethod
    def evaluate(self, readings: list[Reading | None], ctx: EvalContext, current: AlarmSeverity) -> Verdict:
        """The raw severity for these readings; `current` is the raw severity held so far (hysteresis)."""

    def screen(self) -> Screen | None:
        """How numpy can tell this rule is quiet without evaluating it; None: always evaluate it."""
        return None

    def check_inputs(
        self, readings: list[Reading | None], ctx: EvalContext, points: tuple[str, ...] | None = None
    ) -> Verdict | None:
        """INVALID when an input is missing, of BAD quality, not a number, or older than max_age_s."""
        max_age_us = self.max_age_us
        for point, r in zip(self.inputs if points is None else points, readings, strict=True):
            if r is None:
                return Verdict.invalid(f"no sample of {point} yet")
            if r.quality == Quality.BAD:
                return Verdict.invalid(f"{point} has BAD quality")
            if math.isnan(r.value):
                return Verdict.invalid(f"{point} has no numeric value")
            age_us = ctx.now_us - r.ts_us
            if age_us > max_age_us:
                return Verdict.invalid(
                    f"{point} is {age_us / US_PER_S:.0f} s old (max age {self.config.max_age_s:g} s)"
                )
        return None

    def describe(self) -> dict[str, Any]:
        return {"alarm_id": self.alarm_id, "kind": self.kind, **self.config.model_dump(mode="json")}
