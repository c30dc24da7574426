"""The dispatcher on the embedded bus and archive: archive then ack, live fan-out, poison and unknown points."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.dispatcher import Dispatcher, LiveFanout
from config_db.monitoring import DispatcherConfig
from skyops import codec
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, StreamRetention
from skyops.errors import BackendUnavailableError
from skyops.records import Sample, SampleBatch
from skyops.streams import LIVE_SAMPLES, MON_SAMPLES
from skyops.timeutil import FakeClock

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
POINTS = {"lasilla.asm.seeing": "long", "ntt.tcs.state": "long"}
RET = StreamRetention(max_len=10_000, max_age=timedelta(hours=1))
CONFIG = DispatcherConfig(batch_size=10, block_ms=10, min_idle_ms=0)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    client = FakeRedis(server=FakeServer(version=(7, 0)))
    yield Bus(client, clock=FakeClock(T0))
    await client.aclose()


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[SqliteArchive]:
    a = SqliteArchive(tmp_path / "a.sqlite3", points=POINTS)
    await a.open()
    yield a
    await a.close()


def batch(start_s: int, n: int, point: str = "lasilla.asm.seeing") -> SampleBatch:
    return SampleBatch.from_samples(Sample(point, T0 + timedelta(seconds=start_s + i), 0.5 + i / 100) for i in range(n))


async def test_archives_then_acks(bus: Bus, archive: SqliteArchive) -> None:
    await bus.publish_many(MON_SAMPLES, [codec.encode_samples(batch(0, 5)), codec.encode_samples(batch(5, 5))],
                           retention=RET)
    d = Dispatcher(bus, archive, CONFIG, consumer="d1", clock=FakeClock(T0 + timedelta(seconds=1)))
    assert await d.consumer.run_once() == 2
    got = await archive.raw("lasilla.asm.seeing", T0, T0 + timedelta(minutes=1))
    assert len(got) == 10
    assert await bus.lag(MON_SAMPLES, "archive") == 0
    assert d.last_archive_latency_us == 1_000_000
    assert await d.flush_aggregates() == 1
    assert (await archive.latest(["lasilla.asm.seeing"]))["lasilla.asm.seeing"].value == 0.54


@pytest.mark.parametrize("kind", ["dispatcher", "live_group"])
async def test_live_fan_out_carries_the_batches(bus: Bus, archive: SqliteArchive, kind: str) -> None:
    ready = asyncio.Event()
    received: list[bytes] = []

    async def listen() -> None:
        async for payload in bus.subscribe(LIVE_SAMPLES, ready=ready):
            received.append(payload)

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 5)
    fanout = LiveFanout(bus, consumer="live-1", block_ms=10)
    if kind == "live_group":
        await fanout.consumer.run_once()  # joins at the stream's end, before anything is published
    payload = codec.encode_samples(batch(0, 3))
    await bus.publish(MON_SAMPLES, payload, retention=RET)
    if kind == "dispatcher":
        await Dispatcher(bus, archive, CONFIG, consumer="d1", live_channel=LIVE_SAMPLES).consumer.run_once()
    else:
        assert await fanout.consumer.run_once() == 1
        assert fanout.forwarded == 1
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert received == [payload]


async def test_corrupt_entries_and_unknown_points_are_dropped_not_blocking(
    bus: Bus, archive: SqliteArchive, caplog: pytest.LogCaptureFixture
) -> None:
    mixed = SampleBatch.concat([batch(0, 2), batch(0, 2, point="not.configured.point")])
    await bus.publish_many(MON_SAMPLES, [b"\x00garbage", codec.encode_samples(mixed)], retention=RET)
    d = Dispatcher(bus, archive, CONFIG, consumer="d1", live_channel=None)
    assert await d.consumer.run_once() == 2
    assert (d.corrupt_entries, d.unknown_samples, d.archived) == (1, 2, 2)
    assert "not.configured.point" in caplog.text
    assert "undecodable" in caplog.text


class FlakyArchive(SqliteArchive):
    """Fails its next write, as a Cassandra timeout would."""

    fail_next = True

    async def write_samples(self, batch: SampleBatch) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BackendUnavailableError("Cassandra timed out")
        await super().write_samples(batch)


async def test_archive_failure_leaves_entries_pending_and_a_retry_archives_them(bus: Bus, tmp_path: Path) -> None:
    archive = FlakyArchive(tmp_path / "f.sqlite3", points=POINTS)
    await archive.open()
    await bus.publish(MON_SAMPLES, codec.encode_samples(batch(0, 4)), retention=RET)
    d = Dispatcher(bus, archive, CONFIG, consumer="d1", live_channel=None)
    assert await d.consumer.run_once() == 0
    assert await bus.pending_count(MON_SAMPLES, "archive") == 1
    assert await d.consumer.run_once() == 1
    assert len(await archive.raw("lasilla.asm.seeing", T0, T0 + timedelta(minutes=1))) == 4
    await archive.close()


async def test_run_stops_and_flushes(bus: Bus, archive: SqliteArchive) -> None:
    await bus.publish(MON_SAMPLES, codec.encode_samples(batch(0, 4)), retention=RET)
    d = Dispatcher(bus, archive, CONFIG, consumer="d1", live_channel=None)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    for _ in range(200):
        if d.archived == 4:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert archive.dirty_hours() == 0
    assert d.archived == 4
