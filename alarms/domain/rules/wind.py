"""Wind pointing restriction: above a wind speed, azimuths within ±N° of where the wind blows from are forbidden."""

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
    SeverityName,
    ThresholdLevels,
    Verdict,
)
from skyops.messages import AzimuthSector
from skyops.records import AlarmSeverity, Quality


class WindRestrictionConfig(RuleConfig):
    kind: Literal["wind_restriction"] = "wind_restriction"
    speed_point: PointName
    direction_point: PointName
    speed: ThresholdLevels = Field(description="wind speed levels (m/s) at which the restriction applies")
    half_width_deg: float = Field(gt=0, lt=180, description="forbidden azimuths: wind direction ± this")
    azimuth_point: PointName | None = Field(
        default=None, description="telescope azimuth: pointing inside the sector raises the alarm"
    )
    in_sector_severity: SeverityName = "CRITICAL"


def sector_around(direction_deg: float, half_width_deg: float) -> AzimuthSector:
    """The sector of azimuths within ±half_width of `direction_deg`, wrapping through north."""
    return AzimuthSector(
        start_deg=round((direction_deg - half_width_deg) % 360.0, 3) % 360.0,
        end_deg=round((direction_deg + half_width_deg) % 360.0, 3) % 360.0,
    )


class WindRestrictionRule(Rule[WindRestrictionConfig]):
    kind = "wind_restriction"

    def __init__(self, config: WindRestrictionConfig) -> None:
        super().__init__(config)
        self.handler = config.speed.handler(config.speed_point, " m/s")

    @property
    def inputs(self) -> tuple[str, ...]:
        c = self.config
        return (c.speed_point, c.direction_point) + ((c.azimuth_point,) if c.azimuth_point else ())

    def screen(self) -> Screen:
        # Below every speed level the verdict is NONE wherever the wind comes from or the telescope points.
        return Screen(valid=(0, 1), checks=(LevelCheck(self.handler, input=0),))

    def evaluate(self, readings: list[Reading | None], ctx: EvalContext, current: AlarmSeverity) -> Verdict:
        # The telescope azimuth only sharpens the alarm: without it the restriction still holds.
        wind = readings[:2]
        bad = self.check_inputs(wind, ctx, self.inputs[:2])
        if bad is not None:
            return bad
        speed, direction = (r.value for r in wind if r is not None)
        sev, reason = self.handler.severity(speed, current)
        if sev == AlarmSeverity.NONE:
            return Verdict(sev, reason, attributes={"value": f"{speed:.6g}"})
        sector = sector_around(direction, self.config.half_width_deg)
        reason = f"{reason}; no pointing at azimuth {sector.start_deg:g}°..{sector.end_deg:g}°"
        attrs = {"value": f"{speed:.6g}", "sector": f"{sector.start_deg:g}-{sector.end_deg:g}"}
        az = readings[2] if len(readings) > 2 else None
        if az is not None and az.quality != Quality.BAD and sector.contains(az.value):
            in_sector = AlarmSeverity[self.config.in_sector_severity]
            if in_sector > sev:
                sev = in_sector
                reason = f"{reason}; telescope azimuth {az.value:.1f}° is inside the sector"
        return Verdict(sev, reason, sector=sector, attributes=attrs)
