"""The SOXS scheduler over the tonight bucket: a priority pass at 1-minute resolution, then the gap filler."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from planner.config import SchedulerConfig
from planner.domain.night import FloatArray, NightGrid
from planner.domain.observability import (
    BoolArray,
    IntArray,
    Observability,
    ObTable,
    altaz_deg,
    apparent_radec,
)


@dataclass(frozen=True)
class Sector:
    """Forbidden azimuths from `start_deg` clockwise to `end_deg` (may wrap through north)."""

    start_deg: float
    end_deg: float

    def contains(self, az_deg: FloatArray) -> BoolArray:
        az = np.asarray(az_deg) % 360.0
        if self.start_deg <= self.end_deg:
            return (az >= self.start_deg) & (az <= self.end_deg)
        return (az >= self.start_deg) | (az <= self.end_deg)


@dataclass(frozen=True)
class Conditions:
    """What the night currently forbids, from the active alarm consequences."""

    dome_closed: bool = False
    sectors: tuple[Sector, ...] = ()
    seeing_limit_arcsec: float | None = None


@dataclass(frozen=True)
class Block:
    """One OB placed in the night: minutes [start, end) of the night, after `slew_min` minutes of slewing."""

    row: int
    start_min: int
    end_min: int
    slew_min: int = 0
    interrupted: bool = False  # cut short by a re-plan; the OB is still to be observed


class SlewModel:
    """Slew time from the angle between two targets: settle time plus distance over a constant rate."""

    def __init__(self, unit_vectors: FloatArray, *, rate_deg_s: float, settle_s: float) -> None:
        self._units = unit_vectors
        self._rate = rate_deg_s
        self._settle = settle_s

    def minutes_from(self, row: int | None, rows: IntArray) -> IntArray:
        """Whole minutes to slew from `row` to each of `rows` (0 with no previous pointing)."""
        if row is None:
            return np.zeros(rows.shape[0], dtype=np.int64)
        cos_sep = np.clip(self._units[rows] @ self._units[row], -1.0, 1.0)
        seconds = self._settle + np.degrees(np.arccos(cos_sep)) / self._rate
        minutes: IntArray = np.ceil(seconds / 60.0 - 1e-9).astype(np.int64)
        return minutes

    def minutes(self, a: int | None, b: int | None) -> int:
        if a is None or b is None:
            return 0
        return int(self.minutes_from(a, np.asarray([b], dtype=np.int64))[0])


class Timeline:
    """The placed blocks in time order; consecutive blocks are separated by at least their slew."""

    def __init__(self, blocks: list[Block] | None = None) -> None:
        ordered = sorted(blocks or [], key=lambda b: b.start_min)
        self.starts = [b.start_min for b in ordered]
        self.blocks = ordered

    def add(self, block: Block) -> None:
        i = bisect.bisect_left(self.starts, block.start_min)
        self.starts.insert(i, block.start_min)
        self.blocks.insert(i, block)

    def neighbours(self, minute: int) -> tuple[Block | None, Block | None, Block | None]:
        """The block ending at or before `minute`, the one holding it, and the first starting after it."""
        i = bisect.bisect_right(self.starts, minute) - 1
        after = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
        if i < 0:
            return None, None, after
        if self.blocks[i].end_min > minute:
            return (self.blocks[i - 1] if i >= 1 else None), self.blocks[i], after
        return self.blocks[i], None, after

    def busy(self, n_minutes: int) -> BoolArray:
        out = np.zeros(n_minutes, dtype=bool)
        for b in self.blocks:
            out[b.start_min : b.end_min] = True
        return out


class NightContext:
    """The cached per-night arrays every (re-)plan reuses: minute-resolution observability and scores."""

    def __init__(
        self,
        night: NightGrid,
        table: ObTable,
        obs: Observability,
        config: SchedulerConfig,
        *,
        base: NightContext | None = None,
    ) -> None:
        """`base`: the context of this night for the first rows of `table` (an OB was added): its arrays are
        reused, so adding a ToO costs only its own row."""
        self.night = night
        self.table = table
        self.obs = obs
        self.config = config
        k = night.slot_minutes
        self.n_minutes = night.n_minutes
        first = 0 if base is None else len(base.table)
        allowed = np.repeat(obs.cells[first:], k, axis=1)  # (n, M)
        score = np.repeat(obs.cell_score[first:], k, axis=1)
        self.allowed: BoolArray = allowed if base is None else np.concatenate([base.allowed, allowed])
        self.minute_score: FloatArray = score if base is None else np.concatenate([base.minute_score, score])
        self.duration = np.ceil((table.exposure_s + config.overhead_s) / 60.0 - 1e-9).astype(np.int64)
        self.slew = SlewModel(table.unit_vectors(), rate_deg_s=config.slew_rate_deg_s, settle_s=config.slew_settle_s)
        self._apparent: tuple[FloatArray, FloatArray] | None = None
        # Minute azimuths, filled row by row the first time a forbidden sector needs them.
        self._az = np.empty((len(table), self.n_minutes + 1), dtype=np.float64)
        self._az_done = np.zeros(len(table), dtype=bool)
        if base is not None:
            self._az[:first] = base._az
            self._az_done[:first] = base._az_done

    def apparent(self) -> tuple[FloatArray, FloatArray]:
        if self._apparent is None:
            self._apparent = apparent_radec(self.table, self.night)
        return self._apparent

    def minute_altaz(self, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        """Altitude and azimuth of `rows` at every minute boundary of the night, shape (len(rows), M + 1)."""
        ra, dec = self.apparent()
        unix = self.night.start_unix + 60.0 * np.arange(self.n_minutes + 1, dtype=np.float64)
        return altaz_deg(ra[rows], dec[rows], self.night.era_at(unix), self.night)

    def minute_azimuth(self, rows: IntArray) -> FloatArray:
        """Azimuths of `rows` at every minute boundary, computed once per OB and night."""
        missing = rows[~self._az_done[rows]]
        if missing.size:
            _, az = self.minute_altaz(missing)
            self._az[missing] = az
            self._az_done[missing] = True
        return self._az[rows]

    def allowed_under(self, conditions: Conditions, rows: IntArray) -> BoolArray:
        """Minute observability of `rows` under the current conditions (dome, seeing, forbidden sectors)."""
        allowed = self.allowed[rows].copy()
        if conditions.dome_closed:
            allowed[:] = False
            return allowed
        if conditions.seeing_limit_arcsec is not None:
            allowed &= (self.table.max_seeing[rows] >= conditions.seeing_limit_arcsec)[:, None]
        if conditions.sectors:
            candidates = np.flatnonzero(allowed.any(axis=1))
            if candidates.size:
                az = self.minute_azimuth(rows[candidates])
                inside = np.zeros(az.shape, dtype=bool)
                for sector in conditions.sectors:
                    inside |= sector.contains(az)
                # A minute is usable only if the azimuth is outside at both of its ends.
                allowed[candidates] &= ~(inside[:, :-1] | inside[:, 1:])
        return allowed


@dataclass
class _Work:
    """One scheduling run's mutable state: the rows still to place, their minute arrays and the timeline."""

    ctx: NightContext
    rows: IntArray  # bucket rows still to place, bucket order
    allowed: BoolArray  # (len(rows), M) indexed by position in `rows`
    cumsum: IntArray  # (len(rows), M + 1)
    alive: BoolArray  # (len(rows),)
    timeline: Timeline
    from_min: int

    def window_ok(self, pos: IntArray, start: IntArray) -> BoolArray:
        dur = self.ctx.duration[self.rows[pos]]
        end = start + dur
        inside = (start >= self.from_min) & (end <= self.ctx.n_minutes)
        s = np.clip(start, 0, self.ctx.n_minutes)
        e = np.clip(end, 0, self.ctx.n_minutes)
        ok: BoolArray = inside & (self.cumsum[pos, e] - self.cumsum[pos, s] == dur)
        return ok

    def place(self, pos: int, start: int) -> None:
        row = int(self.rows[pos])
        self.timeline.add(Block(row=row, start_min=start, end_min=start + int(self.ctx.duration[row])))
        self.alive[pos] = False


