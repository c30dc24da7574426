"""Staleness / heartbeat: a source or component sent nothing for too long."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
from skyops.timeutil import US_PER_S


class StalenessConfig(RuleConfig):
    kind: Literal["staleness"] = "staleness"
    points: tuple[PointName, ...] = Field(min_length=1, description="any sample of any of these is a heartbeat")
    silence_s: ThresholdLevels = Field(description="seconds of silence per level (big is bad)")

    @model_validator(mode="after")
    def _grows(self) -> StalenessConfig:
        if not self.silence_s.big_is_bad:
            raise ValueError("staleness levels grow with silence: silence_s.big_is_bad must be true")
        return self


class StalenessRule(Rule[StalenessConfig]):
    """Any sample counts as a sign of life, even one of BAD quality: the source spoke."""

    kind = "staleness"

    def __init__(self, config: StalenessConfig) -> None:
        super().__init__(config)
        self.handler = config.silence_s.handler("silence", " s")

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.config.points

    def screen(self) -> Screen:
        return Screen(valid=(), checks=(LevelCheck(self.handler, silence=True),))

    def evaluate(self, readings: list[Reading | None], ctx: EvalContext, current: AlarmSeverity) -> Verdict:
        seen = [r.ts_us for r in readings if r is not None]
        last_us = max(seen) if seen else ctx.started_us
        silence_s = max(0.0, (ctx.now_us - last_us) / US_PER_S)
        sev, reason = self.handler.severity(silence_s, current)
        if not seen:
            reason = f"{reason} (nothing received since start)"
        return Verdict(sev, reason, attributes={"value": f"{silence_s:.3f}"})
