"""One night's ephemeris as plain numpy arrays: the time grid, Earth rotation, the Sun, the Moon and the seeing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Earth rotation angle advances at this rate per SI second of UT1 (IERS 2003 conventions, erfa.era00).
ERA_RATE_RAD_S = 2.0 * math.pi * 1.00273781191135448 / 86_400.0


@dataclass(frozen=True)
class NightGrid:
    """Everything per night that needs astropy, computed once; the rest of the planner is numpy on top.

    Points are the grid instants `start_unix + k * step_s`, k = 0..n_points-1; cell k is the time between
    points k and k+1. Targets are turned to the apparent (CIRS) frame with one matrix for the whole
    night, and hour angles come from the Earth rotation angle, which is linear in time.
    """

    night: str
    start_unix: float
    step_s: float
    latitude_rad: float
    longitude_rad: float
    era_start_rad: float
    gcrs_to_cirs: FloatArray  # (3, 3)
    sun_alt_deg: FloatArray  # (P,)
    moon_alt_deg: FloatArray  # (P,)
    moon_unit: FloatArray  # (P, 3) apparent topocentric direction of the Moon (GCRS)
    moon_illumination: FloatArray  # (P,) fraction 0..1
    seeing_arcsec: FloatArray = field(default_factory=lambda: np.empty(0))  # (P,) expected seeing

    def __post_init__(self) -> None:
        n = self.sun_alt_deg.shape[0]
        if n < 2:
            raise ValueError("a night grid needs at least two points")
        for name in ("moon_alt_deg", "moon_illumination"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have one value per grid point ({n})")
        if self.moon_unit.shape != (n, 3):
            raise ValueError(f"moon_unit must have shape ({n}, 3)")
        if self.seeing_arcsec.shape != (n,):
            raise ValueError(f"seeing_arcsec must have one value per grid point ({n})")
        if self.step_s <= 0 or self.step_s % 60:
            raise ValueError("step_s must be a positive whole number of minutes")

    @property
    def n_points(self) -> int:
        return int(self.sun_alt_deg.shape[0])

    @property
    def n_cells(self) -> int:
        return self.n_points - 1

    @property
    def slot_minutes(self) -> int:
        return int(self.step_s // 60)

    @property
    def n_minutes(self) -> int:
        return self.n_cells * self.slot_minutes

    @property
    def end_unix(self) -> float:
        return self.start_unix + self.n_cells * self.step_s

    def point_times(self) -> FloatArray:
        """Unix seconds of every grid point."""
        return self.start_unix + self.step_s * np.arange(self.n_points, dtype=np.float64)

    def era_at(self, unix_s: FloatArray) -> FloatArray:
        """Earth rotation angle (rad) at the given unix times of this night."""
        return self.era_start_rad + ERA_RATE_RAD_S * (np.asarray(unix_s, dtype=np.float64) - self.start_unix)

    def with_seeing(self, seeing_arcsec: FloatArray | float) -> NightGrid:
        """The same night with another seeing forecast (a constant or one value per point)."""
        values = np.broadcast_to(np.asarray(seeing_arcsec, dtype=np.float64), (self.n_points,)).copy()
        if np.any(values <= 0) or not np.all(np.isfinite(values)):
            raise ValueError("seeing_arcsec must be positive and finite")
        return replace(self, seeing_arcsec=values)

    def dark_cells(self, dark_sun_altitude_deg: float) -> npt.NDArray[np.bool_]:
        """Cells whose both ends have the Sun below the dark-time altitude."""
        dark = self.sun_alt_deg <= dark_sun_altitude_deg
        return dark[:-1] & dark[1:]
