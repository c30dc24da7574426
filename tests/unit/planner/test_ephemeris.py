"""The night's ephemeris: offline astropy, the night's ends, and clear errors for impossible inputs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from config_db.loader import ConfigError
from planner.config import SchedulerConfig, SiteConfig, load_site
from planner.domain.night import NightGrid
from planner.ephemeris import compute_night

DATA = Path(__file__).resolve().parents[2] / "data" / "planner"


def test_astropy_is_kept_offline(night: NightGrid) -> None:
    from astropy.utils import iers

    assert iers.conf.auto_download is False
    assert iers.conf.auto_max_age is None


def test_the_night_runs_between_the_twilights(night: NightGrid, config: SchedulerConfig) -> None:
    assert np.all(night.sun_alt_deg <= config.night_sun_altitude_deg)
    # One step earlier or later the Sun is above the limit: the grid is the whole night, no more.
    assert night.sun_alt_deg[0] > config.night_sun_altitude_deg - 1.5
    assert night.sun_alt_deg[-1] > config.night_sun_altitude_deg - 1.5
    assert 9 * 60 < night.n_minutes < 11 * 60  # a March night at 29° S
    assert night.dark_cells(config.dark_sun_altitude_deg).sum() * night.slot_minutes > 8 * 60


def test_the_shipped_site_is_the_ntt() -> None:
    site = load_site()

    assert (site.latitude_deg, site.longitude_deg, site.elevation_m) == (-29.2567, -70.7346, 2375)


def test_a_bad_site_file_names_the_file_and_the_fields() -> None:
    with pytest.raises(ConfigError) as info:
        load_site(DATA / "bad_site.yaml")

    message = str(info.value)
    assert "bad_site.yaml" in message
    assert "latitude_deg" in message
    assert "altitude_m" in message


def test_a_night_without_darkness_is_refused() -> None:
    arctic = SiteConfig(name="Svalbard", latitude_deg=78.2, longitude_deg=15.6, elevation_m=500)

    with pytest.raises(ValueError, match="never gets below"):
        compute_night(arctic, date(2025, 6, 21))


def test_seeing_forecast_must_be_positive(night: NightGrid) -> None:
    assert np.all(night.with_seeing(0.8).seeing_arcsec == 0.8)
    with pytest.raises(ValueError, match="seeing_arcsec"):
        night.with_seeing(0.0)
