"""Expression rule: a computed value over several inputs against levels (dew-point depression, gust ratio...)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from alarms.domain.expression import Expression, ExpressionError
from alarms.domain.rules.base import (
    EvalContext,
    LevelCheck,
    PointName,
    Reading,
    Rule,
    RuleConfig,
    Screen,
    ThresholdLevels,
    Verdict,
)
from skyops.records import AlarmSeverity


class ExpressionConfig(RuleConfig):
    kind: Literal["expression"] = "expression"
    inputs: dict[str, PointName] = Field(min_length=1, description="name in the expression → point")
    expression: str = Field(min_length=1)
    threshold: ThresholdLevels
    unit: str = ""

    @model_validator(mode="after")
    def _parse(self) -> ExpressionConfig:
        try:
            Expression(self.expression, set(self.inputs))
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return self


class ExpressionRule(Rule[ExpressionConfig]):
    kind = "expression"

    def __init__(self, config: ExpressionConfig) -> None:
        super().__init__(config)
        self.names = tuple(config.inputs)
        self.expression = Expression(config.expression, set(self.names))
        self.handler = config.threshold.handler(config.expression, config.unit)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.config.inputs[n] for n in self.names)

    def screen(self) -> Screen:
        check = LevelCheck(self.handler, expression=self.expression, names=self.names)
        return Screen(valid=tuple(range(len(self.names))), checks=(check,))

    def evaluate(self, readings: list[Reading | None], ctx: EvalContext, current: AlarmSeverity) -> Verdict:
        bad = self.check_inputs(readings, ctx)
        if bad is not None:
            return bad
        env = {n: r.value for n, r in zip(self.names, readings, strict=True) if r is not None}
        value = self.expression(env)
        if math.isnan(value):
            return Verdict.invalid(f"{self.config.expression} is undefined for these inputs")
        sev, reason = self.handler.severity(value, current)
        return Verdict(sev, reason, attributes={"value": f"{value:.6g}"})
