"""The distributed archive on Apache Cassandra: prepared statements, bounded concurrency, no cross-partition batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from cassandra import AlreadyExists, ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.concurrent import execute_concurrent
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import (
    UNSET_VALUE,
    BatchStatement,
    BatchType,
    BoundStatement,
    PreparedStatement,
    SimpleStatement,
    Statement,
)

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
from skyops.archive.sqlite import _AGG_COLS, aggregates_from_rows, alarm_from_row, latest_sample, log_from_row
from skyops.errors import BackendUnavailableError
from skyops.records import AlarmEvent, LogBatch, LogRecord, Sample
from skyops.timeutil import US_PER_DAY, US_PER_S, from_us, to_us

log = logging.getLogger(__name__)

# TimeWindowCompactionStrategy: SSTables hold one day of data each, so whole files expire with the TTL.
TWCS = ("{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', "
        "'compaction_window_size': 1}")
_AGG_DEFS = ", ".join(
    f"{c} {'double' if c in {'vmin', 'vmax', 'vsum', 'vsumsq', 'first', 'last'} else 'bigint'}"
    for c in _AGG_COLS
)


# A day of 1-minute aggregate rows is 1,440; batches stay well under the node's size thresholds.
MAX_BATCH_ROWS = 100
# Packed-block batches (rows of one replica set) stay under the 50 KiB batch_size_fail_threshold of a
# stock Cassandra; the warning threshold is the operator's to raise (deploy/ sets 64 KiB).
MAX_CHUNK_BATCH_BYTES = 48 * 1024
MAX_CHUNK_BATCH_ROWS = 200
MAX_CHUNK_BATCHES_IN_FLIGHT = 48


LATEST_BUCKETS = 64

# How long schema creation waits for every node to report the same schema version.
SCHEMA_AGREEMENT_S = 30

# Log rows go in single-partition batches sized by bytes, kept under the node's batch_size_warn_threshold
# (64 KiB in deploy/scripts/cassandra.sh): past it every batch logs a warning on the node and the client.
LOG_BATCH_BYTES = 60 * 1024
LOG_BATCHES_IN_FLIGHT = 16
_ROW_OVERHEAD = 120  # per row: source, hour, shard, ts, id, level, value lengths, statement id
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_INT8 = struct.Struct(">b")
_LEVEL_BYTES = [_INT32.pack(i) for i in range(101)]


def _or_unset(value: object) -> object:
    return UNSET_VALUE if value is None else value


def _text_map(m: dict[str, str]) -> bytes:
    """A map<text, text> in the native protocol's (v3+) encoding, as the driver's own serializer writes it."""
    parts = [_INT32.pack(len(m))]
    for k, v in m.items():
        kb, vb = k.encode(), v.encode()
        parts += (_INT32.pack(len(kb)), kb, _INT32.pack(len(vb)), vb)
    return b"".join(parts)


def latest_bucket(point: str) -> int:
    """A stable bucket for a point (Python's hash() changes between processes, so it is not used)."""
    return zlib.crc32(point.encode()) % LATEST_BUCKETS


def _year(us: int) -> int:
    return from_us(us).year


class CassandraArchive(Archive):
    """Archive adapter for the distributed mode, on the tables of DESIGN §4.

    Timestamps are `bigint` microseconds: Cassandra's `timestamp` type keeps only milliseconds and the
    archive promises an exact round trip.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        port: int = 9042,
        keyspace: str = "skyops",
        replication_factor: int = 1,
        connect_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hosts = list(hosts)
        self.port = port
        self.keyspace = keyspace
        self.replication_factor = replication_factor
        self.connect_timeout = connect_timeout
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._ps: dict[str, PreparedStatement] = {}
        self._sem = asyncio.Semaphore(self._max_in_flight)

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._session is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._session = await loop.run_in_executor(None, self._connect)
        except Exception as exc:
            raise BackendUnavailableError(f"cannot reach Cassandra at {self.hosts}:{self.port}: {exc}") from exc
        await loop.run_in_executor(None, self._create_schema)

    def _connect(self) -> Session:
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            request_timeout=30.0,
        )
        self._cluster = Cluster(
            self.hosts,
            port=self.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=self.connect_timeout,
            protocol_version=5,
            # The driver's default waits up to 10 min between tries: a node back after an outage would stay
            # "down" for the archive long after it answers. Writers hold their backlog meanwhile, so try often.
            reconnection_policy=ExponentialReconnectionPolicy(base_delay=1.0, max_delay=10.0),
        )
        return self._cluster.connect()

    def _schema(self) -> list[tuple[str, str, str]]:
        """Every schema object of the archive as (kind, name, CREATE statement), keyspace first."""
        ks = self.keyspace
        tables: list[tuple[str, str]] = [
            (f"samples_{cls.name}",
             f"CREATE TABLE IF NOT EXISTS {ks}.samples_{cls.name} (point text, day int, start_us bigint, "
             f"chunk_id bigint, end_us bigint, n int, ts blob, kind blob, bits blob, quality blob, "
             f"strings list<text>, PRIMARY KEY ((point, day), start_us, chunk_id)) "
             f"WITH compaction = {TWCS} AND default_time_to_live = {int(cls.ttl.total_seconds())} "
             f"AND gc_grace_seconds = 10800")
            for cls in self.retention.values()
        ]
        tables.append(("agg_1m", f"CREATE TABLE IF NOT EXISTS {ks}.agg_1m (point text, day int, bucket_us bigint, "
                                 f"{_AGG_DEFS}, PRIMARY KEY ((point, day), bucket_us)) WITH compaction = {TWCS}"))
        tables.append(("agg_1h", f"CREATE TABLE IF NOT EXISTS {ks}.agg_1h (point text, year int, bucket_us bigint, "
                                 f"{_AGG_DEFS}, PRIMARY KEY ((point, year), bucket_us))"))
        # Latest values live in LATEST_BUCKETS partitions (by a stable hash of the point), so one write round
        # is a few single-partition batches instead of one request per point.
        tables.append(("latest_points",
                       f"CREATE TABLE IF NOT EXISTS {ks}.latest_points (bucket int, point text, ts_us bigint, "
                       f"kind tinyint, bits bigint, quality tinyint, str text, PRIMARY KEY ((bucket), point))"))
        tables.append((
            "logs",
            f"CREATE TABLE IF NOT EXISTS {ks}.logs (source text, hour bigint, shard tinyint, ts_us bigint, "
            f"id bigint, level int, component text, host text, message text, attributes map<text, text>, "
            f"trace_id text, ob_id text, PRIMARY KEY ((source, hour, shard), ts_us, id)) "
            f"WITH CLUSTERING ORDER BY (ts_us DESC, id DESC) AND compaction = {TWCS}"))
        tables.append(("log_sources", f"CREATE TABLE IF NOT EXISTS {ks}.log_sources (bucket int, source text, "
                                      f"PRIMARY KEY (bucket, source))"))
        # Which (source, hour) log partitions exist: a search over weeks visits only those.
        tables.append(("log_hours", f"CREATE TABLE IF NOT EXISTS {ks}.log_hours (source text, hour bigint, "
                                    f"PRIMARY KEY (source, hour))"))
        alarm_cols = ("ts_us bigint, seq bigint, action text, severity int, latched int, state text, "
                      "acked boolean, user text, comment text, reason text, attributes map<text, text>")
        tables.append((
            "alarm_history_by_alarm",
            f"CREATE TABLE IF NOT EXISTS {ks}.alarm_history_by_alarm (alarm_id text, year int, {alarm_cols}, "
            f"PRIMARY KEY ((alarm_id, year), ts_us, seq)) WITH CLUSTERING ORDER BY (ts_us DESC, seq DESC)"))
        tables.append((
            "alarm_history_by_day",
            f"CREATE TABLE IF NOT EXISTS {ks}.alarm_history_by_day (day int, alarm_id text, {alarm_cols}, "
            f"PRIMARY KEY ((day), ts_us, alarm_id, seq)) "
            f"WITH CLUSTERING ORDER BY (ts_us DESC, alarm_id DESC, seq DESC)"))
        return [
            ("keyspace", ks, f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                             f"{{'class': 'SimpleStrategy', 'replication_factor': {self.replication_factor}}}"),
            *(("table", name, cql) for name, cql in tables),
            # SAI on level: a WARNING+ search reads only matching rows of each partition it visits.
            ("index", "logs_level",
             f"CREATE CUSTOM INDEX IF NOT EXISTS logs_level ON {ks}.logs (level) USING 'StorageAttachedIndex'"),
        ]

    def _existing_schema(self) -> set[tuple[str, str]]:
        """The archive's schema objects Cassandra already has, as (kind, name), read from system_schema."""
        s = self._session
        assert s is not None
        ks = (self.keyspace,)
        found: set[tuple[str, str]] = set()
        if s.execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s", ks).one():
            found.add(("keyspace", self.keyspace))
        found |= {("table", r.table_name)
                  for r in s.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", ks)}
        found |= {("index", r.index_name)
                  for r in s.execute("SELECT index_name FROM system_schema.indexes WHERE keyspace_name = %s", ks)}
        return found

    def _create_schema(self) -> None:
        """Create what is missing of the schema; several processes may run this at once (`skyops run`).

        The common case, a schema already there, sends no DDL at all. Otherwise every process sends its
        CREATE ... IF NOT EXISTS to the same node (the lowest address up): Cassandra 5.0 without TCM
        applies one node's schema changes one at a time, so the second CREATE of a table is a no-op
        there, whereas the same table created on two nodes at once gets two table ids and the cluster
        disagrees on its schema. Then it waits for every node to agree before preparing statements.
        """
        s, cluster = self._session, self._cluster
        assert s is not None and cluster is not None
        existing = self._existing_schema()
        missing = [(kind, name, cql) for kind, name, cql in self._schema() if (kind, name) not in existing]
        if missing:
            host = self._ddl_host()
            log.info("creating %d schema objects in keyspace %s on %s", len(missing), self.keyspace,
                     host.endpoint if host is not None else "any node")
            for _, _, cql in missing:
                # Another process may have created it between our read and our CREATE.
                with contextlib.suppress(AlreadyExists):
                    s.execute(SimpleStatement(cql), host=host)
            if not cluster.control_connection.wait_for_schema_agreement(wait_time=SCHEMA_AGREEMENT_S):
                raise BackendUnavailableError(
                    f"Cassandra nodes do not agree on the schema of keyspace {self.keyspace} after "
                    f"{SCHEMA_AGREEMENT_S} s (see `nodetool describecluster`)")
        self._prepare()

    def _ddl_host(self) -> Any:
        """The node every process sends its DDL to: the lowest address among those up (None: any)."""
        cluster = self._cluster
        assert cluster is not None
        up = [h for h in cluster.metadata.all_hosts() if h.is_up]
        return min(up, key=lambda h: str(h.endpoint)) if up else None

    def _prepare(self) -> None:
        s = self._session
        assert s is not None
        ks = self.keyspace
        q: dict[str, str] = {}
        for cls in self.retention.values():
            t = f"{ks}.samples_{cls.name}"
            q[f"chunk_w_{cls.name}"] = (f"INSERT INTO {t} (point, day, start_us, chunk_id, end_us, n, ts, kind, bits, "
                                        f"quality, strings) VALUES (?,?,?,?,?,?,?,?,?,?,?) USING TTL ?")
            q[f"chunk_r_{cls.name}"] = (f"SELECT point, day, start_us, end_us, chunk_id, n, ts, kind, bits, quality, "
                                        f"strings FROM {t} WHERE point = ? AND day = ? AND start_us >= ? "
                                        f"AND start_us < ?")
        cols = ", ".join(_AGG_COLS)
        marks = ",".join("?" * len(_AGG_COLS))
        q["agg_w_1m"] = f"INSERT INTO {ks}.agg_1m (point, day, bucket_us, {cols}) VALUES (?,?,?,{marks}) USING TTL ?"
        q["agg_w_1h"] = f"INSERT INTO {ks}.agg_1h (point, year, bucket_us, {cols}) VALUES (?,?,?,{marks})"
        q["agg_r_1m"] = (f"SELECT bucket_us, {cols} FROM {ks}.agg_1m WHERE point = ? AND day = ? "
                         f"AND bucket_us >= ? AND bucket_us < ?")
        q["agg_r_1h"] = (f"SELECT bucket_us, {cols} FROM {ks}.agg_1h WHERE point = ? AND year = ? "
                         f"AND bucket_us >= ? AND bucket_us < ?")
        # USING TIMESTAMP = the sample's own time: Cassandra's last-write-wins keeps the newest sample
        # whatever order dispatchers write in, and a replay cannot move `latest` backwards.
        q["latest_w"] = (f"INSERT INTO {ks}.latest_points (bucket, point, ts_us, kind, bits, quality, str) "
                         f"VALUES (?,?,?,?,?,?,?) USING TIMESTAMP ?")
        q["latest_r"] = (f"SELECT point, ts_us, kind, bits, quality, str FROM {ks}.latest_points "
                         f"WHERE bucket = ? AND point = ?")
        q["latest_bucket"] = (f"SELECT point, ts_us, kind, bits, quality, str FROM {ks}.latest_points "
                              f"WHERE bucket = ?")
        q["log_w"] = (f"INSERT INTO {ks}.logs (source, hour, shard, ts_us, id, level, component, host, message, "
                      f"attributes, trace_id, ob_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
        q["log_src_w"] = f"INSERT INTO {ks}.log_sources (bucket, source) VALUES (0, ?)"
        q["log_src_r"] = f"SELECT source FROM {ks}.log_sources WHERE bucket = 0"
        q["log_hour_w"] = f"INSERT INTO {ks}.log_hours (source, hour) VALUES (?, ?)"
        q["log_hour_r"] = f"SELECT hour FROM {ks}.log_hours WHERE source = ? AND hour >= ? AND hour <= ?"
        log_cols = "ts_us, id, level, source, component, host, message, attributes, trace_id, ob_id"
        q["log_r_desc"] = (f"SELECT {log_cols} FROM {ks}.logs WHERE source = ? AND hour = ? AND shard = ? "
                           f"AND ts_us >= ? AND ts_us < ? ORDER BY ts_us DESC, id DESC")
        q["log_r_asc"] = (f"SELECT {log_cols} FROM {ks}.logs WHERE source = ? AND hour = ? AND shard = ? "
                          f"AND ts_us >= ? AND ts_us < ? ORDER BY ts_us ASC, id ASC")
        # Index queries cannot ORDER BY; rows come in clustering order (newest first) and are sorted here.
        q["log_r_level"] = (f"SELECT {log_cols} FROM {ks}.logs WHERE source = ? AND hour = ? AND shard = ? "
                            f"AND ts_us >= ? AND ts_us < ? AND level >= ?")
        acols = "ts_us, seq, action, severity, latched, state, acked, user, comment, reason, attributes"
        q["alarm_w_id"] = (f"INSERT INTO {ks}.alarm_history_by_alarm (alarm_id, year, {acols}) "
                           f"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
        q["alarm_w_day"] = (f"INSERT INTO {ks}.alarm_history_by_day (day, alarm_id, {acols}) "
                            f"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
        q["alarm_r_id"] = (f"SELECT alarm_id, {acols} FROM {ks}.alarm_history_by_alarm WHERE alarm_id = ? "
                           f"AND year = ? AND ts_us >= ? AND ts_us < ? LIMIT ?")
        q["alarm_r_day"] = (f"SELECT alarm_id, {acols} FROM {ks}.alarm_history_by_day WHERE day = ? "
                            f"AND ts_us >= ? AND ts_us < ? LIMIT ?")
        self._ps = {name: s.prepare(text) for name, text in q.items()}

    async def close(self) -> None:
        if self._cluster is not None:
            cluster, self._cluster, self._session = self._cluster, None, None
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)

    async def ping(self) -> None:
        await self._run("SELECT release_version FROM system.local", ())

    async def drop_keyspace(self) -> None:
        """Remove every table of this keyspace (tests and benchmarks use throw-away keyspaces)."""
        await self._run(f"DROP KEYSPACE IF EXISTS {self.keyspace}", ())

    # --- driver bridge ------------------------------------------------------------------------
    async def _run(self, stmt: PreparedStatement | BatchStatement | str, params: Sequence[Any]) -> list[Any]:
        """Execute one statement on the driver's event loop and collect every page of rows."""
        session = self._session
        if session is None:
            raise RuntimeError("the archive is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        rows: list[Any] = []
        async with self._sem:
            fut: ResponseFuture = session.execute_async(stmt, params)

            def on_page(page: list[Any] | None) -> None:
                # Runs on the driver's thread: any error must still settle the future, or the caller hangs.
                try:
                    if page:
                        rows.extend(page)
                    if fut.has_more_pages:
                        fut.start_fetching_next_page()
                        return
                except BaseException as exc:
                    loop.call_soon_threadsafe(_settle, done, None, exc)
                    return
                loop.call_soon_threadsafe(_settle, done, rows, None)

            def on_error(exc: BaseException) -> None:
                loop.call_soon_threadsafe(_settle, done, None, exc)

            fut.add_callbacks(on_page, on_error)
            return await done

    async def _run_all(self, name: str, param_rows: Sequence[Sequence[Any]]) -> None:
        """One statement over many rows, each its own request, at most `max_in_flight` at a time."""
        ps = self._ps[name]
        await asyncio.gather(*(self._run(ps, p) for p in param_rows))

    async def _run_by_partition(self, name: str, param_rows: Sequence[Sequence[Any]], key_len: int) -> None:
        """Rows grouped by partition key (their first `key_len` values), one UNLOGGED batch per partition.

        A single-partition batch is applied as one mutation on one replica set: fewer requests and no
        coordinator fan-out. Rows of different partitions are never batched together.
        """
        ps = self._ps[name]
        groups: dict[tuple[Any, ...], list[Sequence[Any]]] = {}
        for row in param_rows:
            groups.setdefault(tuple(row[:key_len]), []).append(row)
        statements: list[BatchStatement | tuple[PreparedStatement, Sequence[Any]]] = []
        for rows in groups.values():
            for start in range(0, len(rows), MAX_BATCH_ROWS):
                part = rows[start : start + MAX_BATCH_ROWS]
                if len(part) == 1:
                    statements.append((ps, part[0]))
                    continue
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for row in part:
                    batch.add(ps, row)
                statements.append(batch)
        await asyncio.gather(*(self._run(st, ()) if isinstance(st, BatchStatement) else self._run(*st)
                               for st in statements))

    # --- samples ------------------------------------------------------------------------------
    async def _write_chunks(self, cls: RetentionClass, chunks: Sequence[Chunk]) -> None:
        ttl_s = int(cls.ttl.total_seconds())
        now_us = _wall_us()
        rows = []
        sizes: list[int] = []
        for c in chunks:
            # Expire with the samples' own age, not the write time: a backlog written late still
            # leaves on schedule, and TWCS drops whole SSTables.
            remaining = ttl_s - (now_us - c.end_us) // US_PER_S
            if remaining <= 0:
                log.warning("dropping %d samples of %s older than the %s retention", c.n, c.point, cls.name)
                continue
            # No strings (the common, numeric case) leaves the column unset: binding an empty list would
            # write a collection tombstone with every row.
            rows.append((c.point, c.day, c.start_us, c.chunk_id, c.end_us, c.n, c.ts, c.kind, c.bits, c.quality,
                         list(c.strings) if c.strings else UNSET_VALUE, int(min(remaining, ttl_s))))
            sizes.append(len(c.ts) + len(c.kind) + len(c.bits) + len(c.quality) + sum(map(len, c.strings)) + 96)
        ps = self._ps[f"chunk_w_{cls.name}"]
        await self._execute_concurrent(self._replica_batches(ps, rows, sizes))

    def _replica_batches(self, ps: PreparedStatement, rows: Sequence[Sequence[Any]],
                         sizes: Sequence[int]) -> list[Statement]:
        """Rows bound and grouped by the replicas owning their partition, as UNLOGGED batches of bounded size.

        Every row of a batch lives on the same replicas and token-aware routing sends the batch to one of
        them, so the batch is one request applied where its data lives: none of the coordinator fan-out
        that makes batches across partitions an anti-pattern. The archive's cost is per request, and a
        write of packed blocks is thousands of small rows of different partitions (points).
        """
        cluster = self._cluster
        if cluster is None:
            raise RuntimeError("the archive is not open")
        metadata = cluster.metadata
        hosts = len(metadata.all_hosts())
        everywhere: tuple[str, ...] | None = None
        groups: dict[tuple[str, ...], list[tuple[BoundStatement, int]]] = {}
        for row, size in zip(rows, sizes, strict=True):
            bound = ps.bind(row)
            replicas = everywhere
            if replicas is None:
                replicas = tuple(sorted(str(h.endpoint) for h in metadata.get_replicas(self.keyspace,
                                                                                       bound.routing_key)))
                # A keyspace replicates every partition to the same number of nodes: when that is all of
                # them (one node, or RF = cluster size), every row has the same replicas.
                if len(replicas) == hosts:
                    everywhere = replicas
            groups.setdefault(replicas, []).append((bound, size))
        out: list[Statement] = []
        for members in groups.values():
            batch: list[BoundStatement] = []
            used = 0
            for bound, size in members:
                if batch and (used + size > MAX_CHUNK_BATCH_BYTES or len(batch) >= MAX_CHUNK_BATCH_ROWS):
                    out.append(_as_statement(batch))
                    batch, used = [], 0
                batch.append(bound)
                used += size
            if batch:
                out.append(_as_statement(batch))
        return out

    async def _execute_concurrent(self, statements: Sequence[Statement]) -> None:
        """Run statements `max_in_flight` at a time, each next one issued from the driver's I/O thread.

        The driver's `execute_concurrent` chains requests in its completion callbacks; an asyncio future
        per request (and a semaphore with thousands of waiters) costs more CPU than the requests do once
        a write holds thousands of rows.
        """
        if not statements:
            return
        session = self._session
        if session is None:
            raise RuntimeError("the archive is not open")
        work = [(st, None) for st in statements]
        # Batches are up to MAX_CHUNK_BATCH_BYTES each: fewer of them in flight keep the socket writable.
        concurrency = min(self._max_in_flight, MAX_CHUNK_BATCHES_IN_FLIGHT)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: execute_concurrent(session, work, concurrency=concurrency,
                                             raise_on_first_error=True, results_generator=False)
        )

    async def _read_chunks(self, cls: RetentionClass, point: str, start_us: int, end_us: int) -> list[Chunk]:
        lo = start_us - start_us % (cls.block_seconds * US_PER_S)
        ps = self._ps[f"chunk_r_{cls.name}"]
        pages = await asyncio.gather(
            *(self._run(ps, (point, day, max(lo, day * US_PER_DAY), min(end_us, (day + 1) * US_PER_DAY)))
              for day in day_range(lo, end_us))
        )
        return [
            Chunk(point=r[0], day=r[1], start_us=r[2], end_us=r[3], chunk_id=r[4], n=r[5], ts=r[6], kind=r[7],
                  bits=r[8], quality=r[9], strings=tuple(r[10] or ()))
            for page in pages for r in page
        ]

    async def _write_latest(self, latest: Sequence[LatestRow]) -> None:
        # USING TIMESTAMP = the sample's time, per row, also inside a batch: the newest sample still wins.
        rows = [(latest_bucket(row[0]), *row, row[1]) for row in latest]
        await self._run_by_partition("latest_w", rows, key_len=1)

    async def _read_latest(self, points: Sequence[str] | None) -> list[Sample]:
        if points is None:
            pages = await asyncio.gather(*(self._run(self._ps["latest_bucket"], (b,)) for b in range(LATEST_BUCKETS)))
        else:
            pages = await asyncio.gather(*(self._run(self._ps["latest_r"], (latest_bucket(p), p)) for p in points))
        rows = [r for page in pages for r in page]
        return [latest_sample(*r) for r in rows if r[1] is not None]

    async def _write_aggregates(self, res: Resolution, point: str, rows: Aggregates) -> None:
        cols = [getattr(rows, c).tolist() for c in _AGG_COLS]
        ttl = AGGREGATE_TTL[res]
        params = []
        for i, bucket in enumerate(rows.bucket_us.tolist()):
            part = bucket // US_PER_DAY if res is Resolution.MINUTE else _year(bucket)
            vals = [col[i] for col in cols]
            extra = [] if ttl is None else [int(ttl.total_seconds())]
            params.append((point, part, bucket, *vals, *extra))
        await self._run_by_partition(f"agg_w_{res.value}", params, key_len=2)

    async def _read_aggregates(self, res: Resolution, point: str, start_us: int, end_us: int) -> Aggregates:
        ps = self._ps[f"agg_r_{res.value}"]
        if res is Resolution.MINUTE:
            parts = [(d, max(start_us, d * US_PER_DAY), min(end_us, (d + 1) * US_PER_DAY))
                     for d in day_range(start_us, end_us)]
        else:
            parts = [(y, start_us, end_us) for y in range(_year(start_us), _year(end_us - 1) + 1)]
        pages = await asyncio.gather(*(self._run(ps, (point, p, s, e)) for p, s, e in parts))
        rows = sorted((tuple(r) for page in pages for r in page), key=lambda r: r[0])
        return aggregates_from_rows(rows)

    # --- logs ---------------------------------------------------------------------------------
    async def write_logs(self, records: Sequence[LogRecord]) -> None:
        await self.write_log_batch(LogBatch.from_records(records))

    async def write_log_batch(self, batch: LogBatch) -> None:
        if not len(batch):
            return
        ids = log_ids(batch)
        hours = batch.ts_us // HOUR_US
        shards = ids % LOG_SHARDS
        keys = list(zip(batch.source, hours.tolist(), shards.tolist(), strict=True))
        partitions = sorted({(s, h) for s, h, _ in keys})
        # The directories first: a record is never stored where a search would not look for it.
        await asyncio.gather(self._run_all("log_src_w", [(s,) for s in sorted({s for s, _ in partitions})]),
                             self._run_all("log_hour_w", partitions))
        # Sent as they are built, so Cassandra works while the next ones are serialized; bounded by
        # bytes as well as by count: the driver refuses requests (ConnectionBusy) once its write
        # buffer holds a few MB, which 128 batches of 60 KB in flight would exceed.
        sem = asyncio.Semaphore(LOG_BATCHES_IN_FLIGHT)

        async def one(statement: BatchStatement) -> None:
            try:
                await self._run(statement, ())
            finally:
                sem.release()

        tasks: list[asyncio.Task[None]] = []
        try:
            for statement in self._log_batches(batch, ids, keys):
                await sem.acquire()
                tasks.append(asyncio.create_task(one(statement)))
                await asyncio.sleep(0)  # lets the new task hand its request to the driver
        finally:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _log_batches(self, batch: LogBatch, ids: npt.NDArray[np.int64],
                     keys: list[tuple[str, int, int]]) -> Iterator[BatchStatement]:
        """UNLOGGED single-partition batches of at most LOG_BATCH_BYTES each.

        The driver's bind() costs ~20 µs a row (a BoundStatement and a column descriptor per value),
        more than the rest of the consumer together; rows are serialized here in bulk instead, and only
        each batch's first row goes through bind() so the batch carries its routing key. Absent values
        are UNSET rather than null: a null is a tombstone Cassandra must write, keep and compact.
        """
        ps = self._ps["log_w"]
        qid = ps.query_id
        pack_q = _INT64.pack
        ts_b = list(map(pack_q, batch.ts_us.tolist()))
        id_b = list(map(pack_q, ids.tolist()))
        comp_b = [v.encode() for v in batch.component]
        host_b = [v.encode() for v in batch.host]
        msg_b = [v.encode() for v in batch.message]
        attr_b = [_text_map(a) if a else UNSET_VALUE for a in batch.attributes]
        tid_b = [UNSET_VALUE if v is None else v.encode() for v in batch.trace_id]
        ob_b = [UNSET_VALUE if v is None else v.encode() for v in batch.ob_id]
        # Bytes a row adds to its batch: the variable columns, plus the fixed ones and framing.
        n = len(batch)
        sizes = (np.fromiter(map(len, comp_b), np.int64, n) + np.fromiter(map(len, host_b), np.int64, n)
                 + np.fromiter(map(len, msg_b), np.int64, n) + _ROW_OVERHEAD).tolist()
        if any(a is not UNSET_VALUE for a in attr_b):
            sizes = [n + (len(a) if isinstance(a, bytes) else 0) for n, a in zip(sizes, attr_b, strict=True)]
        levels = batch.level.tolist()
        by_key: dict[tuple[str, int, int], list[int]] = {}
        for i, key in enumerate(keys):
            by_key.setdefault(key, []).append(i)
        for key, rows in by_key.items():
            src_b, hour_b, shard_b = key[0].encode(), pack_q(key[1]), _INT8.pack(key[2])
            current = BatchStatement(batch_type=BatchType.UNLOGGED)
            first = rows[0]
            current.add(ps, (key[0], key[1], key[2], int(batch.ts_us[first]), int(ids[first]), levels[first],
                             batch.component[first], batch.host[first], batch.message[first],
                             batch.attributes[first] or UNSET_VALUE, _or_unset(batch.trace_id[first]),
                             _or_unset(batch.ob_id[first])))
            size = sizes[first]
            add = current._add_statement_and_params
            for i in rows[1:]:
                if size + sizes[i] > LOG_BATCH_BYTES:
                    previous, current = current, BatchStatement(batch_type=BatchType.UNLOGGED)
                    current.add(ps, (key[0], key[1], key[2], int(batch.ts_us[i]), int(ids[i]), levels[i],
                                     batch.component[i], batch.host[i], batch.message[i],
                                     batch.attributes[i] or UNSET_VALUE, _or_unset(batch.trace_id[i]),
                                     _or_unset(batch.ob_id[i])))
                    yield previous
                    add = current._add_statement_and_params
                    size = sizes[i]
                    continue
                add(True, qid, [src_b, hour_b, shard_b, ts_b[i], id_b[i], _LEVEL_BYTES[levels[i]], comp_b[i],
                                host_b[i], msg_b[i], attr_b[i], tid_b[i], ob_b[i]])
                size += sizes[i]
            yield current

    async def rebuild_log_directory(self) -> int:
        """Re-list every (source, hour) that holds logs, e.g. for logs written before `log_hours` existed.

        A full scan of the logs table's partition keys: an administrator's one-off, not a routine call.
        """
        keys = await self._run(f"SELECT DISTINCT source, hour, shard FROM {self.keyspace}.logs", ())
        partitions = sorted({(r[0], r[1]) for r in keys})
        await asyncio.gather(self._run_all("log_src_w", [(s,) for s in sorted({s for s, _ in partitions})]),
                             self._run_all("log_hour_w", partitions))
        return len(partitions)

    async def log_sources(self) -> list[str]:
        return sorted(r[0] for r in await self._run(self._ps["log_src_r"], ()))

    async def _log_partitions(self, sources: Sequence[str], s: int, e: int) -> dict[int, list[str]]:
        """The hours in [s, e) that hold logs, each with the sources that logged in it."""
        first, last = s // HOUR_US, (e - 1) // HOUR_US
        found = await asyncio.gather(*(self._run(self._ps["log_hour_r"], (src, first, last)) for src in sources))
        by_hour: dict[int, list[str]] = {}
        for src, rows in zip(sources, found, strict=True):
            for r in rows:
                by_hour.setdefault(r[0], []).append(src)
        return by_hour

    async def _read_log_hour(self, hour: int, sources: Sequence[str], s: int, e: int,
                             query: LogQuery) -> list[tuple[int, int, LogRecord]]:
        lo, hi = max(s, hour * HOUR_US), min(e, (hour + 1) * HOUR_US)
        extra: tuple[int, ...] = ()
        if query.min_level > logging.DEBUG:
            ps, extra = self._ps["log_r_level"], (query.min_level,)
        else:
            ps = self._ps["log_r_desc" if query.newest_first else "log_r_asc"]
        pages = await asyncio.gather(
            *(self._run(ps, (src, hour, shard, lo, hi, *extra)) for src in sources for shard in range(LOG_SHARDS))
        )
        # Filter on the raw columns (level, source, component, host, message) before building records.
        match = query.matches_fields
        rows = [(r[0], r[1], log_from_row(r)) for page in pages for r in page
                if match(r[2], r[3], r[4] or "", r[5] or "", r[6])]
        rows.sort(key=lambda x: (x[0], x[1]), reverse=query.newest_first)
        return rows

    async def query_logs(self, query: LogQuery) -> LogPage:
        s, e = to_us(query.start), to_us(query.end)
        if query.cursor is not None:
            # Nothing on the far side of the cursor can be on this page: skip those hours entirely.
            ts, _ = decode_cursor(query.cursor)
            if query.newest_first:
                e = min(e, ts + 1)
            else:
                s = max(s, ts)
            if e <= s:
                return LogPage(records=[], next_cursor=None)
        sources = list(query.sources) if query.sources is not None else await self.log_sources()
        by_hour = await self._log_partitions(sources, s, e)
        hours = sorted(by_hour, reverse=query.newest_first)
        # A few hours at a time, in the query's order; stop as soon as a page is full, so a narrow
        # search never scans the whole range while a sparse one is not one round trip per hour.
        collected: list[tuple[int, int, LogRecord]] = []
        i, window = 0, 2
        while i < len(hours):
            parts = await asyncio.gather(
                *(self._read_log_hour(h, by_hour[h], s, e, query) for h in hours[i : i + window])
            )
            for part in parts:
                collected.extend(part)
            page = page_logs(collected, query)
            if len(page.records) >= query.limit and page.next_cursor is not None:
                return page
            # A search that has not filled its page yet is a sparse one: widen the next step.
            i, window = i + window, min(window * 2, 32)
        return page_logs(collected, query)

    # --- alarms -------------------------------------------------------------------------------
    async def write_alarm_events(self, events: Sequence[AlarmEvent]) -> None:
        by_id, by_day = [], []
        for ev in events:
            common = (ev.ts_us, ev.seq, ev.action, int(ev.severity), int(ev.latched), ev.state, ev.acked, ev.user,
                      ev.comment, ev.reason, dict(ev.attributes))
            by_id.append((ev.alarm_id, ev.ts.year, *common))
            by_day.append((ev.ts_us // US_PER_DAY, ev.alarm_id, *common))
        await asyncio.gather(self._run_all("alarm_w_id", by_id), self._run_all("alarm_w_day", by_day))

    async def alarm_history(
        self, *, start: datetime, end: datetime, alarm_id: str | None = None, limit: int = 1000
    ) -> list[AlarmEvent]:
        s, e = to_us(start), to_us(end)
        if alarm_id is not None:
            years = range(_year(e - 1), _year(s) - 1, -1)
            pages = [await self._run(self._ps["alarm_r_id"], (alarm_id, y, s, e, limit)) for y in years]
        else:
            pages = []
            total = 0
            for day in reversed(day_range(s, e)):
                page = await self._run(self._ps["alarm_r_day"], (day, s, e, limit))
                pages.append(page)
                total += len(page)
                if total >= limit:
                    break
        rows = [r for page in pages for r in page]
        rows.sort(key=lambda r: (r[1], r[0], r[2]), reverse=True)
        return [alarm_from_row(r) for r in rows[:limit]]


def _as_statement(bound: list[BoundStatement]) -> Statement:
    if len(bound) == 1:
        return bound[0]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for b in bound:
        batch.add(b)
    return batch


def _settle(fut: asyncio.Future[list[Any]], rows: list[Any] | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(rows or [])


def _wall_us() -> int:
    # TTLs are a storage matter measured against the server's wall clock, not the injected domain clock.
    return to_us(datetime.now().astimezone())
