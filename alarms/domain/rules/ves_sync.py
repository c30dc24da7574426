"""VES-sync failure: the sync service's health points say pushes to ESO's VES keep failing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class VesSyncConfig(RuleConfig):
    kind: Literal["ves_sync"] = "ves_sync"
    failures_point: PointName = "skyops.ves_sync.consecutive_failures"
    success_age_point: PointName = "skyops.ves_sync.last_success_age_s"
    failures: ThresholdLevels = Field(description="consecutive failed syncs per level")
    success_age_s: ThresholdLevels = Field(description="seconds since the last successful sync per level")


class VesSyncRule(Rule[VesSyncConfig]):
    kind = "ves_sync"

    def __init__(self, config: VesSyncConfig) -> None:
        super().__init__(config)
        self.failures = config.failures.handler("consecutive VES sync failures")
        self.age = config.success_age_s.handler("time since last VES sync", " s")

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.config.failures_point, self.config.success_age_point)

    def screen(self) -> Screen:
        return Screen(valid=(0, 1), checks=(LevelCheck(self.failures, input=0), LevelCheck(self.age, input=1)))

    def evaluate(self, readings: list[Reading | None], ctx: EvalContext, current: AlarmSeverity) -> Verdict:
        bad = self.check_inputs(readings, ctx)
        if bad is not None:
            return bad
        failures, age = (r.value for r in readings if r is not None)
        by_failures = self.failures.severity(failures, current)
        by_age = self.age.severity(age, current)
        sev, reason = max(by_failures, by_age, key=lambda sr: sr[0])
        return Verdict(sev, reason, attributes={"failures": f"{failures:g}", "success_age_s": f"{age:g}"})