def bucket_order(ctx: NightContext, rows: IntArray) -> IntArray:
    """The tonight bucket sorted by score, best first (ties by row for determinism)."""
    return rows[np.lexsort((rows, -ctx.obs.score[rows]))]


def schedule(
    ctx: NightContext,
    *,
    from_min: int = 0,
    kept: list[Block] | None = None,
    candidates: IntArray | None = None,
    conditions: Conditions | None = None,
    first: int | None = None,
) -> list[Block]:
    """Plan minutes [from_min, end of night): ToO `first`, then the priority pass, then the gap filler.

    `kept` blocks (already observed, or running) stay where they are; `candidates` are the rows that may be
    placed (default: the whole tonight bucket).
    """
    cond = conditions or Conditions()
    pool = np.flatnonzero(ctx.obs.in_bucket) if candidates is None else np.asarray(candidates, dtype=np.int64)
    pool = pool[ctx.obs.in_bucket[pool]]
    rows = bucket_order(ctx, pool)
    if first is not None:
        rows = np.concatenate([np.asarray([first], dtype=np.int64), rows[rows != first]])
    allowed = ctx.allowed_under(cond, rows)
    allowed[:, :from_min] = False
    cumsum = np.zeros((rows.shape[0], ctx.n_minutes + 1), dtype=np.int64)
    np.cumsum(allowed, axis=1, out=cumsum[:, 1:])
    work = _Work(
        ctx=ctx,
        rows=rows,
        allowed=allowed,
        cumsum=cumsum,
        alive=np.ones(rows.shape[0], dtype=bool),
        timeline=Timeline(list(kept or [])),
        from_min=from_min,
    )
    if rows.shape[0] and not cond.dome_closed:
        if first is not None:
            _place_earliest(work, 0)
        _priority_pass(work)
        _gap_filler(work)
    return _with_slews(ctx, work.timeline.blocks)


