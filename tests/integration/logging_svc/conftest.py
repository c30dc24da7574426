"""Real Redis and Cassandra for the logging service's end-to-end tests, isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from skyops.archive.cassandra import CassandraArchive
from skyops.bus import Bus, open_redis


@pytest.fixture
def names() -> dict[str, str]:
    """A private stream and live channel, so tests never meet other users of the shared Redis."""
    tag = uuid.uuid4().hex[:10]
    return {"stream": f"test.log.records.{tag}", "live": f"test.live.logs.{tag}"}


@pytest.fixture
async def real_bus(redis_url: str, names: dict[str, str]) -> AsyncIterator[Bus]:
    redis = open_redis(redis_url)
    yield Bus(redis)
    await redis.delete(names["stream"])
    await redis.aclose()


@pytest.fixture
async def cassandra(cassandra_hosts: list[str]) -> AsyncIterator[CassandraArchive]:
    a = CassandraArchive(cassandra_hosts, keyspace=f"t_logs_{uuid.uuid4().hex[:10]}")
    await a.open()
    try:
        yield a
    finally:
        await a.drop_keyspace()
        await a.close()
