"""Vectorized observability of every OB at every point of the night, and the SOXS tonight bucket."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from planner.domain.night import FloatArray, NightGrid

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _check(ok: bool, name: str, value: object, problem: str) -> None:
    if not ok:
        raise ValueError(f"{name} {value!r} {problem}")


class Twilight(StrEnum):
    """The brightest sky an OB accepts, by the Sun's altitude."""

    ASTRONOMICAL = "astronomical"
    NAUTICAL = "nautical"
    CIVIL = "civil"

    @property
    def max_sun_altitude_deg(self) -> float:
        return {"astronomical": -18.0, "nautical": -12.0, "civil": -6.0}[self.value]


@dataclass(frozen=True)
class Constraints:
    """An OB's observing constraints (SOXS: airmass, twilight, Moon distance and illumination, seeing)."""

    max_airmass: float = 2.0
    twilight: Twilight = Twilight.NAUTICAL
    min_moon_separation_deg: float = 30.0
    max_moon_illumination: float = 1.0
    max_seeing_arcsec: float = 2.0

    def __post_init__(self) -> None:
        _check(1.0 <= self.max_airmass <= 10.0, "max_airmass", self.max_airmass, "must be between 1 and 10")
        _check(
            0.0 <= self.min_moon_separation_deg <= 180.0,
            "min_moon_separation_deg",
            self.min_moon_separation_deg,
            "must be between 0 and 180",
        )
        _check(
            0.0 <= self.max_moon_illumination <= 1.0,
            "max_moon_illumination",
            self.max_moon_illumination,
            "must be between 0 and 1",
        )
        _check(self.max_seeing_arcsec > 0, "max_seeing_arcsec", self.max_seeing_arcsec, "must be positive")


@dataclass(frozen=True)
class ObRequest:
    """One OB as the scheduler sees it: where, how long, how important, under which constraints."""

    ob_id: str
    ra_deg: float
    dec_deg: float
    exposure_s: float
    priority: int
    constraints: Constraints = field(default_factory=Constraints)
    target_name: str = ""
    name: str = ""
    ob_type: str = "ESO"
    magnitude: float | None = None
    p2_ob_id: int | None = None

    def __post_init__(self) -> None:
        _check(bool(self.ob_id), "ob_id", self.ob_id, "must not be empty")
        _check(0.0 <= self.ra_deg < 360.0, "ra_deg", self.ra_deg, "must be in [0, 360)")
        _check(-90.0 <= self.dec_deg <= 90.0, "dec_deg", self.dec_deg, "must be in [-90, 90]")
        _check(
            math.isfinite(self.exposure_s) and self.exposure_s > 0, "exposure_s", self.exposure_s, "must be positive"
        )
        _check(self.priority >= 1, "priority", self.priority, "must be 1 (highest) or more")


def priority_weight(priority: IntArray | int) -> FloatArray:
    """How much an OB's time counts in the figures of merit: priority 1 counts 1, priority p counts 1/p."""
    return 1.0 / np.asarray(priority, dtype=np.float64)


@dataclass(frozen=True)
class ObTable:
    """OB requests as columns, one row per OB, so every constraint is one numpy expression."""

    requests: tuple[ObRequest, ...]
    ra_deg: FloatArray
    dec_deg: FloatArray
    exposure_s: FloatArray
    priority: IntArray
    max_airmass: FloatArray
    max_sun_alt_deg: FloatArray
    min_moon_sep_deg: FloatArray
    max_moon_illum: FloatArray
    max_seeing: FloatArray

    @classmethod
    def from_requests(cls, requests: Sequence[ObRequest]) -> ObTable:
        ids = [r.ob_id for r in requests]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"ob_id must be unique; repeated: {', '.join(dup[:5])}")

        def col(values: list[float]) -> FloatArray:
            return np.asarray(values, dtype=np.float64)

        return cls(
            requests=tuple(requests),
            ra_deg=col([r.ra_deg for r in requests]),
            dec_deg=col([r.dec_deg for r in requests]),
            exposure_s=col([r.exposure_s for r in requests]),
            priority=np.asarray([r.priority for r in requests], dtype=np.int64),
            max_airmass=col([r.constraints.max_airmass for r in requests]),
            max_sun_alt_deg=col([r.constraints.twilight.max_sun_altitude_deg for r in requests]),
            min_moon_sep_deg=col([r.constraints.min_moon_separation_deg for r in requests]),
            max_moon_illum=col([r.constraints.max_moon_illumination for r in requests]),
            max_seeing=col([r.constraints.max_seeing_arcsec for r in requests]),
        )

    def __len__(self) -> int:
        return len(self.requests)

    def unit_vectors(self) -> FloatArray:
        """ICRS unit vectors, shape (n, 3)."""
        ra = np.radians(self.ra_deg)
        dec = np.radians(self.dec_deg)
        cos_dec = np.cos(dec)
        return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=-1)


