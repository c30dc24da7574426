"""The Cassandra log write path: byte-sized single-partition batches, absent values, replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import HOUR_US, LOG_SHARDS, LogQuery, log_ids
from skyops.records import LogBatch, LogRecord

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


async def everything(archive: CassandraArchive) -> list[LogRecord]:
    q = LogQuery(start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=2), newest_first=False, limit=100_000)
    return (await archive.query_logs(q)).records


async def test_a_large_write_is_split_into_many_batches_and_kept_whole(cassandra: CassandraArchive) -> None:
    # 3,000 records of ~1 KB in one source-hour: about 3 MB, far beyond one batch's byte budget.
    records = [LogRecord(ts=T0 + timedelta(milliseconds=i), level=(10, 20, 30, 40)[i % 4], source="tcs",
                         message=f"{i:05d} " + "encoder ok " * 90, component="tcs.axis", host=f"h{i % 2}",
                         attributes={"i": str(i)} if i % 3 else {}, trace_id=f"t{i}" if i % 5 == 0 else None,
                         ob_id="OB-1" if i % 7 == 0 else None)
               for i in range(3000)]
    batch = LogBatch.from_records(records)
    ids = log_ids(batch)
    keys = list(zip(batch.source, (batch.ts_us // HOUR_US).tolist(),
                    (ids % LOG_SHARDS).tolist(), strict=True))
    statements = list(cassandra._log_batches(batch, ids, keys))
    assert len(statements) > 40  # ~3 MB in batches of at most LOG_BATCH_BYTES
    assert sum(len(s) for s in statements) == 3000
    await cassandra.write_log_batch(batch)
    await cassandra.write_log_batch(batch.part(0, 500))  # a replay lands on the same rows
    got = await everything(cassandra)
    assert got == records


async def test_absent_values_read_back_as_absent(cassandra: CassandraArchive) -> None:
    records = [LogRecord(ts=T0, level=20, source="hmi", message="plain"),
               LogRecord(ts=T0 + timedelta(seconds=1), level=20, source="hmi", message="full", component="c",
                         host="h", attributes={"user": "anna", "é": "ü"}, trace_id="t", ob_id="OB-2")]
    await cassandra.write_logs(records)
    assert await everything(cassandra) == records
