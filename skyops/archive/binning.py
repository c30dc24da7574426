"""Aggregates (count, bad count, min, max, sum, sum of squares, first, last) and regular binning, in numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from skyops.records import Quality, SampleBatch
from skyops.timeutil import US_PER_S

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class Resolution(StrEnum):
    """Where a binned query reads from."""

    RAW = "raw"
    MINUTE = "1m"
    HOUR = "1h"

    @property
    def us(self) -> int:
        return {"raw": 1, "1m": 60 * US_PER_S, "1h": 3600 * US_PER_S}[self.value]


@dataclass(frozen=True, eq=False)
class Aggregates:
    """Per-bucket statistics of one point; a row per bucket that holds at least one sample."""

    bucket_us: I64
    count: I64
    bad_count: I64
    vmin: F64
    vmax: F64
    vsum: F64
    vsumsq: F64
    first_us: I64
    first: F64
    last_us: I64
    last: F64

    def __len__(self) -> int:
        return len(self.bucket_us)

    @classmethod
    def empty(cls) -> Aggregates:
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls(i, i, i, f, f, f, f, i, f, i, f)

    @classmethod
    def concat(cls, parts: Sequence[Aggregates]) -> Aggregates:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        names = [f for f in cls.__dataclass_fields__]
        cat = {n: np.concatenate([getattr(p, n) for p in parts]) for n in names}
        order = np.argsort(cat["bucket_us"], kind="stable")
        return cls(**{n: v[order] for n, v in cat.items()})

    def select(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Aggregates:
        return Aggregates(**{n: getattr(self, n)[rows] for n in self.__dataclass_fields__})


def _first_last(keys: I64, ts: I64, vals: F64, usable: npt.NDArray[np.bool_], uniq: I64) -> tuple[I64, F64, I64, F64]:
    """First and last usable value per key (input sorted by key then time)."""
    n = len(uniq)
    first_us = np.zeros(n, np.int64)
    last_us = np.zeros(n, np.int64)
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    u = np.flatnonzero(usable)
    if len(u):
        k = keys[u]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        ends = np.r_[starts[1:], len(k)] - 1
        slot = np.searchsorted(uniq, k[starts])
        first_us[slot], first[slot] = ts[u[starts]], vals[u[starts]]
        last_us[slot], last[slot] = ts[u[ends]], vals[u[ends]]
    return first_us, first, last_us, last


def aggregate(series: SampleBatch, origin_us: int, width_us: int) -> Aggregates:
    """Statistics of one point's time-sorted samples in buckets [origin + k·width, origin + (k+1)·width)."""
    if not len(series):
        return Aggregates.empty()
    ts = series.ts_us
    keys = (ts - origin_us) // width_us
    vals = series.numeric()
    usable = series.usable()
    bad = series.quality == Quality.BAD
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    uniq = keys[starts]
    count = np.add.reduceat(usable.astype(np.int64), starts)
    bad_count = np.add.reduceat(bad.astype(np.int64), starts)
    v0 = np.where(usable, vals, 0.0)
    vsum = np.add.reduceat(v0, starts)
    vsumsq = np.add.reduceat(v0 * v0, starts)
    vmin = np.minimum.reduceat(np.where(usable, vals, np.inf), starts)
    vmax = np.maximum.reduceat(np.where(usable, vals, -np.inf), starts)
    empty = count == 0
    vmin[empty] = np.nan
    vmax[empty] = np.nan
    first_us, first, last_us, last = _first_last(keys, ts, vals, usable, uniq)
    return Aggregates(
        bucket_us=origin_us + uniq * width_us,
        count=count,
        bad_count=bad_count,
        vmin=vmin,
        vmax=vmax,
        vsum=vsum,
        vsumsq=vsumsq,
        first_us=first_us,
        first=first,
        last_us=last_us,
        last=last,
    )


