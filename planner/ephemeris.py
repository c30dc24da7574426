"""astropy, once per night: the night's time grid, Earth orientation, Sun and Moon, offline (no IERS download)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from planner.config import SchedulerConfig, SiteConfig
from planner.domain.night import FloatArray, NightGrid


def configure_offline_astropy() -> None:
    """Keep astropy from reaching the network: use the IERS tables shipped with astropy-iers-data.

    Called by the planner before any astropy work (never at import). Beyond the shipped tables astropy
    degrades to a warning instead of failing, which costs well under a second of time in UT1.
    """
    from astropy.utils import iers  # type: ignore[import-untyped]

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"


def local_noon_utc(site: SiteConfig, night: date) -> datetime:
    """The mean-solar noon at the site on the local date `night` (the day the night starts), in UTC."""
    noon = datetime(night.year, night.month, night.day, 12, tzinfo=UTC)
    return noon - timedelta(hours=site.longitude_deg / 15.0)


def compute_night(
    site: SiteConfig,
    night: date,
    *,
    config: SchedulerConfig | None = None,
    step_minutes: int | None = None,
) -> NightGrid:
    """The grid of the night starting on the local date `night`: every point with the Sun low enough.

    The grid runs from local noon in whole steps, so each night's points are deterministic; it is cut to
    the first and last point where the Sun is at or below `config.night_sun_altitude_deg`.
    """
    configure_offline_astropy()
    import astropy.units as u  # type: ignore[import-untyped]
    import erfa  # type: ignore[import-untyped]
    from astroplan import moon_illumination
    from astropy.coordinates import AltAz, EarthLocation, get_body, get_sun  # type: ignore[import-untyped]
    from astropy.time import Time  # type: ignore[import-untyped]

    cfg = config or SchedulerConfig()
    step_min = step_minutes if step_minutes is not None else cfg.slot_minutes
    noon = local_noon_utc(site, night).replace(second=0, microsecond=0)
    # Local noon to noon, in grid steps: a coarse Sun altitude finds the night's ends.
    n_day = 24 * 60 // step_min + 1
    day_unix = noon.timestamp() + 60.0 * step_min * np.arange(n_day, dtype=np.float64)
    location = EarthLocation(
        lat=site.latitude_deg * u.deg, lon=site.longitude_deg * u.deg, height=site.elevation_m * u.m
    )
    day_times = Time(day_unix, format="unix", scale="utc")
    sun_alt_day = _alt_deg(get_sun(day_times), day_times, location, AltAz)
    night_idx = np.flatnonzero(sun_alt_day <= cfg.night_sun_altitude_deg)
    if night_idx.size < 2:
        raise ValueError(
            f"the Sun never gets below {cfg.night_sun_altitude_deg}° on the night of {night.isoformat()} at {site.name}"
        )
    first, last = int(night_idx[0]), int(night_idx[-1])
    unix = day_unix[first : last + 1]
    times = day_times[first : last + 1]
    sun_alt = sun_alt_day[first : last + 1]

    moon = get_body("moon", times, location=location)
    moon_alt = _alt_deg(moon, times, location, AltAz)
    moon_unit = _unit_vectors(np.asarray(moon.ra.deg), np.asarray(moon.dec.deg))
    illumination = np.asarray(moon_illumination(times), dtype=np.float64)

    middle = times[len(times) // 2]
    gcrs_to_cirs = np.asarray(erfa.c2i06a(middle.tt.jd1, middle.tt.jd2), dtype=np.float64)
    start = times[0]
    era_start = float(erfa.era00(start.ut1.jd1, start.ut1.jd2))

    return NightGrid(
        night=night.isoformat(),
        start_unix=float(unix[0]),
        step_s=60.0 * step_min,
        latitude_rad=math.radians(site.latitude_deg),
        longitude_rad=math.radians(site.longitude_deg),
        era_start_rad=era_start,
        gcrs_to_cirs=gcrs_to_cirs,
        sun_alt_deg=sun_alt,
        moon_alt_deg=moon_alt,
        moon_unit=moon_unit,
        moon_illumination=illumination,
        seeing_arcsec=np.full(unix.shape[0], cfg.default_seeing_arcsec, dtype=np.float64),
    )


def _alt_deg(body: Any, times: Any, location: Any, altaz_frame: Any) -> FloatArray:
    # Pressure 0 (the AltAz default): no refraction, as astroplan's constraints assume.
    frame = altaz_frame(obstime=times, location=location)
    return np.asarray(body.transform_to(frame).alt.deg, dtype=np.float64)


def _unit_vectors(ra_deg: FloatArray, dec_deg: FloatArray) -> FloatArray:
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)
