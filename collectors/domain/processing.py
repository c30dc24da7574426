"""Per-point processing before the bus: limits → quality, window filter, deadband/duplicate suppression, statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from config_db.monitoring import PointConfig
from skyops.records import Quality, SampleBatch, ValueKind

US_PER_S = 1_000_000
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class ProcessorCounters:
    """What the processor did since it started (for the monitor manager and /metrics)."""

    received: int = 0
    published: int = 0
    suppressed: int = 0
    out_of_limits: int = 0
    unknown_point: int = 0


class PointProcessor:
    """Applies each point's configured processing to batches, keeping per-point state between batches.

    Work is vectorized across points: a batch is cut into "rounds" (the k-th sample of every point),
    and each round is one set of numpy operations, so a batch holding one sample per point — the
    normal shape of a poll — costs a single round whatever the number of points.
    """

    def __init__(self, points: Sequence[PointConfig]) -> None:
        self.names = [p.name for p in points]
        self.index = {name: i for i, name in enumerate(self.names)}
        n = len(points)
        nan = float("nan")
        self.low = np.array([p.limits.low if p.limits.low is not None else -np.inf for p in points])
        self.high = np.array([p.limits.high if p.limits.high is not None else np.inf for p in points])
        self.deadband = np.array([p.processing.deadband for p in points], dtype=np.float64)
        self.dedup = np.array([p.processing.suppress_duplicates for p in points], dtype=bool)
        self.silence_us = np.array([int(p.processing.max_silence_s * US_PER_S) for p in points], dtype=np.int64)
        sizes = [p.processing.window.size if p.processing.window else 0 for p in points]
        self.win_size = np.array(sizes, dtype=np.int64)
        self.win_median = np.array(
            [p.processing.window is not None and p.processing.window.kind == "median" for p in points], dtype=bool
        )
        self.ring = np.full((n, max([1, *sizes])), nan)
        self.ring_pos = np.zeros(n, dtype=np.int64)
        # What was last sent per point: numeric value, (kind, value id) for comparisons, quality, time.
        self.sent_value = np.full(n, nan)
        self.sent_kind = np.full(n, -1, dtype=np.int64)
        self.sent_id = np.zeros(n, dtype=np.int64)
        self.sent_quality = np.full(n, -1, dtype=np.int64)
        self.sent_ts = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)
        self._string_ids: dict[str, int] = {}
        self.counters = ProcessorCounters()

    def process(self, batch: SampleBatch) -> SampleBatch:
        """The samples worth publishing, with filtered values and limit-checked quality."""
        n = len(batch)
        self.counters.received += n
        if not n:
            return batch
        local = self._local(batch.points)
        gidx = local[batch.point_idx]
        known = gidx >= 0
        self.counters.unknown_point += int(n - known.sum())
        order = np.lexsort((batch.ts_us, gidx))
        order = order[known[order]]
        if not len(order):
            return batch.select(np.zeros(0, dtype=np.intp))
        g = gidx[order]
        ts = batch.ts_us[order]
        kind = batch.kind[order].astype(np.int64)
        quality = batch.quality[order].astype(np.int64)
        values = batch.numeric()[order]
        ident = self._value_ids(batch, order, kind)

        numeric = (kind == ValueKind.FLOAT) | (kind == ValueKind.INT)
        outside = numeric & ((values < self.low[g]) | (values > self.high[g]))
        quality = np.where(outside, Quality.BAD, quality)
        self.counters.out_of_limits += int(outside.sum())

        starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
        rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
        send = np.zeros(len(g), dtype=bool)
        out_values = values.copy()
        for r in range(int(rank.max()) + 1):
            rows = np.flatnonzero(rank == r)
            out_values[rows] = self._window(g[rows], values[rows], kind[rows], quality[rows])
            send[rows] = self._decide(g[rows], ts[rows], kind[rows], ident[rows], out_values[rows], quality[rows])

        picked = order[send]
        out = batch.select(picked)
        filtered = (out.kind == ValueKind.FLOAT) & (self.win_size[gidx[picked]] > 0)
        bits = out.bits.copy()
        bits[filtered] = out_values[send][filtered].view(np.int64)
        out = SampleBatch(
            points=out.points, point_idx=out.point_idx, ts_us=out.ts_us, kind=out.kind, bits=bits,
            quality=quality[send].astype(np.uint8), strings=out.strings,
        )
        self.counters.published += len(out)
        self.counters.suppressed += len(g) - len(out)
        return out

    def _local(self, names: tuple[str, ...]) -> I64:
        """Each name's index in the configuration, -1 for names not configured."""
        try:
            # The common case (every name configured) without a Python frame per name.
            return np.fromiter(map(self.index.__getitem__, names), dtype=np.int64, count=len(names))
        except KeyError:
            return np.fromiter((self.index.get(p, -1) for p in names), dtype=np.int64, count=len(names))

    def _value_ids(self, batch: SampleBatch, order: npt.NDArray[np.intp], kind: I64) -> I64:
        """An id per value that is equal exactly when the values are (strings are interned across batches)."""
        ident = batch.bits[order].copy()
        is_str = kind == ValueKind.STR
        if is_str.any():
            table = np.array([self._string_ids.setdefault(s, len(self._string_ids)) for s in batch.strings],
                             dtype=np.int64)
            ident[is_str] = table[ident[is_str]]
        return ident

    def _window(self, g: I64, values: F64, kind: I64, quality: I64) -> F64:
        win = (self.win_size[g] > 0) & (kind == ValueKind.FLOAT) & (quality != Quality.BAD)
        if not win.any():
            return values
        wg = g[win]
        self.ring[wg, self.ring_pos[wg] % self.win_size[wg]] = values[win]
        self.ring_pos[wg] += 1
        out = values.copy()
        rows = self.ring[wg]
        med = self.win_median[wg]
        filt = np.empty(len(wg))
        if med.any():
            filt[med] = np.nanmedian(rows[med], axis=1)
        if (~med).any():
            filt[~med] = np.nanmean(rows[~med], axis=1)
        out[win] = filt
        return out

    def _decide(self, g: I64, ts: I64, kind: I64, ident: I64, values: F64, quality: I64) -> npt.NDArray[np.bool_]:
        changed_kind = (kind != self.sent_kind[g]) | (quality != self.sent_quality[g])
        silent = ts - self.sent_ts[g] >= self.silence_us[g]
        db = self.deadband[g]
        numeric = (kind == ValueKind.FLOAT) | (kind == ValueKind.INT)
        moved = np.where(
            numeric & (db > 0),
            np.abs(values - self.sent_value[g]) >= db,
            np.where(numeric, values != self.sent_value[g], ident != self.sent_id[g]),
        )
        send: npt.NDArray[np.bool_] = changed_kind | silent | moved | ~self.dedup[g]
        # Out-of-order or repeated timestamps never go out twice.
        send &= ts > self.sent_ts[g]
        sg = g[send]
        self.sent_value[sg] = values[send]
        self.sent_kind[sg] = kind[send]
        self.sent_id[sg] = ident[send]
        self.sent_quality[sg] = quality[send]
        self.sent_ts[sg] = ts[send]
        return send


