"""The stream consumer loop on the embedded bus: retries, backoff, restarts and outages, without real sleeps."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from skyops.bus import Bus, Entry, StreamConsumer, StreamRetention, open_redis
from skyops.timeutil import FakeClock

T0 = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=1))


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    client = FakeRedis(server=FakeServer(version=(7, 0)))
    yield Bus(client, clock=FakeClock(T0))
    await client.aclose()


@pytest.fixture
def stream() -> str:
    return f"mon.samples:{uuid.uuid4().hex}"


class Pauses:
    """The consumer's sleep: records each backoff instead of waiting, and can stop the loop."""

    def __init__(self, stop: asyncio.Event, *, stop_after: int) -> None:
        self.delays: list[float] = []
        self._stop = stop
        self._stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) >= self._stop_after:
            self._stop.set()


async def test_the_loop_survives_handler_errors_backs_off_and_then_drains(bus: Bus, stream: str) -> None:
    await bus.publish_many(stream, [b"a", b"b", b"c"], retention=RETENTION)
    stop = asyncio.Event()
    calls: list[list[bytes]] = []

    async def flaky(entries: list[Entry]) -> None:
        calls.append([e.payload for e in entries])
        if len(calls) <= 3:
            raise TimeoutError("archive write timed out")
        stop.set()

    pauses = Pauses(stop, stop_after=100)
    consumer = StreamConsumer(
        bus, stream=stream, group="archive", consumer="d1", handler=flaky, block_ms=1, sleep=pauses
    )
    async with asyncio.timeout(5):
        await consumer.run(stop)

    assert calls == [[b"a", b"b", b"c"]] * 4
    assert pauses.delays == [0.1, 0.2, 0.4]
    assert consumer.handler_failures == 3
    assert consumer.processed == 3
    assert consumer.consecutive_failures == 0
    assert await bus.pending_count(stream, "archive") == 0


def test_backoff_doubles_and_is_capped() -> None:
    consumer = StreamConsumer(
        Bus(FakeRedis(server=FakeServer(version=(7, 0)))),
        stream="s",
        group="g",
        consumer="c",
        handler=_ignore,
        backoff_s=0.5,
        max_backoff_s=3.0,
    )
    delays = []
    for failures in range(6):
        consumer.consecutive_failures = failures
        delays.append(consumer.backoff_delay())
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


