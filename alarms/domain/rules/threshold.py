"""Threshold rule: one point against WARNING/SERIOUS/CRITICAL levels with hysteresis (wind, humidity, seeing...)."""

from __future__ import annotations

from typing import Literal

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


class ThresholdConfig(RuleConfig):
    kind: Literal["threshold"] = "threshold"
    point: PointName
    threshold: ThresholdLevels
    unit: str = ""


class ThresholdRule(Rule[ThresholdConfig]):
    kind = "threshold"

    def __init__(self, config: ThresholdConfig) -> None:
        super().__init__(config)
        self.handler = config.threshold.handler(config.point, config.unit)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.config.point,)

    def screen(self) -> Screen:
        return Screen(valid=(0,), checks=(LevelCheck(self.handler, input=0),))

    def evaluate(self, readings: list[Reading | None], ctx: EvalContext, current: AlarmSeverity) -> Verdict:
        bad = self.check_inputs(readings, ctx)
        if bad is not None:
            return bad
        reading = readings[0]
        assert reading is not None  # check_inputs refused missing readings
        sev, reason = self.handler.severity(reading.value, current)
        return Verdict(sev, reason, attributes={"value": f"{reading.value:.6g}"})