def apparent_radec(table: ObTable, night: NightGrid) -> tuple[FloatArray, FloatArray]:
    """CIRS right ascension and declination (rad): precession-nutation by the night's matrix.

    Annual aberration (≤ 20.5″) and light deflection are left out; they move altitudes by < 0.006°.
    """
    cirs = table.unit_vectors() @ night.gcrs_to_cirs.T
    ra = np.arctan2(cirs[:, 1], cirs[:, 0])
    dec = np.arcsin(np.clip(cirs[:, 2], -1.0, 1.0))
    return ra, dec


def altaz_deg(
    ra_rad: FloatArray, dec_rad: FloatArray, era_rad: FloatArray, night: NightGrid
) -> tuple[FloatArray, FloatArray]:
    """Altitude and azimuth (deg, azimuth from north through east) of each target (rows) at each time (columns)."""
    hour_angle = era_rad[None, :] + night.longitude_rad - ra_rad[:, None]
    sin_lat, cos_lat = math.sin(night.latitude_rad), math.cos(night.latitude_rad)
    sin_dec, cos_dec = np.sin(dec_rad)[:, None], np.cos(dec_rad)[:, None]
    cos_ha = np.cos(hour_angle)
    sin_alt = sin_lat * sin_dec + cos_lat * cos_dec * cos_ha
    alt = np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))
    az = np.degrees(np.arctan2(-cos_dec * np.sin(hour_angle), sin_dec * cos_lat - cos_dec * sin_lat * cos_ha)) % 360.0
    return alt, az


def airmass_limit_altitude_deg(max_airmass: FloatArray) -> FloatArray:
    """The altitude at which the plane-parallel airmass sec(z) reaches `max_airmass`."""
    return np.degrees(np.arcsin(1.0 / max_airmass))


@dataclass(frozen=True)
class ConstraintMasks:
    """Each constraint separately, shape (n OBs, n points); True where it is met."""

    altitude_deg: FloatArray
    moon_separation_deg: FloatArray
    airmass: BoolArray
    twilight: BoolArray
    moon_separation: BoolArray
    moon_illumination: BoolArray
    seeing: BoolArray

    def all(self) -> BoolArray:
        return self.airmass & self.twilight & self.moon_separation & self.moon_illumination & self.seeing


def constraint_masks(table: ObTable, night: NightGrid) -> ConstraintMasks:
    """Every constraint of every OB at every grid point, with astroplan's semantics.

    Airmass: 1 ≤ sec(z) ≤ max (so below the horizon fails); twilight: Sun altitude ≤ the OB's limit;
    Moon separation ≥ min; Moon illumination ≤ max or the Moon below the horizon; seeing ≤ max.
    """
    ra, dec = apparent_radec(table, night)
    alt, _ = altaz_deg(ra, dec, night.era_at(night.point_times()), night)
    airmass = alt >= airmass_limit_altitude_deg(table.max_airmass)[:, None]
    twilight = night.sun_alt_deg[None, :] <= table.max_sun_alt_deg[:, None]
    cos_sep = np.clip(table.unit_vectors() @ night.moon_unit.T, -1.0, 1.0)
    moon_sep = np.degrees(np.arccos(cos_sep))
    moon_sep_ok = moon_sep >= table.min_moon_sep_deg[:, None]
    moon_down = night.moon_alt_deg < 0.0
    illum_ok = (night.moon_illumination[None, :] <= table.max_moon_illum[:, None]) | moon_down[None, :]
    seeing_ok = night.seeing_arcsec[None, :] <= table.max_seeing[:, None]
    return ConstraintMasks(
        altitude_deg=alt,
        moon_separation_deg=moon_sep,
        airmass=airmass,
        twilight=twilight,
        moon_separation=moon_sep_ok,
        moon_illumination=illum_ok,
        seeing=seeing_ok,
    )