async def test_handler_errors_are_logged_with_their_reason(
    bus: Bus, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    await bus.publish(stream, b"x", retention=RETENTION)

    async def down(entries: list[Entry]) -> None:
        raise ConnectionError("cassandra node 10.0.0.7 refused the write")

    consumer = StreamConsumer(bus, stream=stream, group="archive", consumer="d1", handler=down, block_ms=1)
    with caplog.at_level(logging.WARNING, logger="skyops.bus"):
        assert await consumer.run_once() == 0

    assert "cassandra node 10.0.0.7 refused the write" in caplog.text
    assert "left pending" in caplog.text


async def test_while_its_handler_fails_a_consumer_pulls_no_more_entries(bus: Bus, stream: str) -> None:
    await bus.publish_many(stream, [b"1", b"2"], retention=RETENTION)
    healthy = False
    handled: list[bytes] = []

    async def archive(entries: list[Entry]) -> None:
        if not healthy:
            raise ConnectionError("archive down")
        handled.extend(e.payload for e in entries)

    consumer = StreamConsumer(
        bus, stream=stream, group="archive", consumer="d1", handler=archive, batch_size=10, block_ms=1
    )
    await consumer.run_once()
    await bus.publish_many(stream, [b"3", b"4", b"5"], retention=RETENTION)
    await consumer.run_once()

    # The new entries wait in the stream (under retention) rather than in this consumer's hands.
    assert await bus.pending_count(stream, "archive") == 2
    assert await bus.lag(stream, "archive") == 5

    healthy = True
    while await consumer.run_once():
        pass
    assert handled == [b"1", b"2", b"3", b"4", b"5"]
    assert await bus.lag(stream, "archive") == 0


async def test_a_consumer_restarted_under_its_name_first_finishes_what_it_was_given(bus: Bus, stream: str) -> None:
    await bus.ensure_group(stream, "logs")
    await bus.publish_many(stream, [b"old1", b"old2"], retention=RETENTION)
    # The previous process read these and died before acknowledging.
    assert len(await bus.read(stream, "logs", "logs-1", count=10)) == 2
    await bus.publish(stream, b"new", retention=RETENTION)
    batches: list[list[bytes]] = []

    async def record(entries: list[Entry]) -> None:
        batches.append([e.payload for e in entries])

    # min_idle is an hour: only the restart path can pick these up now.
    restarted = StreamConsumer(
        bus, stream=stream, group="logs", consumer="logs-1", handler=record, min_idle_ms=3_600_000, block_ms=1
    )
    await restarted.run_once()
    await restarted.run_once()

    assert batches == [[b"old1", b"old2"], [b"new"]]
    assert await bus.pending_count(stream, "logs") == 0


async def test_a_consumer_recreates_its_group_when_the_stream_vanished(bus: Bus, stream: str) -> None:
    handled: list[bytes] = []

    async def record(entries: list[Entry]) -> None:
        handled.extend(e.payload for e in entries)

    consumer = StreamConsumer(bus, stream=stream, group="alarms", consumer="s1", handler=record, block_ms=1)
    await consumer.run_once()
    await bus.redis.delete(stream)  # e.g. a Redis without persistence restarted

    assert await consumer.run_once() == 0
    await bus.publish(stream, b"after", retention=RETENTION)
    assert await consumer.run_once() == 1
    assert handled == [b"after"]


async def test_latency_is_measured_from_the_producer_time_on_the_injected_clock(bus: Bus, stream: str) -> None:
    clock = bus.clock
    assert isinstance(clock, FakeClock)
    await bus.publish(stream, b"x", retention=RETENTION)
    clock.advance(2.5)

    consumer = StreamConsumer(bus, stream=stream, group="hmi", consumer="h1", handler=_ignore, block_ms=1)
    await consumer.run_once()

    assert consumer.last_latency_us == 2_500_000


async def test_the_loop_keeps_retrying_while_redis_is_unreachable() -> None:
    client = open_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    stop = asyncio.Event()
    pauses = Pauses(stop, stop_after=3)
    consumer = StreamConsumer(
        Bus(client), stream="s", group="g", consumer="c", handler=_ignore, block_ms=1, sleep=pauses
    )
    try:
        async with asyncio.timeout(10):
            await consumer.run(stop)
    finally:
        await client.aclose()

    assert consumer.bus_failures == 3
    assert pauses.delays == [0.1, 0.2, 0.4]


async def test_stopping_interrupts_the_default_backoff(bus: Bus, stream: str) -> None:
    await bus.publish(stream, b"x", retention=RETENTION)
    stop = asyncio.Event()

    async def failing(entries: list[Entry]) -> None:
        stop.set()
        raise RuntimeError("boom")

    consumer = StreamConsumer(
        bus, stream=stream, group="g", consumer="c", handler=failing, block_ms=1, backoff_s=600, max_backoff_s=600
    )
    async with asyncio.timeout(5):  # a ten-minute backoff must not hold up the shutdown
        await consumer.run(stop)
    assert consumer.handler_failures == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 0}, {"block_ms": 0}, {"min_idle_ms": -1}, {"backoff_s": 2.0, "max_backoff_s": 1.0}],
)
def test_nonsensical_settings_are_refused(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match="must"):
        StreamConsumer(
            Bus(FakeRedis(server=FakeServer(version=(7, 0)))),
            stream="s",
            group="g",
            consumer="c",
            handler=_ignore,
            **kwargs,  # type: ignore[arg-type]
        )


async def _ignore(entries: list[Entry]) -> None:
    return None
