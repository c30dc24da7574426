"""When an alarm's consequence for the night plan starts, moves (a new forbidden sector) or ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alarms.domain.rules.base import Consequence
from skyops.messages import AzimuthSector, ConsequenceKind, PlanTrigger
from skyops.records import AlarmSeverity
from skyops.timeutil import from_us


def _angle_between(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@dataclass(slots=True)
class ConsequenceTracker:
    """Turns an alarm's severity into plan triggers for one configured consequence.

    Invalid input holds the consequence as it is: a dome closed for wind is not reopened because the
    anemometer went silent.
    """

    alarm_id: str
    config: Consequence
    sector_step_deg: float = 10.0
    active: bool = False
    sector: AzimuthSector | None = None

    def update(
        self, now_us: int, severity: AlarmSeverity, *, valid: bool, reason: str, sector: AzimuthSector | None
    ) -> PlanTrigger | None:
        if self.config.kind == "none" or not valid:
            return None
        want = severity >= self.config.threshold
        kind = ConsequenceKind(self.config.kind)
        if kind is ConsequenceKind.POINTING_RESTRICTION and want and sector is None:
            want = self.active  # a restriction without a sector cannot be published; keep what holds
        moved = want and kind is ConsequenceKind.POINTING_RESTRICTION and self._moved(sector)
        if want == self.active and not moved:
            return None
        self.active = want
        self.sector = sector if want else None
        return PlanTrigger(
            kind="consequence", ts=from_us(now_us), reason=reason[:500] or self.alarm_id, alarm_id=self.alarm_id,
            consequence=kind, active=want, sector=self.sector if want else None,
            seeing_limit_arcsec=self.config.seeing_limit_arcsec if want else None,
        )

    def _moved(self, sector: AzimuthSector | None) -> bool:
        if sector is None or self.sector is None:
            return False
        return _angle_between(sector.start_deg, self.sector.start_deg) >= self.sector_step_deg or _angle_between(
            sector.end_deg, self.sector.end_deg
        ) >= self.sector_step_deg

    def dump(self) -> dict[str, Any]:
        return {"active": self.active, "sector": None if self.sector is None else self.sector.model_dump()}

    def load(self, data: dict[str, Any]) -> None:
        self.active = bool(data["active"])
        sector = data.get("sector")
        self.sector = None if sector is None else AzimuthSector.model_validate(sector)
