"""The process-wide `logging` handler: never blocks, batches to the bus, survives a bus outage."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from config_db.logging import HandlerConfig, LogFilters
from logging_svc.domain.filters import ComponentLevels
from logging_svc.handler import BusLogHandler, LogShipper, install_bus_logging, uninstall_bus_logging
from skyops.bus import Bus, StreamRetention
from skyops.errors import InvalidRecordError
from skyops.records import LogRecord
from skyops.timeutil import FakeClock
from tests.unit.logging_svc.conftest import stream_records

RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    lg = logging.getLogger("test.logging_svc.handler")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    yield lg
    for h in list(lg.handlers):
        lg.removeHandler(h)


def make(logger: logging.Logger, bus: Bus, clock: FakeClock, *, max_buffer: int = 1000,
         filters: LogFilters | None = None, batch_size: int = 500) -> tuple[BusLogHandler, LogShipper]:
    handler = BusLogHandler(levels=ComponentLevels(filters or LogFilters()), max_buffer=max_buffer)
    logger.addHandler(handler)
    shipper = LogShipper(handler, bus, source="planner", host="ops1", retention=RETENTION, clock=clock,
                         batch_size=batch_size, batches_per_round=2)
    return handler, shipper


async def published(bus: Bus) -> list[list[LogRecord]]:
    return await stream_records(bus.redis)


async def test_records_reach_the_stream_in_batches_with_their_context(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    _, shipper = make(logger, bus, clock, batch_size=2)
    logger.info("slewing to %s", "SN2026abc", extra={"ob_id": "OB-17", "trace_id": "t-1", "axis": 2})
    logger.warning("dome at %d%%", 80)
    try:
        raise ValueError("encoder glitch")
    except ValueError:
        logger.exception("tracking lost")
    assert await shipper.flush_once() == 3
    batches = await published(bus)
    assert [len(b) for b in batches] == [2, 1]
    first, second, third = (r for b in batches for r in b)
    assert (first.message, first.level, first.source, first.host) == ("slewing to SN2026abc", 20, "planner", "ops1")
    assert first.component == "test.logging_svc.handler"
    assert (first.ob_id, first.trace_id, first.attributes) == ("OB-17", "t-1", {"axis": "2"})
    assert second.message == "dome at 80%"
    assert third.level == logging.ERROR and "ValueError: encoder glitch" in third.message


async def test_a_full_queue_drops_and_counts_instead_of_blocking(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    handler, _ = make(logger, bus, clock, max_buffer=5)
    for i in range(12):
        logger.info("line %d", i)
    assert handler.queued() == 5
    assert handler.dropped_total == 7
    assert handler.take_dropped() == 7
    assert handler.take_dropped() == 0


async def test_bus_outage_buffers_then_reports_the_drops_once_back(
    logger: logging.Logger, bus: Bus, clock: FakeClock, server: FakeServer
) -> None:
    _, shipper = make(logger, bus, clock, max_buffer=4, batch_size=2)
    server.connected = False
    for i in range(3):
        logger.info("before %d", i)
    assert await shipper.flush_once() == 0
    assert not shipper.bus_up and shipper.publish_failures == 1
    # Held by the shipper (3) while the queue fills up to its bound (4); the rest are dropped.
    for i in range(10):
        logger.info("during %d", i)
    assert await shipper.flush_once() == 0
    assert shipper.buffered == 7
    clock.advance(timedelta(minutes=5))
    server.connected = True
    sent = 0
    while n := await shipper.flush_once():
        sent += n
    assert sent == 8
    records = [r for b in await published(bus) for r in b]
    kept = [r.message for r in records if r.component != "logging_svc.handler"]
    assert kept == [f"before {i}" for i in range(3)] + [f"during {i}" for i in range(4)]
    report = [r for r in records if r.component == "logging_svc.handler"]
    assert len(report) == 1
    assert report[0].level == logging.WARNING and report[0].attributes == {"dropped": "6"}
    assert "6 log records were dropped" in report[0].message
    assert report[0].ts == clock.now()


async def test_component_filters_apply_at_the_source_and_change_at_run_time(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    filters = LogFilters(components={"test.logging_svc": "WARNING"})
    handler, shipper = make(logger, bus, clock, filters=filters)
    logger.info("hidden")
    logger.error("shown")
    handler.levels.update(LogFilters(components={"test.logging_svc.handler": "DEBUG"}))
    logger.debug("now shown")
    await shipper.flush_once()
    assert [r.message for b in await published(bus) for r in b] == ["shown", "now shown"]


async def test_records_of_the_shipper_thread_are_ignored(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    handler, _ = make(logger, bus, clock)
    handler.ignored_thread = threading.get_ident()
    logger.warning("Redis is unreachable")
    assert handler.queued() == 0


async def test_an_oversize_message_is_truncated_and_marked(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    _, shipper = make(logger, bus, clock)
    logger.info("x" * (LogRecord.MAX_MESSAGE + 10))
    await shipper.flush_once()
    (rec,) = (r for b in await published(bus) for r in b)
    assert len(rec.message) == LogRecord.MAX_MESSAGE
    assert rec.attributes["truncated_from"] == str(LogRecord.MAX_MESSAGE + 10)


def test_installed_handler_ships_from_its_own_thread_and_flushes_on_stop(
    logger: logging.Logger, server: FakeServer
) -> None:
    thread = install_bus_logging(
        source="alarms",
        bus_factory=lambda: Bus(FakeRedis(server=server, decode_responses=False)),
        config=HandlerConfig(flush_interval=timedelta(milliseconds=20)),
        filters=LogFilters(),
        retention=RETENTION,
        logger=logger,
    )
    for i in range(50):
        logger.info("event %d", i)
    uninstall_bus_logging(thread, logger)
    assert thread.error is None
    assert thread.handler not in logger.handlers

    async def read() -> list[str]:
        redis = FakeRedis(server=server, decode_responses=False)
        try:
            return [r.message for batch in await stream_records(redis) for r in batch]
        finally:
            await redis.aclose()

    assert asyncio.run(read()) == [f"event {i}" for i in range(50)]


def test_a_bad_source_name_is_refused_at_construction(bus: Bus) -> None:
    handler = BusLogHandler(levels=ComponentLevels(LogFilters()), max_buffer=10)
    with pytest.raises(InvalidRecordError, match="log source is 170 characters"):
        LogShipper(handler, bus, source="Not A Source Name" * 10, retention=RETENTION)


async def test_the_message_is_fixed_at_the_call_even_if_its_arguments_change_later(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    _, shipper = make(logger, bus, clock)
    state = {"dome": "open"}
    logger.info("dome is %s", state)
    state["dome"] = "closed"
    await shipper.flush_once()
    (rec,) = (r for b in await published(bus) for r in b)
    assert rec.message == "dome is {'dome': 'open'}"


async def test_a_formatter_set_on_the_handler_shapes_the_message(
    logger: logging.Logger, bus: Bus, clock: FakeClock
) -> None:
    handler, shipper = make(logger, bus, clock)
    handler.setFormatter(logging.Formatter("[%(funcName)s] %(message)s"))
    logger.warning("wind %d", 18)
    await shipper.flush_once()
    (rec,) = (r for b in await published(bus) for r in b)
    assert rec.message == "[test_a_formatter_set_on_the_handler_shapes_the_message] wind 18"


@pytest.mark.parametrize("caller_info", [False, True])
def test_caller_lookups_follow_the_config_and_are_restored_on_uninstall(
    logger: logging.Logger, server: FakeServer, caller_info: bool
) -> None:
    before = (logging._srcfile, logging.logProcesses)
    thread = install_bus_logging(
        source="alarms", bus_factory=lambda: Bus(FakeRedis(server=server, decode_responses=False)),
        config=HandlerConfig(caller_info=caller_info), filters=LogFilters(), retention=RETENTION, logger=logger,
    )
    seen: list[logging.LogRecord] = []

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    probe = Probe()
    logger.addHandler(probe)
    logger.info("where am I")
    logger.removeHandler(probe)
    uninstall_bus_logging(thread, logger)
    assert (seen[0].funcName != "(unknown function)") is caller_info
    assert (seen[0].process is not None) is caller_info
    assert (logging._srcfile, logging.logProcesses) == before
