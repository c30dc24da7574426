"""Shared nights for the planner tests: astropy runs once per session per night, offline."""

from __future__ import annotations

from datetime import date

import pytest

from planner.config import SchedulerConfig, SiteConfig, load_site
from planner.domain.night import NightGrid
from planner.ephemeris import compute_night

# 2025-03-20: a waning gibbous Moon rises mid-night, so Moon-up and Moon-down points both occur.
NIGHT = date(2025, 3, 20)


@pytest.fixture(scope="session")
def site() -> SiteConfig:
    return load_site()


@pytest.fixture(scope="session")
def config() -> SchedulerConfig:
    return SchedulerConfig()


@pytest.fixture(scope="session")
def night(site: SiteConfig, config: SchedulerConfig) -> NightGrid:
    return compute_night(site, NIGHT, config=config)


@pytest.fixture(scope="session")
def fine_night(site: SiteConfig, config: SchedulerConfig) -> NightGrid:
    """The same night on a 1-minute grid: the reference the placements are checked against."""
    return compute_night(site, NIGHT, config=config, step_minutes=1)
