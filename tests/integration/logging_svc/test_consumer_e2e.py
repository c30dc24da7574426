"""The `logging` handler → real Redis → log consumer → real Cassandra, including a consumer killed mid-stream."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from config_db.logging import HandlerConfig, LogFilters
from logging_svc.consumer import LogConsumer
from logging_svc.domain.filters import ComponentLevels
from logging_svc.handler import BusLogHandler, LogShipper
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import LogQuery
from skyops.bus import Bus, StreamRetention
from skyops.records import LogBatch, LogRecord

pytestmark = pytest.mark.integration
RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))
T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


class StallingArchive:
    """Passes the first `n` writes through, then hangs: the process is killed while writing."""

    def __init__(self, inner: CassandraArchive, n: int) -> None:
        self.inner, self.n = inner, n
        self.stalled = asyncio.Event()

    async def write_log_batch(self, batch: LogBatch) -> None:
        if self.n == 0:
            self.stalled.set()
            await asyncio.Event().wait()
        self.n -= 1
        await self.inner.write_log_batch(batch)


async def archived(archive: CassandraArchive, start: datetime) -> list[LogRecord]:
    q = LogQuery(start=start - timedelta(minutes=1), end=start + timedelta(hours=1), newest_first=False,
                 limit=100_000)
    return (await archive.query_logs(q)).records


async def test_handler_records_reach_cassandra_through_redis(
    real_bus: Bus, cassandra: CassandraArchive, names: dict[str, str]
) -> None:
    logger = logging.getLogger("test.logging_svc.e2e")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = BusLogHandler(levels=ComponentLevels(LogFilters()), max_buffer=HandlerConfig().max_buffer)
    logger.addHandler(handler)
    try:
        start = datetime.now(UTC)
        for i in range(120):
            logger.info("exposure %d done", i, extra={"ob_id": "OB-3"})
        shipper = LogShipper(handler, real_bus, source="planner", host="ops1", retention=RETENTION,
                             batch_size=50, stream=names["stream"])
        assert await shipper.flush_once() == 120
    finally:
        logger.removeHandler(handler)
    consumer = LogConsumer(real_bus, cassandra, consumer="c1", stream=names["stream"], live_channel=names["live"],
                           block_ms=50)
    while await consumer.run_once():
        pass
    got = await archived(cassandra, start)
    assert [r.message for r in got] == [f"exposure {i} done" for i in range(120)]
    assert {(r.source, r.host, r.ob_id) for r in got} == {("planner", "ops1", "OB-3")}


async def test_a_consumer_killed_mid_stream_loses_nothing(
    real_bus: Bus, cassandra: CassandraArchive, names: dict[str, str]
) -> None:
    records = [LogRecord(ts=T0 + timedelta(milliseconds=i), level=20, source=f"s{i % 3}", message=f"m{i}")
               for i in range(1000)]
    payloads = [codec.encode_logs(records[i : i + 100]) for i in range(0, 1000, 100)]
    await real_bus.publish_many(names["stream"], payloads, retention=RETENTION)

    stalling = StallingArchive(cassandra, n=2)
    victim = LogConsumer(real_bus, stalling, consumer="victim", stream=names["stream"],  # type: ignore[arg-type]
                         live_channel=names["live"], batch_size=2, block_ms=50)
    stop = asyncio.Event()
    task = asyncio.create_task(victim.run(stop))
    await asyncio.wait_for(stalling.stalled.wait(), 10)
    task.cancel()  # killed while writing its third read: those entries stay pending, unacknowledged
    with pytest.raises(asyncio.CancelledError):
        await task
    assert victim.loop.processed == 4
    assert await real_bus.pending_count(names["stream"], "archive") == 2

    survivor = LogConsumer(real_bus, cassandra, consumer="survivor", stream=names["stream"],
                           live_channel=names["live"], batch_size=3, block_ms=50, min_idle_ms=0)
    while await survivor.run_once():
        pass
    assert survivor.loop.reclaimed == 2
    assert await real_bus.lag(names["stream"], "archive") == 0
    got = await archived(cassandra, T0)
    assert sorted(r.message for r in got) == sorted(r.message for r in records)
    assert len(got) == 1000


async def test_the_log_directory_can_be_rebuilt_for_older_logs(cassandra: CassandraArchive) -> None:
    records = [LogRecord(ts=T0 + timedelta(hours=h), level=30, source=src, message=f"{src} {h}")
               for h in range(3) for src in ("dome", "tcs")]
    await cassandra.write_logs(records)
    # As if written before the directory existed: a search finds nothing until it is rebuilt.
    await cassandra._run(f"TRUNCATE {cassandra.keyspace}.log_hours", ())
    q = LogQuery(start=T0, end=T0 + timedelta(hours=3), newest_first=False)
    assert (await cassandra.query_logs(q)).records == []
    assert await cassandra.rebuild_log_directory() == 6
    assert sorted(r.message for r in (await cassandra.query_logs(q)).records) == sorted(r.message for r in records)
