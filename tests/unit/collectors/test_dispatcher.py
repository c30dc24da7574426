"""The dispatcher on the embedded bus and archive: hold, archive then ack, takeover, live fan-out, poison input."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.dispatcher import Dispatcher, LiveFanout
from config_db.loader import ConfigError, default_path
from config_db.monitoring import DispatcherConfig, load_monitoring
from skyops import codec
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, StreamRetention
from skyops.errors import BackendUnavailableError
from skyops.records import Sample, SampleBatch
from skyops.streams import LIVE_SAMPLES, MON_SAMPLES
from skyops.timeutil import FakeClock, to_us

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
POINTS = {"lasilla.asm.seeing": "long", "ntt.tcs.state": "long"}
RET = StreamRetention(max_len=10_000, max_age=timedelta(hours=1))
# Writes every read at once (no holding): the simplest shape, for what does not depend on holding.
CONFIG = DispatcherConfig(batch_size=10, block_ms=10, min_idle_ms=0, hold_s=0)
# Holds samples for their 60-s blocks ("long" class), at most 30 s, with 2 s grace.
HOLDING = DispatcherConfig(batch_size=10, block_ms=10, min_idle_ms=10_000, hold_s=30, block_grace_s=2)


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
    await d.tick()  # latest values are written by the tick, apart from the blocks
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

    async def write_samples(self, batch: SampleBatch, *, latest: bool = True) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BackendUnavailableError("Cassandra timed out")
        await super().write_samples(batch, latest=latest)


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


def sweep(t_s: int, value: float = 1.0) -> bytes:
    """Both points at T0 + t_s (one bus entry)."""
    ts = T0 + timedelta(seconds=t_s)
    state = "TRACKING" if t_s % 2 else "SLEWING"
    return codec.encode_samples(SampleBatch.from_samples(
        [Sample("lasilla.asm.seeing", ts, value + t_s), Sample("ntt.tcs.state", ts, state)]
    ))


async def idle_for_a_minute(bus: Bus, consumer: str, ids: list[str]) -> None:
    """As if `consumer` had left these entries untouched for a minute (XCLAIM IDLE sets the idle time)."""
    await bus.redis.xclaim(MON_SAMPLES, "archive", consumer, 0, list[Any](ids), idle=60_000, justid=True)


async def chunk_count(archive: SqliteArchive, point: str) -> int:
    return len(await archive._read_chunks(archive.retention_of(point), point, 0, 2**62))


async def test_samples_are_held_until_their_block_is_complete_then_written_as_one_row_and_acked(
    bus: Bus, archive: SqliteArchive
) -> None:
    clock = FakeClock(T0 + timedelta(seconds=1))
    d = Dispatcher(bus, archive, HOLDING, consumer="d1", clock=clock)
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(60)], retention=RET)
    for _ in range(6):  # 10 entries a read
        await d.consumer.run_once()
    # The minute [0, 60) is not complete yet: nothing archived, every entry pending, held.
    assert d.archived == 0
    assert await bus.pending_count(MON_SAMPLES, "archive") == 60
    assert d.hold.held_entries == 60
    # ... but the latest values are current.
    await d.tick()
    latest = await archive.latest()
    assert latest["lasilla.asm.seeing"].value == 60.0 and latest["ntt.tcs.state"].value == "TRACKING"

    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(60, 63)], retention=RET)
    await d.consumer.run_once()  # data at 62 s: the first minute is complete (2 s grace): written in the background
    await d.settle()
    assert d.archived == 120
    assert await bus.pending_count(MON_SAMPLES, "archive") == 3
    assert await chunk_count(archive, "lasilla.asm.seeing") == 1  # one row holds the whole minute
    got = await archive.raw("ntt.tcs.state", T0, T0 + timedelta(minutes=2))
    assert len(got) == 60 and got.values()[:2] == ["SLEWING", "TRACKING"]


async def test_a_quiet_stream_is_written_after_the_longest_hold_by_the_tick(bus: Bus, archive: SqliteArchive) -> None:
    clock = FakeClock(T0 + timedelta(seconds=1))
    d = Dispatcher(bus, archive, HOLDING, consumer="d1", clock=clock)
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(5)], retention=RET)
    await d.consumer.run_once()
    clock.advance(29)
    await d.tick()
    assert d.archived == 0
    clock.advance(1)
    await d.tick()
    await d.settle()
    assert d.archived == 10
    assert await bus.lag(MON_SAMPLES, "archive") == 0
    assert d.last_archive_latency_us == 31_000_000  # produced at T0 on the bus clock


async def test_stopping_writes_and_acks_everything_held(bus: Bus, archive: SqliteArchive) -> None:
    d = Dispatcher(bus, archive, HOLDING, consumer="d1", clock=FakeClock(T0))
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(5)], retention=RET)
    stop = asyncio.Event()
    stop.set()
    await d.consumer.run_once()
    await d.run(stop)  # returns at once: drains what is held
    assert d.archived == 10
    assert await bus.lag(MON_SAMPLES, "archive") == 0
    assert len(await archive.latest()) == 2


async def test_held_entries_are_touched_so_the_group_does_not_hand_them_to_another_dispatcher(
    bus: Bus, archive: SqliteArchive
) -> None:
    d = Dispatcher(bus, archive, HOLDING, consumer="d1", clock=FakeClock(T0))
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(5)], retention=RET)
    await d.consumer.run_once()
    ids = d.hold.entry_ids()
    # As if d1 had held them for a minute without touching them.
    await idle_for_a_minute(bus, "d1", ids)
    await d.tick()
    other = Dispatcher(bus, archive, HOLDING, consumer="d2", clock=FakeClock(T0))
    await other.consumer.run_once()
    assert other.consumer.reclaimed == 0 and other.hold.held_entries == 0
    # Untouched for longer than min_idle (d1 died): d2 takes them over.
    await idle_for_a_minute(bus, "d1", ids)
    await other.consumer.run_once()
    assert other.consumer.reclaimed == 5 and other.hold.held_entries == 5


async def test_a_takeover_replays_held_entries_and_a_reader_sees_every_sample_once(
    bus: Bus, archive: SqliteArchive
) -> None:
    """A wrote part of what it held and died before acknowledging; B groups the replay differently."""
    a = Dispatcher(bus, archive, HOLDING, consumer="a", clock=FakeClock(T0))
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(30)], retention=RET)
    await a.consumer.run_once()  # 10 entries: t 0..9
    release = a.hold.release(to_us(T0), everything=True)
    assert release is not None
    await archive.write_samples(release.batch)  # written, then A dies before committing and acking
    await idle_for_a_minute(bus, "a", a.hold.entry_ids())

    b = Dispatcher(bus, archive, HOLDING, consumer="b", clock=FakeClock(T0))
    for _ in range(3):
        await b.consumer.run_once()
    assert b.consumer.reclaimed == 10
    await b.drain()
    assert await bus.lag(MON_SAMPLES, "archive") == 0
    for point in POINTS:
        got = await archive.raw(point, T0, T0 + timedelta(minutes=1))
        assert got.ts_us.tolist() == [to_us(T0 + timedelta(seconds=t)) for t in range(30)]
    assert await chunk_count(archive, "lasilla.asm.seeing") == 2  # A's 10 and B's 30 overlap; reads de-duplicate


async def test_a_failed_held_write_keeps_everything_pending_and_the_retry_writes_it_once(
    bus: Bus, tmp_path: Path
) -> None:
    archive = FlakyArchive(tmp_path / "f.sqlite3", points=POINTS)
    await archive.open()
    clock = FakeClock(T0)
    d = Dispatcher(bus, archive, HOLDING, consumer="d1", clock=clock)
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(63)], retention=RET)
    for _ in range(7):  # 7 reads of 10 entries; the 7th starts writing the first minute, which fails
        await d.consumer.run_once()
    await d.settle()
    assert (d.write_failures, d.consecutive_write_failures, d.archived) == (1, 1, 0)
    assert await bus.pending_count(MON_SAMPLES, "archive") == 63
    await d.tick()  # too early: the retry waits 0.5 s
    await d.settle()
    assert d.archived == 0
    clock.advance(0.5)
    await d.tick()
    await d.settle()
    assert (d.write_failures, d.consecutive_write_failures, d.archived) == (1, 0, 120)
    assert await bus.pending_count(MON_SAMPLES, "archive") == 3
    assert len(await archive.raw("lasilla.asm.seeing", T0, T0 + timedelta(minutes=1))) == 60
    assert await chunk_count(archive, "lasilla.asm.seeing") == 1
    await archive.close()


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("hold_s", -1, "greater than or equal to 0"),
    ("max_held_samples", 0, "greater than 0"),
    ("latest_every_s", 0, "greater than 0"),
    ("hold_samples", 10, "Extra inputs are not permitted"),
])
def test_a_bad_holding_setting_is_refused_naming_file_and_field(
    tmp_path: Path, field: str, value: object, problem: str
) -> None:
    data = yaml.safe_load(default_path("monitoring.yaml").read_text(encoding="utf-8"))
    data["dispatcher"][field] = value
    path = tmp_path / "monitoring.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_monitoring(path)
    assert "monitoring.yaml" in str(err.value) and f"dispatcher.{field}" in str(err.value)
    assert problem in str(err.value)


async def test_past_the_memory_bound_a_failing_write_stops_the_reading(bus: Bus, tmp_path: Path) -> None:
    archive = FlakyArchive(tmp_path / "f.sqlite3", points=POINTS)
    await archive.open()
    bounded = HOLDING.model_copy(update={"max_held_samples": 20})
    d = Dispatcher(bus, archive, bounded, consumer="d1", clock=FakeClock(T0))
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(30)], retention=RET)
    await d.consumer.run_once()  # 10 entries, 20 samples: written in line, and that write fails
    assert d.consumer.handler_failures == 1 and d.archived == 0
    await d.consumer.run_once()  # the retry writes them; nothing new was read meanwhile
    assert d.archived == 20
    assert await bus.lag(MON_SAMPLES, "archive") == 20
    await archive.close()


class CountingArchive(SqliteArchive):
    """Records the size of every block write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_sizes: list[int] = []

    async def write_samples(self, batch: SampleBatch, *, latest: bool = True) -> None:
        self.write_sizes.append(len(batch))
        await super().write_samples(batch, latest=latest)


