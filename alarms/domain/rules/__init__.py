"""The rule kinds, and the tagged union a rules file is validated against."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from alarms.domain.rules.base import EvalContext, Reading, Rule, RuleConfig, Verdict
from alarms.domain.rules.expression import ExpressionConfig, ExpressionRule
from alarms.domain.rules.staleness import StalenessConfig, StalenessRule
from alarms.domain.rules.threshold import ThresholdConfig, ThresholdRule
from alarms.domain.rules.ves_sync import VesSyncConfig, VesSyncRule
from alarms.domain.rules.wind import WindRestrictionConfig, WindRestrictionRule

RuleSpec = Annotated[
    ThresholdConfig | WindRestrictionConfig | StalenessConfig | VesSyncConfig | ExpressionConfig,
    Field(discriminator="kind"),
]

_RULES: dict[type[RuleConfig], type[Rule[Any]]] = {
    ThresholdConfig: ThresholdRule,
    WindRestrictionConfig: WindRestrictionRule,
    StalenessConfig: StalenessRule,
    VesSyncConfig: VesSyncRule,
    ExpressionConfig: ExpressionRule,
}


def build_rule(config: RuleConfig) -> Rule[Any]:
    """The rule object for a validated config."""
    return _RULES[type(config)](config)


__all__ = [
    "EvalContext",
    "ExpressionConfig",
    "ExpressionRule",
    "Reading",
    "Rule",
    "RuleConfig",
    "RuleSpec",
    "StalenessConfig",
    "StalenessRule",
    "ThresholdConfig",
    "ThresholdRule",
    "Verdict",
    "VesSyncConfig",
    "VesSyncRule",
    "WindRestrictionConfig",
    "WindRestrictionRule",
    "build_rule",
]
