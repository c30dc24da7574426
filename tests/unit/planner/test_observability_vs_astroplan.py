"""The vectorized observability agrees with astroplan's constraints, cell for cell, on the same inputs."""

from __future__ import annotations

import itertools

import astropy.units as u
import numpy as np
import numpy.typing as npt
import pytest
from astroplan import (
    AirmassConstraint,
    AtNightConstraint,
    FixedTarget,
    MoonIlluminationConstraint,
    MoonSeparationConstraint,
    Observer,
)
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time

from planner.config import SiteConfig
from planner.domain.night import NightGrid
from planner.domain.observability import (
    Constraints,
    ObRequest,
    ObTable,
    Twilight,
    airmass_limit_altitude_deg,
    constraint_masks,
)

# Our altitudes and Moon distances leave out annual aberration and light deflection (≤ 20.5″ ≈ 0.0057°,
# measured below). A cell may therefore disagree only where the true value is within 0.02° of the limit:
# 3.5× that error, and 0.5 % of the 5-minute altitude change of a target on the celestial equator (1.25°).
BOUNDARY_DEG = 0.02

# astroplan's MoonSeparationConstraint measures in the Moon's GCRS frame, as we do; astropy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::astropy.coordinates.NonRotationTransformationWarning")
AIRMASSES = (1.3, 1.5, 2.0, 2.9)
TWILIGHTS = tuple(Twilight)
MOON_SEPARATIONS = (5.0, 30.0, 60.0, 90.0)
ILLUMINATIONS = (0.3, 0.62, 1.0)


@pytest.fixture(scope="module")
def table() -> ObTable:
    rng = np.random.default_rng(20250320)
    combos = list(itertools.product(AIRMASSES, TWILIGHTS, MOON_SEPARATIONS, ILLUMINATIONS))
    requests = []
    for i in range(240):
        airmass, twilight, separation, illumination = combos[i % len(combos)]
        requests.append(
            ObRequest(
                ob_id=f"ob{i}",
                ra_deg=float(rng.uniform(0.0, 360.0)),
                dec_deg=float(np.degrees(np.arcsin(rng.uniform(-1.0, 0.6)))),
                exposure_s=600.0,
                priority=1,
                constraints=Constraints(
                    max_airmass=airmass,
                    twilight=twilight,
                    min_moon_separation_deg=separation,
                    max_moon_illumination=illumination,
                ),
            )
        )
    return ObTable.from_requests(requests)


@pytest.fixture(scope="module")
def astroplan_inputs(site: SiteConfig, night: NightGrid) -> tuple[Observer, Time]:
    location = EarthLocation(
        lat=site.latitude_deg * u.deg, lon=site.longitude_deg * u.deg, height=site.elevation_m * u.m
    )
    return Observer(location=location), Time(night.point_times(), format="unix", scale="utc")


def _targets(table: ObTable) -> list[FixedTarget]:
    return [FixedTarget(SkyCoord(ra * u.deg, dec * u.deg)) for ra, dec in zip(table.ra_deg, table.dec_deg, strict=True)]


def _per_ob(
    values: npt.NDArray[np.float64], make: object, observer: Observer, times: Time, targets: list[FixedTarget]
) -> npt.NDArray[np.bool_]:
    """astroplan's mask for each OB with its own limit: one constraint per distinct limit, rows picked."""
    out = np.zeros((len(targets), len(times)), dtype=bool)
    for value in np.unique(values):
        constraint = make(value)  # type: ignore[operator]
        mask = np.asarray(constraint(observer, targets, times=times, grid_times_targets=True), dtype=bool)
        rows = values == value
        out[rows] = mask[rows]
    return out


def test_altitudes_match_astropy_within_the_aberration(
    table: ObTable, night: NightGrid, astroplan_inputs: tuple[Observer, Time]
) -> None:
    observer, times = astroplan_inputs
    targets = _targets(table)
    reference = np.asarray(observer.altaz(times, targets, grid_times_targets=True).alt.deg)

    ours = constraint_masks(table, night).altitude_deg

    assert np.abs(ours - reference).max() < 0.0065


def test_every_constraint_agrees_with_astroplan_cell_for_cell(
    table: ObTable, night: NightGrid, astroplan_inputs: tuple[Observer, Time]
) -> None:
    observer, times = astroplan_inputs
    targets = _targets(table)
    ours = constraint_masks(table, night)

    airmass = _per_ob(table.max_airmass, lambda v: AirmassConstraint(max=v), observer, times, targets)
    twilight = _per_ob(
        table.max_sun_alt_deg, lambda v: AtNightConstraint(max_solar_altitude=v * u.deg), observer, times, targets
    )
    moon_sep = _per_ob(
        table.min_moon_sep_deg, lambda v: MoonSeparationConstraint(min=v * u.deg), observer, times, targets
    )
    illumination = _per_ob(table.max_moon_illum, lambda v: MoonIlluminationConstraint(max=v), observer, times, targets)

    # The Sun, the Moon's altitude and its illumination come from the same astropy calls: exact agreement.
    np.testing.assert_array_equal(ours.twilight, twilight)
    np.testing.assert_array_equal(ours.moon_illumination, illumination)
    # Target positions differ by the aberration: only cells at the limit may differ.
    near_airmass_limit = (
        np.abs(ours.altitude_deg - airmass_limit_altitude_deg(table.max_airmass)[:, None]) < BOUNDARY_DEG
    )
    near_moon_limit = np.abs(ours.moon_separation_deg - table.min_moon_sep_deg[:, None]) < BOUNDARY_DEG
    assert not np.any((ours.airmass != airmass) & ~near_airmass_limit)
    assert not np.any((ours.moon_separation != moon_sep) & ~near_moon_limit)
    # The whole observability array, too, and the test exercises both outcomes of every constraint.
    combined = airmass & twilight & moon_sep & illumination & ours.seeing
    boundary = near_airmass_limit | near_moon_limit
    assert not np.any((ours.all() != combined) & ~boundary)
    assert boundary.mean() < 0.002
    for mask in (airmass, twilight, moon_sep, illumination, combined):
        assert mask.any()
        assert not mask.all()
