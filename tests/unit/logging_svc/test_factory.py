"""The wired logging service on the embedded backends: archive, live filter change, clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from config_db.logging import LogFilters, LoggingConfig, load_logging_config
from logging_svc.factory import build_logging_service
from skyops import codec, streams
from skyops.archive.port import LogQuery
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus
from skyops.records import LogRecord
from tests.unit.logging_svc.conftest import T0


async def wait_for(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll an in-process condition; the bound only guards against a hang."""
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


async def test_service_archives_and_follows_filter_changes(bus: Bus, tmp_path: Path) -> None:
    archive = SqliteArchive(tmp_path / "a.sqlite3")
    await archive.open()
    service = build_logging_service(bus=bus, archive=archive, config=LoggingConfig(), consumer_name="c1",
                                    with_syslog=False)
    service.consumer.loop.block_ms = 20
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    query = LogQuery(start=T0, end=T0 + timedelta(hours=1))

    async def count() -> int:
        return len((await archive.query_logs(query)).records)

    try:
        await bus.publish(streams.LOG_RECORDS, codec.encode_logs([LogRecord(ts=T0, level=20, source="hmi",
                                                                            message="a")]),
                          retention=LoggingConfig().retention)
        async def archived_one() -> bool:
            return await count() == 1

        async def watching() -> bool:
            return await bus.subscribers("config.logging.filters") > 0

        async def applied() -> bool:
            return service.consumer.filters.default_level == 40

        await wait_for(archived_one)
        await wait_for(watching)
        await service.filters.save(LogFilters(default_level="ERROR"))
        await wait_for(applied)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await archive.close()


def test_shipped_defaults_load() -> None:
    config = load_logging_config()
    assert config.filters.source_level("devices") == 20
    assert config.filters.component_level("urllib3.connectionpool") == 30
    assert set(config.http.keys) == {"hmi", "deploy", "ves_sync"}
