"""Monitoring history queries for the HMI and the CLI: raw, binned, several points, latest, CSV and JSON export."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from config_db.monitoring import MonitoringConfig
from skyops.archive.binning import BinnedSeries
from skyops.archive.port import Archive
from skyops.records import Quality, Sample, SampleBatch, Value
from skyops.timeutil import from_us, require_utc

MAX_RAW_SAMPLES = 1_000_000


@dataclass(frozen=True)
class PointRow:
    """A configured point with its latest archived sample (if any): one line of `skyops points`."""

    name: str
    unit: str
    kind: str
    retention: str
    description: str
    latest: Sample | None


async def points(archive: Archive, config: MonitoringConfig) -> list[PointRow]:
    """Every configured point, with its latest value."""
    latest = await archive.latest([p.name for p in config.points])
    return [PointRow(p.name, p.unit, p.kind, p.retention, p.description, latest.get(p.name)) for p in config.points]


async def raw(archive: Archive, point: str, start: datetime, end: datetime) -> SampleBatch:
    """A point's samples in [start, end), time-sorted."""
    return await archive.raw(point, require_utc(start, what="start"), require_utc(end, what="end"))


async def raw_many(archive: Archive, names: Sequence[str], start: datetime, end: datetime) -> dict[str, SampleBatch]:
    return await archive.raw_many(list(names), require_utc(start, what="start"), require_utc(end, what="end"))


async def binned(archive: Archive, point: str, start: datetime, end: datetime, bins: int) -> BinnedSeries:
    """A point's history in `bins` regular bins (min/max/mean/count/first/last; empty bins are gaps)."""
    return await archive.binned(point, require_utc(start, what="start"), require_utc(end, what="end"), bins)


async def binned_many(archive: Archive, names: Sequence[str], start: datetime, end: datetime,
                      bins: int) -> dict[str, BinnedSeries]:
    return await archive.binned_many(list(names), require_utc(start, what="start"), require_utc(end, what="end"),
                                     bins)


async def latest(archive: Archive, names: Sequence[str] | None = None) -> dict[str, Sample]:
    return await archive.latest(list(names) if names is not None else None)


# --- export -----------------------------------------------------------------------------------
def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def raw_records(series: dict[str, SampleBatch]) -> list[dict[str, Any]]:
    """Rows of point, ISO time, value, quality; several points interleaved in time order."""
    rows: list[tuple[int, str, Value, int]] = []
    for name, batch in series.items():
        vals = batch.values()
        rows.extend(zip([int(t) for t in batch.ts_us], [name] * len(batch), vals,
                        batch.quality.tolist(), strict=True))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [{"point": p, "ts": from_us(t).isoformat(), "value": v, "quality": Quality(q).name}
            for t, p, v, q in rows]


def binned_records(series: dict[str, BinnedSeries]) -> list[dict[str, Any]]:
    """Rows of point, bin start, count, bad count, min, max, mean, first, last (None in a gap)."""
    out: list[dict[str, Any]] = []
    for name, b in series.items():
        cols = {k: getattr(b, k) for k in ("vmin", "vmax", "mean", "first", "last")}
        for i in range(len(b)):
            out.append({
                "point": name, "start": from_us(int(b.edges_us[i])).isoformat(),
                "count": int(b.count[i]), "bad_count": int(b.bad_count[i]),
                "min": _num(cols["vmin"][i]), "max": _num(cols["vmax"][i]), "mean": _num(cols["mean"][i]),
                "first": _num(cols["first"][i]), "last": _num(cols["last"][i]),
            })
    out.sort(key=lambda r: (r["start"], r["point"]))
    return out


def to_csv(records: list[dict[str, Any]]) -> str:
    """CSV with a header row; empty values for gaps and nulls."""
    if not records:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    return buf.getvalue()


def to_json(records: list[dict[str, Any]]) -> str:
    """JSON array (strict: gaps are null, never NaN)."""
    return json.dumps(records, allow_nan=False, ensure_ascii=False)


def edges(series: BinnedSeries) -> list[datetime]:
    return [from_us(int(t)) for t in np.asarray(series.edges_us)]
