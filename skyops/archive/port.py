"""The archive port: one interface for monitoring samples, aggregates, latest values, logs and alarm history."""

from __future__ import annotations

import abc
import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyops.archive.binning import (
    Aggregates,
    BinnedSeries,
    Resolution,
    aggregate,
    plan_bins,
    reaggregate,
    to_bins,
)
from skyops.archive.blocks import Chunk, check_block_seconds, chunk_sorted, unpack
from skyops.errors import InvalidRecordError, UnknownPointError
from skyops.records import K_STR, AlarmEvent, LogBatch, LogRecord, Sample, SampleBatch, check_point_name
from skyops.timeutil import US_PER_DAY, US_PER_S, from_us, to_us

log = logging.getLogger(__name__)

HOUR_US = 3600 * US_PER_S
MINUTE_US = 60 * US_PER_S
# (point, ts_us, kind, bits, quality, text) — a point's newest sample in the columns of the `latest` table.
LatestRow = tuple[str, int, int, int, int, str | None]
LOG_SHARDS = 4


class RetentionClass(BaseModel):
    """How long raw samples of a class of points are kept, and the length of their packed blocks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}$")
    ttl: timedelta = Field(description="raw samples expire after this long")
    block_seconds: int = Field(default=60, description="one packed row per point per block")

    @field_validator("block_seconds")
    @classmethod
    def _divides_day(cls, v: int) -> int:
        return check_block_seconds(v)

    @field_validator("ttl")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("retention must be positive")
        return v


DEFAULT_RETENTION: tuple[RetentionClass, ...] = (
    RetentionClass(name="short", ttl=timedelta(days=7), block_seconds=10),
    RetentionClass(name="standard", ttl=timedelta(days=90), block_seconds=60),
    RetentionClass(name="long", ttl=timedelta(days=3650), block_seconds=60),
)
AGGREGATE_TTL = {Resolution.MINUTE: timedelta(days=400), Resolution.HOUR: None}


def log_record_id(r: LogRecord) -> int:
    """A content digest: a replayed log record lands on its own row instead of a new one."""
    return log_id_of(r.ts_us, r.source, r.component, r.host, r.level, r.message)


def log_id_of(ts_us: int, source: str, component: str, host: str, level: int, message: str) -> int:
    """`log_record_id` from the fields (each followed by 0x1f, hashed in one call: same digest, less work)."""
    text = f"{ts_us}\x1f{source}\x1f{component}\x1f{host}\x1f{level}\x1f{message}\x1f"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def log_ids(batch: LogBatch) -> npt.NDArray[np.int64]:
    """`log_record_id` of every record of a batch."""
    ids = map(log_id_of, batch.ts_us.tolist(), batch.source, batch.component, batch.host, batch.level.tolist(),
              batch.message)
    return np.fromiter(ids, np.int64, len(batch))


@dataclass(frozen=True)
class LogQuery:
    """What the log search asks for; every filter is optional except the time range."""

    start: datetime
    end: datetime
    min_level: int = 0
    sources: tuple[str, ...] | None = None
    hosts: tuple[str, ...] | None = None
    components: tuple[str, ...] | None = None
    text: str | None = None
    regex: str | None = None
    newest_first: bool = True
    limit: int = 500
    cursor: str | None = None
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if to_us(self.end, what="query end") <= to_us(self.start, what="query start"):
            raise InvalidRecordError("the log query's end must be after its start")
        if not 1 <= self.limit <= 100_000:
            raise InvalidRecordError("the log query's limit must be between 1 and 100000")
        if self.regex is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except re.error as exc:
                raise InvalidRecordError(f"bad regular expression {self.regex!r}: {exc}") from None
        if self.cursor is not None:
            decode_cursor(self.cursor)

    def matches(self, r: LogRecord) -> bool:
        return self.matches_fields(r.level, r.source, r.component, r.host, r.message)

    def matches_fields(self, level: int, source: str, component: str, host: str, message: str) -> bool:
        """`matches` on raw column values, so adapters can drop rows before building records."""
        if level < self.min_level:
            return False
        if self.sources is not None and source not in self.sources:
            return False
        if self.hosts is not None and host not in self.hosts:
            return False
        if self.components is not None and component not in self.components:
            return False
        if self.text is not None and self.text.lower() not in message.lower():
            return False
        return self._pattern is None or self._pattern.search(message) is not None


def encode_cursor(ts_us: int, rid: int) -> str:
    return base64.urlsafe_b64encode(f"{ts_us}:{rid}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        ts, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        return int(ts), int(rid)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRecordError(f"bad log cursor {cursor!r}") from None


@dataclass(frozen=True)
class LogPage:
    records: list[LogRecord]
    next_cursor: str | None


def page_logs(rows: Iterable[tuple[int, int, LogRecord]], q: LogQuery) -> LogPage:
    """Apply the query's filters and cursor to rows already in the query's order."""
    after = decode_cursor(q.cursor) if q.cursor else None
    out: list[tuple[int, int, LogRecord]] = []
    for ts, rid, rec in rows:
        if after is not None:
            key = (ts, rid)
            if (q.newest_first and key >= after) or (not q.newest_first and key <= after):
                continue
        if not q.matches(rec):
            continue
        out.append((ts, rid, rec))
        if len(out) > q.limit:
            break
    more = len(out) > q.limit
    out = out[: q.limit]
    cursor = encode_cursor(out[-1][0], out[-1][1]) if more and out else None
    return LogPage(records=[r for _, _, r in out], next_cursor=cursor)


def hours_between(start_us: int, end_us: int) -> range:
    return range(start_us // HOUR_US, (end_us - 1) // HOUR_US + 1)


class Archive(abc.ABC):
    """Shared behaviour of every archive adapter; adapters only move rows in and out of storage.

    Raw samples are stored as content-keyed packed chunks, so re-writing a batch is idempotent and a
    read de-duplicates by timestamp. The 1-minute aggregates are recomputed from raw data for every minute a
    write touched, and each touched hour is merged anew from its minute rows (`flush_aggregates`), which keeps
    them exact under replays while a flush reads only the minutes written since the last one.
    """

    def __init__(
        self,
        *,
        points: Mapping[str, str] | None = None,
        retention: Sequence[RetentionClass] = DEFAULT_RETENTION,
        max_in_flight: int = 64,
    ) -> None:
        self.retention = {r.name: r for r in retention}
        self._points: dict[str, str] = {}
        self._dirty: dict[str, set[int]] = {}  # point → minutes (ts_us // MINUTE_US) written since the last flush
        self._max_in_flight = max_in_flight
        if points:
            self.register_points(points)

    # --- points -------------------------------------------------------------------------------
    def register_points(self, points: Mapping[str, str]) -> None:
        """Tell the archive which points exist and their retention class (config changes call this)."""
        for name, cls in points.items():
            check_point_name(name)
            if cls not in self.retention:
                raise InvalidRecordError(
                    f"point {name}: unknown retention class {cls!r} (known: {', '.join(self.retention)})"
                )
        self._points.update(points)

    def known_points(self) -> dict[str, str]:
        return dict(self._points)

    def _class_of(self, point: str) -> RetentionClass:
        try:
            return self.retention[self._points[point]]
        except KeyError:
            raise UnknownPointError([point]) from None

    def retention_of(self, point: str) -> RetentionClass:
        """The retention class of a known point (its block length tells writers how to batch it)."""
        return self._class_of(point)

    # --- lifecycle ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if it is missing."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """One cheap round trip to the storage; raises when it does not answer (health checks)."""

    async def __aenter__(self) -> Archive:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- adapter primitives -------------------------------------------------------------------
    @abc.abstractmethod
    async def _write_chunks(self, cls: RetentionClass, chunks: Sequence[Chunk]) -> None: ...

    @abc.abstractmethod
    async def _read_chunks(self, cls: RetentionClass, point: str, start_us: int, end_us: int) -> list[Chunk]:
        """Chunks of `point` that may hold samples in [start, end) (a chunk never spans a block)."""

    @abc.abstractmethod
    async def _write_latest(self, latest: Sequence[LatestRow]) -> None:
        """Keep, per point, whichever sample is newest, whatever order writes arrive in."""

    @abc.abstractmethod
    async def _read_latest(self, points: Sequence[str] | None) -> list[Sample]: ...

    @abc.abstractmethod
    async def _write_aggregates(self, res: Resolution, point: str, rows: Aggregates) -> None: ...

    @abc.abstractmethod
    async def _read_aggregates(self, res: Resolution, point: str, start_us: int, end_us: int) -> Aggregates: ...

    @abc.abstractmethod
    async def write_logs(self, records: Sequence[LogRecord]) -> None:
        """Store log records; a record written twice is stored once."""

    async def write_log_batch(self, batch: LogBatch) -> None:
        """`write_logs` from columns (what the log consumer holds); adapters override it to skip the records."""
        await self.write_logs(batch.records())

    @abc.abstractmethod
    async def query_logs(self, query: LogQuery) -> LogPage: ...

    @abc.abstractmethod
    async def write_alarm_events(self, events: Sequence[AlarmEvent]) -> None:
        """Store alarm transitions and operator actions (idempotent by alarm, time and sequence)."""

    @abc.abstractmethod
    async def alarm_history(
        self, *, start: datetime, end: datetime, alarm_id: str | None = None, limit: int = 1000
    ) -> list[AlarmEvent]:
        """Events newest first, for one alarm or for all."""

    # --- samples ------------------------------------------------------------------------------
    async def write_samples(self, batch: SampleBatch, *, latest: bool = True) -> None:
        """Archive a batch: packed blocks, latest values, and the aggregates marked for recomputation.

        Unknown points refuse the whole batch before anything is written. `latest=False` leaves the
        latest values to the caller (`write_latest`), e.g. a writer that holds samples back to pack
        fuller blocks but keeps the latest values current.
        """
        if not len(batch):
            return
        self._check_known(batch)
        b = batch.dedupe_sorted()
        classes = [self._class_of(p) for p in b.points]
        block_us = np.asarray([c.block_seconds * US_PER_S for c in classes], dtype=np.int64)
        by_class: dict[str, list[Chunk]] = {}
        for chunk in chunk_sorted(b, block_us):
            by_class.setdefault(self._points[chunk.point], []).append(chunk)
        # Every minute a point touched is re-aggregated (and its hour merged anew from its minutes).
        idx = b.point_idx
        minute_keys = np.unique(idx.astype(np.int64) * (2**40) + b.ts_us // MINUTE_US)
        for key in minute_keys.tolist():
            self._dirty.setdefault(b.points[key >> 40], set()).add(key & (2**40 - 1))
        await asyncio.gather(*(self._write_chunks(self.retention[c], ch) for c, ch in by_class.items()))
        if latest:
            await self._write_latest(_latest_rows(b))

    async def write_latest(self, batch: SampleBatch) -> None:
        """Update the latest value of each point of `batch` (an older sample never replaces a newer one)."""
        if not len(batch):
            return
        self._check_known(batch)
        await self._write_latest(_latest_rows(batch.dedupe_sorted()))

    def _check_known(self, batch: SampleBatch) -> None:
        used = np.unique(batch.point_idx)
        unknown = [batch.points[i] for i in used.tolist() if batch.points[i] not in self._points]
        if unknown:
            raise UnknownPointError(unknown)

    def dirty_hours(self) -> int:
        """How many (point, hour) aggregates wait for the next flush."""
        return sum(len({m * MINUTE_US // HOUR_US for m in minutes}) for minutes in self._dirty.values())

    async def flush_aggregates(self) -> int:
        """Recompute the aggregates of every minute written since the last flush, and merge their hours anew.

        Returns how many (point, hour) aggregates were rewritten. Memory and reads follow what was written since
        the last flush, not how far into its hour the archive is.
        """
        todo = [(p, hour, spans) for p, minutes in self._dirty.items() for hour, spans in _hour_spans(minutes)]
        self._dirty = {}
        sem = asyncio.Semaphore(self._max_in_flight)

        async def one(point: str, hour: int, span: tuple[int, int]) -> None:
            async with sem:
                try:
                    await self._rollup(point, hour, span)
                except BaseException:
                    self._dirty.setdefault(point, set()).update(range(*span))  # kept for the next flush
                    raise

        await asyncio.gather(*(one(p, h, span) for p, h, span in todo))
        return len(todo)

    async def rebuild_aggregates(self, points: Iterable[str], start: datetime, end: datetime) -> int:
        """Recompute aggregates over a range (after a crash lost the set of minutes still to flush)."""
        s, e = to_us(start), to_us(end)
        todo = []
        for p in points:
            self._class_of(p)
            todo += [(p, h, (h * 60, h * 60 + 60)) for h in hours_between(s, e)]
        sem = asyncio.Semaphore(self._max_in_flight)

        async def one(point: str, hour: int, span: tuple[int, int]) -> None:
            async with sem:
                await self._rollup(point, hour, span)

        await asyncio.gather(*(one(p, h, span) for p, h, span in todo))
        return len(todo)

    async def _rollup(self, point: str, hour: int, span: tuple[int, int]) -> None:
        """Minutes [span) of `hour` from raw samples, then the hour from all of its minute rows."""
        lo, hi = span[0] * MINUTE_US, span[1] * MINUTE_US
        series = await self.raw(point, from_us(lo), from_us(hi))
        minutes = aggregate(series, lo, MINUTE_US)
        if len(minutes):
            await self._write_aggregates(Resolution.MINUTE, point, minutes)
        start = hour * HOUR_US
        rows = await self._read_aggregates(Resolution.MINUTE, point, start, start + HOUR_US)
        if len(rows):
            await self._write_aggregates(Resolution.HOUR, point, reaggregate(rows, start, HOUR_US))

    async def raw(self, point: str, start: datetime, end: datetime) -> SampleBatch:
        """A point's samples in [start, end), time-sorted, one per timestamp."""
        cls = self._class_of(point)
        s, e = _range_us(start, end)
        return unpack(await self._read_chunks(cls, point, s, e), s, e)

    async def raw_many(self, points: Sequence[str], start: datetime, end: datetime) -> dict[str, SampleBatch]:
        results = await asyncio.gather(*(self.raw(p, start, end) for p in points))
        return dict(zip(points, results, strict=True))

    async def aggregates(self, point: str, resolution: Resolution, start: datetime, end: datetime) -> Aggregates:
        self._class_of(point)
        if resolution is Resolution.RAW:
            raise InvalidRecordError("raw samples are read with raw(), not aggregates()")
        s, e = _range_us(start, end)
        return await self._read_aggregates(resolution, point, s, e)

    async def binned(self, point: str, start: datetime, end: datetime, bins: int) -> BinnedSeries:
        """A point's history in at most `bins` regular bins, read from the coarsest source that serves."""
        self._class_of(point)
        s, e = _range_us(start, end)
        try:
            plan = plan_bins(s, e, bins)
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        if plan.resolution is Resolution.RAW:
            series = await self.raw(point, from_us(plan.origin_us), from_us(plan.end_us))
            rows = aggregate(series, plan.origin_us, plan.width_us)
        else:
            await self._flush_point(point, plan.origin_us, plan.end_us)
            rows = await self._read_aggregates(plan.resolution, point, plan.origin_us, plan.end_us)
        return to_bins(point, plan, rows)

    async def _flush_point(self, point: str, start_us: int, end_us: int) -> None:
        """Roll up this point's pending minutes in range first, so a query never misses recent writes."""
        pending = self._dirty.get(point)
        if not pending:
            return
        first, last = start_us // HOUR_US, (end_us - 1) // HOUR_US
        minutes = {m for m in pending if first <= m * MINUTE_US // HOUR_US <= last}
        pending -= minutes
        try:
            await asyncio.gather(*(self._rollup(point, h, span) for h, span in _hour_spans(minutes)))
        except BaseException:
            pending.update(minutes)
            raise

    async def binned_many(
        self, points: Sequence[str], start: datetime, end: datetime, bins: int
    ) -> dict[str, BinnedSeries]:
        results = await asyncio.gather(*(self.binned(p, start, end, bins) for p in points))
        return dict(zip(points, results, strict=True))

    async def latest(self, points: Sequence[str] | None = None) -> dict[str, Sample]:
        """The newest sample of each point (of the given points, or of all that have one)."""
        if points is not None:
            unknown = [p for p in points if p not in self._points]
            if unknown:
                raise UnknownPointError(unknown)
        return {s.point: s for s in await self._read_latest(points)}


def _hour_spans(minutes: Iterable[int]) -> list[tuple[int, tuple[int, int]]]:
    """Minutes grouped by hour, each hour's as the span [first, last + 1) that covers them."""
    spans: dict[int, tuple[int, int]] = {}
    per_hour = HOUR_US // MINUTE_US
    for m in minutes:
        h = m // per_hour
        lo, hi = spans.get(h, (m, m + 1))
        spans[h] = (min(lo, m), max(hi, m + 1))
    return sorted(spans.items())


def _latest_rows(b: SampleBatch) -> list[LatestRow]:
    """The newest sample of each point of a batch sorted by (point, time): the last row of each run."""
    idx = b.point_idx
    last = np.r_[np.flatnonzero(idx[1:] != idx[:-1]), len(b) - 1]
    return [
        (b.points[int(idx[i])], int(b.ts_us[i]), int(b.kind[i]), int(b.bits[i]), int(b.quality[i]),
         b.strings[int(b.bits[i])] if b.kind[i] == K_STR else None)
        for i in last.tolist()
    ]


def _range_us(start: datetime, end: datetime) -> tuple[int, int]:
    s, e = to_us(start, what="range start"), to_us(end, what="range end")
    if e <= s:
        raise InvalidRecordError(f"the range end {end.isoformat()} is not after its start {start.isoformat()}")
    return s, e


def day_range(start_us: int, end_us: int) -> range:
    return range(start_us // US_PER_DAY, (end_us - 1) // US_PER_DAY + 1)