async def test_a_stop_writes_everything_held_in_bounded_writes_and_acks_it_all(bus: Bus, tmp_path: Path) -> None:
    archive = CountingArchive(tmp_path / "c.sqlite3", points=POINTS)
    await archive.open()
    bounded = HOLDING.model_copy(update={"max_write_samples": 7})
    d = Dispatcher(bus, archive, bounded, consumer="d1", clock=FakeClock(T0))
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(25)], retention=RET)
    for _ in range(3):  # 10 entries a read; holding acknowledges none
        await d.consumer.run_once()
    assert d.hold.held_samples == 50 and archive.write_sizes == []
    await d.drain()
    assert max(archive.write_sizes) == 7 and sum(archive.write_sizes) == 50
    assert d.hold.held_samples == 0 and await bus.lag(MON_SAMPLES, "archive") == 0
    got = await archive.raw("lasilla.asm.seeing", T0, T0 + timedelta(minutes=1))
    assert len(got) == 25
    await archive.close()


async def test_a_held_backlog_is_written_in_bounded_writes(bus: Bus, tmp_path: Path) -> None:
    archive = CountingArchive(tmp_path / "c.sqlite3", points=POINTS)
    await archive.open()
    clock = FakeClock(T0)
    bounded = HOLDING.model_copy(update={"max_write_samples": 8, "max_held_samples": 30})
    d = Dispatcher(bus, archive, bounded, consumer="d1", clock=clock)
    await bus.publish_many(MON_SAMPLES, [sweep(t) for t in range(40)], retention=RET)
    for _ in range(4):  # past 30 held samples the dispatcher writes in line, 8 at a time
        await d.consumer.run_once()
    clock.advance(timedelta(minutes=2))
    await d.tick()
    await d.settle()
    while d.hold.held_samples:
        clock.advance(timedelta(seconds=1))
        await d.tick()
        await d.settle()
    assert archive.write_sizes and max(archive.write_sizes) <= 8 and sum(archive.write_sizes) == 80
    assert await bus.lag(MON_SAMPLES, "archive") == 0
    await archive.close()
