"""Fixtures of the logging service's unit tests: a private in-process Redis and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from skyops import codec, streams
from skyops.bus import Bus
from skyops.records import LogRecord
from skyops.timeutil import FakeClock

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer(version=(7, 0))


@pytest.fixture
async def bus(server: FakeServer, clock: FakeClock) -> AsyncIterator[Bus]:
    redis = FakeRedis(server=server, decode_responses=False)
    yield Bus(redis, clock=clock)
    await redis.aclose()


async def stream_records(redis: Any, stream: str = streams.LOG_RECORDS) -> list[list[LogRecord]]:
    """Every log batch a stream holds, decoded, one list per entry."""
    entries: Any = await redis.xrange(stream)
    return [codec.decode_logs(fields[b"d"]) for _, fields in entries]
