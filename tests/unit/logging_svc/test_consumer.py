"""The log consumer on the embedded backends: archive, central filter, live tail, bad entries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from config_db.logging import LogFilters
from logging_svc.consumer import LogConsumer
from skyops import codec, streams
from skyops.archive.port import LogQuery
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, StreamRetention
from skyops.records import LogBatch, LogRecord
from tests.unit.logging_svc.conftest import T0

RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[SqliteArchive]:
    a = SqliteArchive(tmp_path / "archive.sqlite3")
    await a.open()
    yield a
    await a.close()


def rec(i: int, *, source: str = "planner", level: int = 20) -> LogRecord:
    return LogRecord(ts=T0 + timedelta(seconds=i), level=level, source=source, message=f"m{i}")


async def everything(archive: SqliteArchive) -> list[LogRecord]:
    page = await archive.query_logs(LogQuery(start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=1),
                                             newest_first=False, limit=10_000))
    return page.records


async def test_batches_are_archived_filtered_and_acknowledged(bus: Bus, archive: SqliteArchive) -> None:
    records = [rec(0), rec(1, source="devices", level=10), rec(2, source="devices", level=30)]
    await bus.publish_many(streams.LOG_RECORDS, [codec.encode_logs(records[:2]), codec.encode_logs(records[2:])],
                           retention=RETENTION)
    consumer = LogConsumer(bus, archive, consumer="c1", filters=LogFilters(sources={"devices": "INFO"}),
                           block_ms=10)
    assert await consumer.run_once() == 2
    assert [r.message for r in await everything(archive)] == ["m0", "m2"]
    assert (consumer.archived, consumer.filtered_out) == (2, 1)
    assert await bus.lag(streams.LOG_RECORDS, "archive") == 0


async def test_filters_change_at_run_time(bus: Bus, archive: SqliteArchive) -> None:
    consumer = LogConsumer(bus, archive, consumer="c1", filters=LogFilters(default_level="ERROR"), block_ms=10)
    await bus.publish(streams.LOG_RECORDS, codec.encode_logs([rec(0)]), retention=RETENTION)
    await consumer.run_once()
    consumer.update_filters(LogFilters())
    await bus.publish(streams.LOG_RECORDS, codec.encode_logs([rec(1)]), retention=RETENTION)
    await consumer.run_once()
    assert [r.message for r in await everything(archive)] == ["m1"]


async def test_a_corrupt_entry_is_counted_and_skipped_without_losing_its_neighbours(
    bus: Bus, archive: SqliteArchive
) -> None:
    payloads = [codec.encode_logs([rec(0)]), b"\x4cgarbage", codec.encode_logs([rec(1)])]
    await bus.publish_many(streams.LOG_RECORDS, payloads, retention=RETENTION)
    consumer = LogConsumer(bus, archive, consumer="c1", block_ms=10)
    assert await consumer.run_once() == 3
    assert consumer.corrupt_entries == 1
    assert [r.message for r in await everything(archive)] == ["m0", "m1"]


async def test_a_failed_archive_write_leaves_the_batch_pending_for_retry(bus: Bus, archive: SqliteArchive) -> None:
    await bus.publish(streams.LOG_RECORDS, codec.encode_logs([rec(0)]), retention=RETENTION)
    consumer = LogConsumer(bus, archive, consumer="c1", block_ms=10)
    real_write = archive.write_log_batch
    calls = 0

    async def flaky(batch: LogBatch) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("archive down")
        await real_write(batch)

    archive.write_log_batch = flaky  # type: ignore[method-assign]
    assert await consumer.run_once() == 0
    assert await bus.pending_count(streams.LOG_RECORDS, "archive") == 1
    assert await consumer.run_once() == 1
    assert [r.message for r in await everything(archive)] == ["m0"]


async def test_archived_batches_are_broadcast_to_the_live_tail(bus: Bus, archive: SqliteArchive) -> None:
    ready = asyncio.Event()
    got: list[LogRecord] = []

    async def listen() -> None:
        async for payload in bus.subscribe(streams.LIVE_LOGS, ready=ready):
            got.extend(codec.decode_logs(payload))
            if len(got) >= 1:
                return

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 5)
    await bus.publish(streams.LOG_RECORDS, codec.encode_logs([rec(0), rec(1, source="devices", level=10)]),
                      retention=RETENTION)
    consumer = LogConsumer(bus, archive, consumer="c1", filters=LogFilters(sources={"devices": "INFO"}),
                           block_ms=10)
    await consumer.run_once()
    try:
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [r.message for r in got] == ["m0"]
