"""The planner's configuration: the observing site and the scheduler's tunables, validated from YAML."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from config_db.loader import default_path, load_model


class SiteConfig(BaseModel):
    """Where the telescope stands (WGS84 geodetic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    elevation_m: float = Field(ge=-500, le=9000)
    timezone: str = "UTC"


class SchedulerConfig(BaseModel):
    """Knobs of the tonight bucket and the scheduler; defaults follow the SOXS paper and the NTT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slot_minutes: int = Field(default=5, ge=1, le=30, description="observability grid step (SOXS: 5 min)")
    night_sun_altitude_deg: float = Field(
        default=-12.0, le=0, description="the plan covers the time the Sun is below this altitude"
    )
    dark_sun_altitude_deg: float = Field(default=-18.0, le=0, description="dark time for the fill metric")
    overhead_s: float = Field(default=300.0, ge=0, description="acquisition and setup added to each exposure")
    slew_rate_deg_s: float = Field(default=1.0, gt=0)
    slew_settle_s: float = Field(default=30.0, ge=0)
    priority_cutoff: int = Field(default=1, ge=0, description="OBs of this priority or better go to the priority pass")
    gap_candidates: int = Field(default=10, ge=1, description="SOXS gap filler: best of the first N that fit")
    default_seeing_arcsec: float = Field(default=1.0, gt=0, description="expected seeing when none is forecast")


def load_site(path: Path | str | None = None) -> SiteConfig:
    """The site from `path`, or the shipped La Silla NTT default."""
    return load_model(path if path is not None else default_path("site.yaml"), SiteConfig)
