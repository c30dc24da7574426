"""Fixtures of the alarm tests: a private embedded bus and a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fakeredis import FakeServer

from skyops.bus import Bus
from skyops.timeutil import FakeClock
from tests.support.bus import embedded_bus, fake_server

T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def server() -> FakeServer:
    return fake_server()


@pytest.fixture
async def bus(server: FakeServer, clock: FakeClock) -> AsyncIterator[Bus]:
    async with embedded_bus(server, clock) as b:
        yield b
