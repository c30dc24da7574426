"""The embedded archive: the same tables as Cassandra, in one SQLite file, on one worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from skyops.archive.binning import Aggregates, Resolution
from skyops.archive.blocks import Chunk
from skyops.archive.port import (
    AGGREGATE_TTL,
    HOUR_US,
    LOG_SHARDS,
    Archive,
    LatestRow,
    LogPage,
    LogQuery,
    RetentionClass,
    day_range,
    decode_cursor,
    log_ids,
    page_logs,
)
from skyops.records import AlarmEvent, LogBatch, LogRecord, Quality, Sample, ValueKind
from skyops.timeutil import US_PER_DAY, US_PER_S, from_us, to_us

T = TypeVar("T")
_AGG_COLS = ("count", "bad_count", "vmin", "vmax", "vsum", "vsumsq", "first_us", "first", "last_us", "last")
_FLOAT_COLS = {"vmin", "vmax", "vsum", "vsumsq", "first", "last"}
NO_EXPIRY = 2**62


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction around a write. The connection autocommits (isolation_level=None), so without an
    explicit BEGIN every row of an executemany would be its own commit, several times slower."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _year_of(us: int) -> int:
    return from_us(us).year


def _nan_to_none(v: float) -> float | None:
    return None if math.isnan(v) else v


class SqliteArchive(Archive):
    """Archive adapter for the embedded default (`skyops up`) and unit tests."""

    def __init__(self, path: Path | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-archive")

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise RuntimeError("the archive is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, db)

    async def open(self) -> None:
        if self._db is not None:
            return
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)

        def connect() -> sqlite3.Connection:
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                # One write transaction: processes opening a fresh file together create it one after the
                # other (sqlite3's busy timeout makes the others wait) and never see half a schema.
                db.executescript(f"BEGIN IMMEDIATE;\n{self._schema()}\nCOMMIT;")
            except BaseException:
                db.close()
                raise
            return db

        self._db = await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    def _schema(self) -> str:
        parts = []
        for cls in self.retention.values():
            parts.append(
                f"""CREATE TABLE IF NOT EXISTS samples_{cls.name} (
                    point TEXT NOT NULL, day INTEGER NOT NULL, start_us INTEGER NOT NULL,
                    chunk_id INTEGER NOT NULL, end_us INTEGER NOT NULL, n INTEGER NOT NULL,
                    ts BLOB NOT NULL, kind BLOB NOT NULL, bits BLOB NOT NULL, quality BLOB NOT NULL,
                    strings TEXT NOT NULL, expires_us INTEGER NOT NULL,
                    PRIMARY KEY (point, day, start_us, chunk_id)) WITHOUT ROWID;"""
            )
        cols = ", ".join(f'"{c}" {"REAL" if c in _FLOAT_COLS else "INTEGER"}' for c in _AGG_COLS)
        for res, part in ((Resolution.MINUTE, "day"), (Resolution.HOUR, "year")):
            parts.append(
                f"""CREATE TABLE IF NOT EXISTS agg_{res.value} (
                    point TEXT NOT NULL, {part} INTEGER NOT NULL, bucket_us INTEGER NOT NULL, {cols},
                    expires_us INTEGER NOT NULL, PRIMARY KEY (point, {part}, bucket_us)) WITHOUT ROWID;"""
            )
        parts.append(
            """CREATE TABLE IF NOT EXISTS latest (
                point TEXT PRIMARY KEY, ts_us INTEGER NOT NULL, kind INTEGER NOT NULL,
                bits INTEGER NOT NULL, quality INTEGER NOT NULL, str TEXT) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS logs (
                source TEXT NOT NULL, hour INTEGER NOT NULL, shard INTEGER NOT NULL, ts_us INTEGER NOT NULL,
                id INTEGER NOT NULL, level INTEGER NOT NULL, component TEXT NOT NULL, host TEXT NOT NULL,
                message TEXT NOT NULL, attributes TEXT NOT NULL, trace_id TEXT, ob_id TEXT,
                PRIMARY KEY (source, hour, shard, ts_us, id)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS logs_by_time ON logs (ts_us, id);
            CREATE TABLE IF NOT EXISTS alarm_history (
                alarm_id TEXT NOT NULL, year INTEGER NOT NULL, day INTEGER NOT NULL, ts_us INTEGER NOT NULL,
                seq INTEGER NOT NULL, action TEXT NOT NULL, severity INTEGER NOT NULL, latched INTEGER NOT NULL,
                state TEXT NOT NULL, acked INTEGER NOT NULL, user TEXT, comment TEXT, reason TEXT NOT NULL,
                attributes TEXT NOT NULL, PRIMARY KEY (alarm_id, ts_us, seq)) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS alarm_history_by_time ON alarm_history (ts_us, alarm_id, seq);"""
        )
        return "\n".join(parts)

    async def ping(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._db is None:
            return
        db, self._db = self._db, None
        await asyncio.get_running_loop().run_in_executor(self._pool, db.close)
        self._pool.shutdown(wait=True)

    # --- samples ------------------------------------------------------------------------------
    async def _write_chunks(self, cls: RetentionClass, chunks: Sequence[Chunk]) -> None:
        ttl = int(cls.ttl.total_seconds() * US_PER_S)
        rows = [
            (c.point, c.day, c.start_us, c.chunk_id, c.end_us, c.n, c.ts, c.kind, c.bits, c.quality,
             json.dumps(c.strings), c.end_us + ttl)
            for c in chunks
        ]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany(f"INSERT OR REPLACE INTO samples_{cls.name} VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

        await self._call(write)

    async def _read_chunks(self, cls: RetentionClass, point: str, start_us: int, end_us: int) -> list[Chunk]:
        lo = start_us - start_us % (cls.block_seconds * US_PER_S)
        days = list(day_range(lo, end_us))

        def read(db: sqlite3.Connection) -> list[Chunk]:
            cur = db.execute(
                f"SELECT point, day, start_us, end_us, chunk_id, n, ts, kind, bits, quality, strings "
                f"FROM samples_{cls.name} WHERE point = ? AND day BETWEEN ? AND ? "
                f"AND start_us >= ? AND start_us < ? ORDER BY day, start_us, chunk_id",
                (point, days[0], days[-1], lo, end_us),
            )
            return [
                Chunk(point=r[0], day=r[1], start_us=r[2], end_us=r[3], chunk_id=r[4], n=r[5], ts=r[6],
                      kind=r[7], bits=r[8], quality=r[9], strings=tuple(json.loads(r[10])))
                for r in cur
            ]

        return await self._call(read)

    async def _write_latest(self, latest: Sequence[LatestRow]) -> None:
        rows = list(latest)

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany(
                    "INSERT INTO latest VALUES (?,?,?,?,?,?) ON CONFLICT (point) DO UPDATE SET "
                    "ts_us=excluded.ts_us, kind=excluded.kind, bits=excluded.bits, quality=excluded.quality, "
                    "str=excluded.str WHERE excluded.ts_us >= latest.ts_us",
                    rows,
                )

        await self._call(write)

    async def _read_latest(self, points: Sequence[str] | None) -> list[Sample]:
        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if points is None:
                return db.execute("SELECT * FROM latest").fetchall()
            marks = ",".join("?" * len(points))
            return db.execute(f"SELECT * FROM latest WHERE point IN ({marks})", list(points)).fetchall()

        return [latest_sample(*r) for r in await self._call(read)]

    async def _write_aggregates(self, res: Resolution, point: str, rows: Aggregates) -> None:
        ttl = AGGREGATE_TTL[res]
        ttl_us = NO_EXPIRY if ttl is None else int(ttl.total_seconds() * US_PER_S)
        data = []
        cols = [
            [_nan_to_none(v) for v in getattr(rows, c).tolist()] if c in _FLOAT_COLS else getattr(rows, c).tolist()
            for c in _AGG_COLS
        ]
        for i, bucket in enumerate(rows.bucket_us.tolist()):
            part = bucket // US_PER_DAY if res is Resolution.MINUTE else _year_of(bucket)
            vals = [col[i] for col in cols]
            data.append((point, part, bucket, *vals, min(NO_EXPIRY, bucket + ttl_us)))
        marks = ",".join("?" * (len(_AGG_COLS) + 4))

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany(f"INSERT OR REPLACE INTO agg_{res.value} VALUES ({marks})", data)

        await self._call(write)

    async def _read_aggregates(self, res: Resolution, point: str, start_us: int, end_us: int) -> Aggregates:
        cols = ", ".join(f'"{c}"' for c in _AGG_COLS)

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(
                f"SELECT bucket_us, {cols} FROM agg_{res.value} WHERE point = ? AND bucket_us >= ? "
                f"AND bucket_us < ? ORDER BY bucket_us",
                (point, start_us, end_us),
            ).fetchall()

        return aggregates_from_rows(await self._call(read))

    async def purge_expired(self, now: datetime) -> int:
        """Drop rows past their retention (Cassandra does this itself with TTLs)."""
        now_us = to_us(now)

        def purge(db: sqlite3.Connection) -> int:
            n = 0
            with transaction(db):
                for name in [f"samples_{c}" for c in self.retention] + ["agg_1m", "agg_1h"]:
                    n += db.execute(f"DELETE FROM {name} WHERE expires_us < ?", (now_us,)).rowcount
            return n

        return await self._call(purge)

    # --- logs ---------------------------------------------------------------------------------
    async def write_logs(self, records: Sequence[LogRecord]) -> None:
        await self.write_log_batch(LogBatch.from_records(records))

    async def write_log_batch(self, batch: LogBatch) -> None:
        ids = log_ids(batch)
        attrs = [json.dumps(a, ensure_ascii=False) if a else "{}" for a in batch.attributes]
        rows = list(zip(batch.source, (batch.ts_us // HOUR_US).tolist(), (ids % LOG_SHARDS).tolist(),
                        batch.ts_us.tolist(), ids.tolist(), batch.level.tolist(), batch.component, batch.host,
                        batch.message, attrs, batch.trace_id, batch.ob_id, strict=True))

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("INSERT OR REPLACE INTO logs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

        await self._call(write)

    async def query_logs(self, query: LogQuery) -> LogPage:
        s, e = to_us(query.start), to_us(query.end)
        where = ["ts_us >= ?", "ts_us < ?", "level >= ?"]
        args: list[Any] = [s, e, query.min_level]
        for col, vals in (("source", query.sources), ("host", query.hosts), ("component", query.components)):
            if vals is not None:
                where.append(f"{col} IN ({','.join('?' * len(vals))})" if vals else "0")
                args.extend(vals)
        if query.text:
            where.append("instr(lower(message), ?) > 0")
            args.append(query.text.lower())
        if query.cursor:
            ts, rid = decode_cursor(query.cursor)
            where.append("(ts_us, id) < (?, ?)" if query.newest_first else "(ts_us, id) > (?, ?)")
            args.extend((ts, rid))
        order = "DESC" if query.newest_first else "ASC"
        sql = (f"SELECT ts_us, id, level, source, component, host, message, attributes, trace_id, ob_id "
               f"FROM logs WHERE {' AND '.join(where)} ORDER BY ts_us {order}, id {order}")

        def read(db: sqlite3.Connection) -> LogPage:
            rows = ((r[0], r[1], log_from_row(r)) for r in db.execute(sql, args))
            # The cursor is already applied in SQL; page_logs applies the regex and the limit.
            return page_logs(rows, LogQuery(start=query.start, end=query.end, regex=query.regex,
                                            newest_first=query.newest_first, limit=query.limit))

        return await self._call(read)

    # --- alarms -------------------------------------------------------------------------------
    async def write_alarm_events(self, events: Sequence[AlarmEvent]) -> None:
        rows = [
            (e.alarm_id, e.ts.year, e.ts_us // US_PER_DAY, e.ts_us, e.seq, e.action, int(e.severity),
             int(e.latched), e.state, int(e.acked), e.user, e.comment, e.reason,
             json.dumps(e.attributes, ensure_ascii=False))
            for e in events
        ]

        def write(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("INSERT OR REPLACE INTO alarm_history VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

        await self._call(write)

    async def alarm_history(
        self, *, start: datetime, end: datetime, alarm_id: str | None = None, limit: int = 1000
    ) -> list[AlarmEvent]:
        s, e = to_us(start), to_us(end)
        sql = ("SELECT alarm_id, ts_us, seq, action, severity, latched, state, acked, user, comment, reason, "
               "attributes FROM alarm_history WHERE ts_us >= ? AND ts_us < ?")
        args: list[Any] = [s, e]
        if alarm_id is not None:
            sql += " AND alarm_id = ?"
            args.append(alarm_id)
        sql += " ORDER BY ts_us DESC, alarm_id DESC, seq DESC LIMIT ?"
        args.append(limit)

        def read(db: sqlite3.Connection) -> list[AlarmEvent]:
            return [alarm_from_row(r) for r in db.execute(sql, args)]

        return await self._call(read)


def latest_sample(point: str, ts_us: int, kind: int, bits: int, quality: int, text: str | None) -> Sample:
    """Rebuild a sample from the `latest` table's columns (shared by both adapters)."""
    value: float | int | bool | str | None
    if kind == ValueKind.FLOAT:
        value = float(np.array([bits], dtype=np.int64).view(np.float64)[0])
    elif kind == ValueKind.INT:
        value = int(bits)
    elif kind == ValueKind.BOOL:
        value = bool(bits)
    elif kind == ValueKind.STR:
        value = text
    else:
        value = None
    return Sample(point=point, ts=from_us(ts_us), value=value, quality=Quality(quality))


def aggregates_from_rows(rows: Sequence[Sequence[Any]]) -> Aggregates:
    """Columns (bucket_us, then _AGG_COLS) to Aggregates; NULL floats become NaN."""
    if not rows:
        return Aggregates.empty()
    cols = list(zip(*rows, strict=True))
    out: dict[str, Any] = {"bucket_us": np.asarray(cols[0], dtype=np.int64)}
    for name, col in zip(_AGG_COLS, cols[1:], strict=True):
        if name in _FLOAT_COLS:
            out[name] = np.asarray([np.nan if v is None else v for v in col], dtype=np.float64)
        else:
            out[name] = np.asarray(col, dtype=np.int64)
    return Aggregates(**out)


def _attributes(raw: object) -> dict[str, str]:
    """Attributes as stored: a JSON text in SQLite, a map (the driver's own Mapping type) in Cassandra."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    return dict(json.loads(str(raw)))


def log_from_row(r: Sequence[Any]) -> LogRecord:
    """(ts_us, id, level, source, component, host, message, attributes, trace_id, ob_id) to a LogRecord."""
    attrs = _attributes(r[7])
    return LogRecord(ts=from_us(r[0]), level=r[2], source=r[3], component=r[4] or "", host=r[5] or "",
                     message=r[6], attributes=attrs, trace_id=r[8], ob_id=r[9])


def alarm_from_row(r: Sequence[Any]) -> AlarmEvent:
    """(alarm_id, ts_us, seq, action, severity, latched, state, acked, user, comment, reason, attributes)."""
    attrs = _attributes(r[11])
    return AlarmEvent(alarm_id=r[0], ts=from_us(r[1]), seq=r[2], action=r[3], severity=r[4], latched=r[5],
                      state=r[6], acked=bool(r[7]), user=r[8], comment=r[9], reason=r[10], attributes=attrs)