def reaggregate(rows: Aggregates, origin_us: int, width_us: int) -> Aggregates:
    """Merge finer buckets (sorted by time) into coarser ones; each row goes to the bucket of its start."""
    if not len(rows):
        return Aggregates.empty()
    keys = (rows.bucket_us - origin_us) // width_us
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    uniq = keys[starts]
    has = rows.count > 0
    vmin = np.minimum.reduceat(np.where(has, rows.vmin, np.inf), starts)
    vmax = np.maximum.reduceat(np.where(has, rows.vmax, -np.inf), starts)
    count = np.add.reduceat(rows.count, starts)
    empty = count == 0
    vmin[empty] = np.nan
    vmax[empty] = np.nan
    # Within a coarse bucket the finer rows are in time order, so the first/last usable row wins.
    fu, f, _, _ = _first_last(keys, rows.first_us, rows.first, has, uniq)
    _, _, lu, last = _first_last(keys, rows.last_us, rows.last, has, uniq)
    return Aggregates(
        bucket_us=origin_us + uniq * width_us,
        count=count,
        bad_count=np.add.reduceat(rows.bad_count, starts),
        vmin=vmin,
        vmax=vmax,
        vsum=np.add.reduceat(np.where(has, rows.vsum, 0.0), starts),
        vsumsq=np.add.reduceat(np.where(has, rows.vsumsq, 0.0), starts),
        first_us=fu,
        first=f,
        last_us=lu,
        last=last,
    )


@dataclass(frozen=True)
class BinPlan:
    """Which source a binned query reads and the regular bins it reports."""

    resolution: Resolution
    origin_us: int
    width_us: int
    bins: int

    @property
    def end_us(self) -> int:
        return self.origin_us + self.width_us * self.bins


# A binned query reads at most this many aggregate rows per requested bin before it steps up a level.
MAX_ROWS_PER_BIN = 16


def plan_bins(start_us: int, end_us: int, bins: int) -> BinPlan:
    """Choose the coarsest-needed source and bins aligned to it, never more than `bins` of them.

    Ranges whose bins are under a minute read raw blocks; longer ones read 1-minute, then 1-hour
    aggregates, so weeks of history never touch raw data. Aggregate-backed bins start on a bucket
    boundary (the first bin may begin up to one bucket before `start`).
    """
    if bins < 1:
        raise ValueError("the number of bins must be at least 1")
    if end_us <= start_us:
        raise ValueError("the end of the range must be after its start")
    span = end_us - start_us
    want = math.ceil(span / bins)
    if want < Resolution.MINUTE.us:
        res = Resolution.RAW
    elif span / Resolution.MINUTE.us <= MAX_ROWS_PER_BIN * bins:
        res = Resolution.MINUTE
    else:
        res = Resolution.HOUR
    origin = start_us - (start_us % res.us)
    width = max(res.us, math.ceil(want / res.us) * res.us)
    n = math.ceil((end_us - origin) / width)
    while n > bins:  # aligning the origin down can cost one bin; widen until it fits
        width += res.us
        n = math.ceil((end_us - origin) / width)
    return BinPlan(resolution=res, origin_us=origin, width_us=width, bins=n)


@dataclass(frozen=True, eq=False)
class BinnedSeries:
    """A point's history in regular bins; bins without a usable sample are gaps (NaN statistics)."""

    point: str
    resolution: Resolution
    edges_us: I64
    width_us: int
    count: I64
    bad_count: I64
    vmin: F64
    vmax: F64
    mean: F64
    first: F64
    last: F64

    @property
    def gap(self) -> npt.NDArray[np.bool_]:
        gap: npt.NDArray[np.bool_] = self.count == 0
        return gap

    def __len__(self) -> int:
        return len(self.edges_us)


def to_bins(point: str, plan: BinPlan, rows: Aggregates) -> BinnedSeries:
    """Spread aggregate rows (or raw-level aggregates) over the plan's regular bins, gaps included."""
    merged = reaggregate(rows.select((rows.bucket_us >= plan.origin_us) & (rows.bucket_us < plan.end_us)),
                         plan.origin_us, plan.width_us)
    n = plan.bins
    slot = (merged.bucket_us - plan.origin_us) // plan.width_us
    count = np.zeros(n, np.int64)
    bad = np.zeros(n, np.int64)
    out = {name: np.full(n, np.nan) for name in ("vmin", "vmax", "mean", "first", "last")}
    count[slot] = merged.count
    bad[slot] = merged.bad_count
    out["vmin"][slot] = merged.vmin
    out["vmax"][slot] = merged.vmax
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"][slot] = np.where(merged.count > 0, merged.vsum / merged.count, np.nan)
    out["first"][slot] = merged.first
    out["last"][slot] = merged.last
    return BinnedSeries(
        point=point,
        resolution=plan.resolution,
        edges_us=plan.origin_us + np.arange(n, dtype=np.int64) * plan.width_us,
        width_us=plan.width_us,
        count=count,
        bad_count=bad,
        **out,
    )