def longest_true_run(mask: BoolArray) -> IntArray:
    """Length of the longest run of consecutive True along the last axis, per row."""
    n_cols = mask.shape[-1]
    if n_cols == 0:
        return np.zeros(mask.shape[:-1], dtype=np.int64)
    index = np.arange(n_cols, dtype=np.int64)
    last_false = np.maximum.accumulate(np.where(mask, -1, index[None, :]), axis=-1)
    return np.asarray((index[None, :] - last_false).max(axis=-1), dtype=np.int64)


@dataclass(frozen=True)
class Observability:
    """The tonight bucket's arrays: which OB may be observed when, how well, and for how many slots."""

    points: BoolArray  # (n, P) every constraint met at the point
    cells: BoolArray  # (n, P-1) met at both ends of the cell
    cell_score: FloatArray  # (n, P-1) 0 where not observable, else in (0, 1]
    nslots: IntArray  # (n,) grid cells the OB needs (exposure plus overhead, rounded up)
    longest_run: IntArray  # (n,) longest run of observable cells
    score: FloatArray  # (n,) the night's score: priority, scarcity and quality
    in_bucket: BoolArray  # (n,) observable tonight for long enough

    def __len__(self) -> int:
        return int(self.points.shape[0])


def observability(table: ObTable, night: NightGrid, *, overhead_s: float) -> Observability:
    """The SOXS filter: observability arrays, nslots and the score of every OB for the night."""
    masks = constraint_masks(table, night)
    points = masks.all()
    cells = points[:, :-1] & points[:, 1:]
    # Quality at a point: 1 at the zenith, falling linearly to 0.1 at the OB's airmass limit (as astroplan's
    # min_best_rescale), so an observable point never scores 0.
    airmass = 1.0 / np.maximum(np.sin(np.radians(masks.altitude_deg)), 1e-9)
    span = np.maximum(table.max_airmass - 1.0, 1e-9)[:, None]
    quality = 0.1 + 0.9 * np.clip((table.max_airmass[:, None] - airmass) / span, 0.0, 1.0)
    point_score = np.where(points, quality, 0.0)
    cell_score = np.where(cells, 0.5 * (point_score[:, :-1] + point_score[:, 1:]), 0.0)
    nslots = np.ceil((table.exposure_s + overhead_s) / night.step_s).astype(np.int64)
    longest = longest_true_run(cells)
    in_bucket = (longest >= nslots) & (nslots <= night.n_cells)
    n_observable = cells.sum(axis=1)
    mean_quality = np.divide(cell_score.sum(axis=1), n_observable, out=np.zeros(len(table)), where=n_observable > 0)
    # Scarce tonight ranks higher: an OB observable all night can wait for a gap, one that sets soon cannot.
    scarcity = 1.0 - n_observable / max(night.n_cells, 1)
    score = np.where(in_bucket, priority_weight(table.priority) * (0.5 + 0.5 * mean_quality) * (1.0 + scarcity), 0.0)
    return Observability(
        points=points,
        cells=cells,
        cell_score=cell_score,
        nslots=nslots,
        longest_run=longest,
        score=score,
        in_bucket=in_bucket,
    )


def concat_observability(first: Observability, second: Observability) -> Observability:
    """The rows of `first` then those of `second` (each OB's arrays depend only on the OB and the night)."""
    return Observability(
        points=np.concatenate([first.points, second.points]),
        cells=np.concatenate([first.cells, second.cells]),
        cell_score=np.concatenate([first.cell_score, second.cell_score]),
        nslots=np.concatenate([first.nslots, second.nslots]),
        longest_run=np.concatenate([first.longest_run, second.longest_run]),
        score=np.concatenate([first.score, second.score]),
        in_bucket=np.concatenate([first.in_bucket, second.in_bucket]),
    )