@dataclass(frozen=True)
class PointStatistics:
    """Statistics of one point over a batch (usable samples only for the value statistics)."""

    count: int
    bad: int
    min: float
    max: float
    mean: float
    std: float


def statistics(batch: SampleBatch) -> dict[str, PointStatistics]:
    """Count, BAD count, min, max, mean and standard deviation per point, in one pass of bincounts."""
    if not len(batch):
        return {}
    m = len(batch.points)
    idx = batch.point_idx.astype(np.int64)
    usable = batch.usable()
    v = np.where(usable, batch.numeric(), 0.0)
    count = np.bincount(idx, minlength=m)
    bad = np.bincount(idx, weights=batch.quality == Quality.BAD, minlength=m)
    n = np.bincount(idx, weights=usable, minlength=m)
    s = np.bincount(idx, weights=v, minlength=m)
    ss = np.bincount(idx, weights=v * v, minlength=m)
    vmin = np.full(m, np.inf)
    vmax = np.full(m, -np.inf)
    np.minimum.at(vmin, idx[usable], v[usable])
    np.maximum.at(vmax, idx[usable], v[usable])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    out: dict[str, PointStatistics] = {}
    for i, name in enumerate(batch.points):
        if count[i] == 0:
            continue
        has = n[i] > 0
        out[name] = PointStatistics(
            count=int(count[i]), bad=int(bad[i]),
            min=float(vmin[i]) if has else float("nan"), max=float(vmax[i]) if has else float("nan"),
            mean=float(mean[i]) if has else float("nan"), std=float(std[i]) if has else float("nan"),
        )
    return out
