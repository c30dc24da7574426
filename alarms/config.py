"""The alarm configuration file (config_db/defaults/alarms.yaml): rules, shelving limit, notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, HttpUrl, model_validator

from alarms.domain.rules import Rule, RuleSpec, build_rule
from alarms.domain.rules.base import SeverityName, Strict
from config_db.loader import default_path, load_model

DEFAULT_FILE = "alarms.yaml"


class NotificationConfig(Strict):
    """Who hears about alarms, from which severity, and when an unacknowledged CRITICAL escalates."""

    email_to: tuple[str, ...] = ()
    email_from: str = "skyops-alarms@localhost"
    webhook_urls: tuple[HttpUrl, ...] = ()
    min_severity: SeverityName = "SERIOUS"
    escalation_delay_s: float = Field(default=600.0, gt=0)
    escalation_to: tuple[str, ...] = ()
    retry_initial_s: float = Field(default=10.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _addresses(self) -> NotificationConfig:
        for addr in (*self.email_to, *self.escalation_to, self.email_from):
            if "@" not in addr or addr.startswith("@") or addr.endswith("@") or " " in addr:
                raise ValueError(f"{addr!r} is not an e-mail address")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        return self


class AlarmsConfig(Strict):
    rules: list[RuleSpec] = Field(min_length=1)
    max_shelve_h: float = Field(default=24.0, gt=0, le=24 * 14, description="the longest a shelve may last")
    max_future_s: float = Field(default=60.0, gt=0, le=3600,
                                description="samples dated further ahead of the supervisor's clock are refused")
    notifications: NotificationConfig = NotificationConfig()

    @model_validator(mode="after")
    def _unique(self) -> AlarmsConfig:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.alarm_id in seen:
                raise ValueError(f"rules[{i}]: alarm {rule.alarm_id} is defined twice")
            seen.add(rule.alarm_id)
        return self

    def build_rules(self) -> list[Rule[Any]]:
        return [build_rule(r) for r in self.rules]


def load_alarms(path: Path | str | None = None) -> AlarmsConfig:
    """Read and validate an alarms file (the shipped La Silla defaults when no path is given)."""
    return load_model(default_path(DEFAULT_FILE) if path is None else path, AlarmsConfig)
