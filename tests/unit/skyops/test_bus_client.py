"""Opening the bus and the errors it reports, on the embedded backend."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from skyops.bus import Bus, NoSuchGroupError, StreamRetention, open_redis
from skyops.errors import BackendUnavailableError

RETENTION = StreamRetention(max_len=100, max_age=timedelta(hours=1))


async def test_embedded_clients_in_one_process_share_one_bus() -> None:
    producer, consumer = open_redis(None), open_redis(None)
    stream = f"test:embedded:{uuid.uuid4().hex}"
    try:
        await Bus(producer).publish(stream, b"\x00\xff", retention=RETENTION)
        raw = await consumer.xrange(stream)
        assert raw[0][1][b"d"] == b"\x00\xff", "replies stay bytes"
    finally:
        await producer.delete(stream)
        await producer.aclose()
        await consumer.aclose()


async def test_an_unreachable_server_is_reported_as_backend_unavailable() -> None:
    client = open_redis("redis://127.0.0.1:1/0")  # creating the client connects to nothing yet
    try:
        with pytest.raises(BackendUnavailableError, match="Redis is unreachable"):
            await Bus(client).length("s")
    finally:
        await client.aclose()


async def test_reading_from_a_group_that_does_not_exist_says_so() -> None:
    client = open_redis(None)
    bus = Bus(client)
    stream = f"test:nogroup:{uuid.uuid4().hex}"
    try:
        await bus.publish(stream, b"x", retention=RETENTION)
        with pytest.raises(NoSuchGroupError, match="archive"):
            await bus.read(stream, "archive", "d1", count=1)
        with pytest.raises(NoSuchGroupError):
            await bus.lag(stream, "archive")
        with pytest.raises(NoSuchGroupError):
            await bus.lag(f"{stream}:absent", "archive")
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_an_entry_with_a_garbled_producer_time_is_still_delivered() -> None:
    client = open_redis(None)
    bus = Bus(client)
    stream = f"test:garbled:{uuid.uuid4().hex}"
    try:
        await bus.ensure_group(stream, "g")
        await client.xadd(stream, {b"d": b"batch", b"t": b"not-a-number"})
        [entry] = await bus.read(stream, "g", "c", count=10)
        assert entry.payload == b"batch"
        assert entry.produced_us is None
        assert bus.latency_us(entry) is None
    finally:
        await client.delete(stream)
        await client.aclose()


@pytest.mark.parametrize(("count", "block_ms"), [(0, None), (10, 0), (10, -1)])
async def test_reads_that_would_block_forever_or_return_nothing_are_refused(count: int, block_ms: int | None) -> None:
    # Redis reads BLOCK 0 as "wait forever", which would hang a consumer past its stop request.
    client = open_redis(None)
    try:
        with pytest.raises(ValueError, match="must be positive"):
            await Bus(client).read("s", "g", "c", count=count, block_ms=block_ms)
    finally:
        await client.aclose()