def _place_earliest(work: _Work, pos: int) -> bool:
    """Put the OB at `pos` in the first free minutes it fits (a ToO goes first)."""
    return _place_best(work, pos, earliest=True)


def _priority_pass(work: _Work) -> None:
    ctx = work.ctx
    top = np.flatnonzero(work.alive & (ctx.table.priority[work.rows] <= ctx.config.priority_cutoff))
    # Highest priority first; within a priority the bucket order (score) decides.
    order = top[np.argsort(ctx.table.priority[work.rows[top]], kind="stable")]
    for pos in order:
        _place_best(work, int(pos), earliest=False)


def _place_best(work: _Work, pos: int, *, earliest: bool) -> bool:
    """Place the OB at its best-scoring (or earliest) feasible start, slews to its neighbours included."""
    ctx = work.ctx
    row = int(work.rows[pos])
    dur = int(ctx.duration[row])
    m = ctx.n_minutes
    if dur > m:
        return False
    free = work.allowed[pos] & ~work.timeline.busy(m)
    c = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(free, out=c[1:])
    valid = np.flatnonzero(c[dur:] - c[:-dur] == dur)
    if valid.size == 0:
        return False
    if earliest:
        tries = valid
    else:
        s = np.zeros(m + 1, dtype=np.float64)
        np.cumsum(ctx.minute_score[row], out=s[1:])
        window = (s[valid + dur] - s[valid]) / dur
        tries = valid[np.argsort(-window, kind="stable")]
    for start in tries.tolist():
        before, _, after = work.timeline.neighbours(start)
        prev_row = before.row if before is not None else None
        if before is not None and start - before.end_min < ctx.slew.minutes(prev_row, row):
            continue
        if after is not None and after.start_min - (start + dur) < ctx.slew.minutes(row, after.row):
            continue
        work.place(pos, start)
        return True
    return False


def _gap_filler(work: _Work) -> None:
    """SOXS gap filler: at the first free minute, the best (at its mid-time) of the first N OBs that fit."""
    ctx = work.ctx
    m = ctx.n_minutes
    t = work.from_min
    k = ctx.config.gap_candidates
    while t < m:
        alive = np.flatnonzero(work.alive)
        if alive.size == 0:
            return
        before, holder, after = work.timeline.neighbours(t)
        if holder is not None:
            t = holder.end_min
            continue
        limit = after.start_min if after is not None else m
        rows = work.rows[alive]
        dur = ctx.duration[rows]
        if t + int(dur.min()) > limit:
            t = limit
            continue
        prev_row = before.row if before is not None else None
        start = np.maximum(t, (before.end_min if before is not None else t) + ctx.slew.minutes_from(prev_row, rows))
        end = start + dur
        fits = end <= limit
        if after is not None:
            fits &= end + ctx.slew.minutes_from(after.row, rows) <= limit
        fits &= work.window_ok(alive, start)
        chosen = np.flatnonzero(fits)[:k]
        if chosen.size == 0:
            t += 1
            continue
        mid = np.minimum((start[chosen] + end[chosen]) // 2, m - 1)
        best = int(chosen[int(np.argmax(ctx.minute_score[rows[chosen], mid]))])
        work.place(int(alive[best]), int(start[best]))
        t = int(end[best])


def _with_slews(ctx: NightContext, blocks: list[Block]) -> list[Block]:
    out: list[Block] = []
    prev: int | None = None
    for b in sorted(blocks, key=lambda b: b.start_min):
        out.append(
            Block(
                row=b.row,
                start_min=b.start_min,
                end_min=b.end_min,
                slew_min=ctx.slew.minutes(prev, b.row),
                interrupted=b.interrupted,
            )
        )
        prev = b.row
    return out


def ceil_minute(night: NightGrid, unix_s: float) -> int:
    """The first whole minute of the night at or after `unix_s`, clipped to the night."""
    minute = math.ceil((unix_s - night.start_unix) / 60.0 - 1e-9)
    return min(max(minute, 0), night.n_minutes)
