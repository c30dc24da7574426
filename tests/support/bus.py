"""A private embedded bus (fakeredis) for unit tests: one in-process Redis server per test, closed afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from skyops.bus import Bus
from skyops.timeutil import Clock


def fake_server() -> FakeServer:
    """A fresh in-process Redis server speaking Redis 7 (streams with XAUTOCLAIM)."""
    return FakeServer(version=(7, 0))


@contextlib.asynccontextmanager
async def embedded_bus(server: FakeServer, clock: Clock) -> AsyncIterator[Bus]:
    """A bus on `server` (bytes responses, as from a real Redis) whose entry times come from `clock`.

    Several buses on one server see the same streams, as processes sharing one Redis do.
    """
    redis = FakeRedis(server=server, decode_responses=False)
    try:
        yield Bus(redis, clock=clock)
    finally:
        await redis.aclose()
