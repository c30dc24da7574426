"""One bus suite, run on the embedded fakeredis and on a real Redis server: both must behave alike."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from skyops import codec
from skyops.bus import Bus, Entry, StreamConsumer, StreamRetention, entry_id_ms, open_redis
from skyops.codec import PayloadKind, decode_samples, encode_samples, versioned_header
from skyops.errors import CodecError
from skyops.records import Sample, SampleBatch
from skyops.timeutil import FakeClock, from_us, to_us

T0 = datetime(2025, 3, 1, 2, 30, tzinfo=UTC)
ROOMY = StreamRetention(max_len=100_000, max_age=timedelta(days=1))


@dataclass
class Rig:
    bus: Bus
    clock: FakeClock
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


@pytest.fixture(
    params=["fakeredis", pytest.param("redis", marks=pytest.mark.integration)],
)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    url = None if request.param == "fakeredis" else request.getfixturevalue("redis_url")
    client = open_redis(url)
    clock = FakeClock(T0)
    prefix = f"test:bus:{uuid.uuid4().hex}:"
    try:
        yield Rig(Bus(client, clock=clock), clock, prefix)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def payloads(n: int, size: int = 32) -> list[bytes]:
    # Zero bytes and high bytes everywhere: the bus must not treat payloads as text.
    return [bytes([0, i % 256, 255, 0]) + os.urandom(size) + b"\x00" for i in range(n)]


async def drain(bus: Bus, stream: str, group: str, consumer: str, *, batch: int = 100) -> list[Entry]:
    got: list[Entry] = []
    while entries := await bus.read(stream, group, consumer, count=batch):
        got.extend(entries)
    return got


async def test_payloads_round_trip_byte_for_byte_with_producer_time(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.ensure_group(stream, "archive")
    sent = [b"", b"\x00", b"\x00" * 17, bytes(range(256)), os.urandom(8192) + b"\x00\x00"]
    for p in sent:
        await rig.bus.publish(stream, p, retention=ROOMY)

    got = await drain(rig.bus, stream, "archive", "a1")

    assert [e.payload for e in got] == sent
    assert {e.produced_us for e in got} == {to_us(T0)}


async def test_entries_come_out_in_the_order_they_were_published(rig: Rig) -> None:
    stream = rig.key("log.records")
    await rig.bus.ensure_group(stream, "logs")
    sent = payloads(60)
    ids = [await rig.bus.publish(stream, p, retention=ROOMY) for p in sent]

    got = await drain(rig.bus, stream, "logs", "l1", batch=7)

    assert [e.payload for e in got] == sent
    assert [e.id for e in got] == ids
    assert [entry_id_ms(i) for i in ids] == sorted(entry_id_ms(i) for i in ids)


async def test_publish_many_keeps_order_and_returns_every_id(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.ensure_group(stream, "archive")
    first = payloads(250)
    second = payloads(3)

    ids = await rig.bus.publish_many(stream, first, retention=ROOMY)
    ids += await rig.bus.publish_many(stream, second, retention=ROOMY)
    assert await rig.bus.publish_many(stream, [], retention=ROOMY) == []

    got = await drain(rig.bus, stream, "archive", "a1")
    assert [e.payload for e in got] == first + second
    assert [e.id for e in got] == ids
    assert len(set(ids)) == 253


async def test_a_blocked_read_wakes_up_as_soon_as_an_entry_arrives(rig: Rig) -> None:
    stream = rig.key("alarm.events")
    await rig.bus.ensure_group(stream, "hmi")
    waiting = asyncio.create_task(rig.bus.read(stream, "hmi", "h1", count=10, block_ms=10_000))
    await asyncio.sleep(0.01)  # let the read reach Redis and block there
    assert not waiting.done()

    await rig.bus.publish(stream, b"wind alarm", retention=ROOMY)

    # Far sooner than the 10 s block: a blocked read must not hold up other work on the loop.
    async with asyncio.timeout(2):
        entries = await waiting
    assert [e.payload for e in entries] == [b"wind alarm"]


async def test_an_idle_read_waits_out_its_block_time_instead_of_spinning(rig: Rig) -> None:
    stream = rig.key("alarm.events")
    await rig.bus.ensure_group(stream, "hmi")

    started = time.monotonic()
    assert await rig.bus.read(stream, "hmi", "h1", count=10, block_ms=60) == []

    # Redis keeps this timer; a read that came back at once would make every idle consumer loop spin.
    assert time.monotonic() - started >= 0.05


async def test_ensure_group_is_idempotent_and_creates_the_stream(rig: Rig) -> None:
    stream = rig.key("alarm.events")

    assert await rig.bus.ensure_group(stream, "hmi") is True
    assert await rig.bus.ensure_group(stream, "hmi") is False
    assert await rig.bus.length(stream) == 0
    assert await rig.bus.lag(stream, "hmi") == 0


async def test_a_group_delivers_each_entry_to_exactly_one_of_two_consumers(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.ensure_group(stream, "archive")
    sent = payloads(200)
    await rig.bus.publish_many(stream, sent, retention=ROOMY)

    async def take(name: str) -> list[Entry]:
        got: list[Entry] = []
        while entries := await rig.bus.read(stream, "archive", name, count=9):
            got.extend(entries)
            await asyncio.sleep(0)  # let the other consumer in between batches
        return got

    one, two = await asyncio.gather(take("d1"), take("d2"))

    assert one, "both consumers should have had a share"
    assert two, "both consumers should have had a share"
    assert {e.id for e in one}.isdisjoint({e.id for e in two})
    assert sorted(e.payload for e in one + two) == sorted(sent)


async def test_entries_of_a_consumer_killed_before_its_ack_go_to_another_after_min_idle(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    sent = payloads(12)
    await rig.bus.ensure_group(stream, "archive")
    await rig.bus.publish_many(stream, sent, retention=ROOMY)
    # "d1" reads and dies before acknowledging.
    assert len(await rig.bus.read(stream, "archive", "d1", count=100)) == 12

    handled: list[Entry] = []

    async def archive(entries: list[Entry]) -> None:
        handled.extend(entries)

    survivor = StreamConsumer(
        rig.bus, stream=stream, group="archive", consumer="d2", handler=archive, min_idle_ms=150, block_ms=1
    )
    # Redis measures idle time on its own clock, so this one test waits for real (150 ms).
    assert await survivor.run_once() == 0, "entries of a live consumer must not be taken before min_idle"
    assert handled == []
    await asyncio.sleep(0.2)

    assert await survivor.run_once() == 12

    assert [e.payload for e in handled] == sent
    assert survivor.reclaimed == 12
    assert await rig.bus.pending_count(stream, "archive") == 0


async def test_a_failing_handler_leaves_entries_pending_and_a_later_run_acks_them(rig: Rig) -> None:
    stream = rig.key("log.records")
    sent = payloads(5)
    await rig.bus.publish_many(stream, sent, retention=ROOMY)
    archive_up = False
    seen: list[list[bytes]] = []

    async def write(entries: list[Entry]) -> None:
        seen.append([e.payload for e in entries])
        if not archive_up:
            raise ConnectionError("archive is down")

    consumer = StreamConsumer(rig.bus, stream=stream, group="logs", consumer="l1", handler=write, block_ms=1)

    assert await consumer.run_once() == 0
    assert consumer.handler_failures == 1
    assert await rig.bus.pending_count(stream, "logs") == 5
    assert await consumer.run_once() == 0, "still down: retried, still pending"
    assert await rig.bus.pending_count(stream, "logs") == 5

    archive_up = True
    assert await consumer.run_once() == 5

    assert seen == [sent, sent, sent]
    assert consumer.processed == 5
    assert await rig.bus.pending_count(stream, "logs") == 0
    assert await rig.bus.lag(stream, "logs") == 0


async def test_entries_are_acknowledged_only_after_the_handler_returned(rig: Rig) -> None:
    stream = rig.key("alarm.events")
    await rig.bus.publish_many(stream, payloads(4), retention=ROOMY)
    pending_during_handler: list[int] = []

    async def handler(entries: list[Entry]) -> None:
        pending_during_handler.append(await rig.bus.pending_count(stream, "alarms"))

    consumer = StreamConsumer(rig.bus, stream=stream, group="alarms", consumer="s1", handler=handler, block_ms=1)
    assert await consumer.run_once() == 4

    assert pending_during_handler == [4]
    assert await rig.bus.pending_count(stream, "alarms") == 0


async def test_age_retention_trims_old_entries_only_even_unacknowledged_ones(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    retention = StreamRetention(max_len=100_000, max_age=timedelta(hours=2))
    await rig.bus.ensure_group(stream, "archive")
    old_ids = await rig.bus.publish_many(stream, payloads(5), retention=retention)
    await asyncio.sleep(0.002)  # only to put the two groups in different milliseconds of Redis' clock
    young = payloads(5)
    young_ids = await rig.bus.publish_many(stream, young, retention=retention)
    assert entry_id_ms(young_ids[0]) > entry_id_ms(old_ids[-1])
    # The archive is down: everything was delivered, nothing acknowledged.
    assert len(await rig.bus.read(stream, "archive", "d1", count=100)) == 10

    # Two hours after the first young entry was stored: the old ones are beyond the window.
    now = from_us(entry_id_ms(young_ids[0]) * 1000) + retention.max_age
    assert await rig.bus.trim(stream, retention=retention, now=now, exact=True) == 5

    assert await rig.bus.length(stream) == 5
    handled: list[Entry] = []

    async def archive(entries: list[Entry]) -> None:
        handled.extend(entries)

    replacement = StreamConsumer(
        rig.bus, stream=stream, group="archive", consumer="d2", handler=archive, min_idle_ms=0, block_ms=1
    )
    assert await replacement.run_once() == 5
    assert [e.payload for e in handled] == young
    assert replacement.lost == 5, "the trimmed pending entries are reported, not delivered"
    assert await rig.bus.pending_count(stream, "archive") == 0
    assert await rig.bus.lag(stream, "archive") == 0


async def test_approximate_age_trimming_never_touches_young_entries(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    retention = StreamRetention(max_len=100_000, max_age=timedelta(minutes=10))
    old_ids = await rig.bus.publish_many(stream, payloads(350, size=8), retention=retention)
    await asyncio.sleep(0.002)  # see above: separate the two groups on Redis' clock
    young_ids = await rig.bus.publish_many(stream, payloads(350, size=8), retention=retention)

    now = from_us(entry_id_ms(young_ids[0]) * 1000) + retention.max_age
    removed = await rig.bus.trim(stream, retention=retention, now=now)

    remaining = {e.id for e in await drain_all(rig.bus, stream)}
    assert set(young_ids) <= remaining
    assert 0 < removed <= 350
    assert len(remaining & set(old_ids)) == 350 - removed


async def test_length_retention_keeps_about_max_len_newest_entries(rig: Rig) -> None:
    stream = rig.key("log.records")
    retention = StreamRetention(max_len=100, max_age=timedelta(days=1))
    ids = await rig.bus.publish_many(stream, payloads(1000, size=8), retention=retention)

    kept = [e.id for e in await drain_all(rig.bus, stream)]

    # `~` lets Redis keep up to one internal node more than asked, never fewer.
    assert 100 <= len(kept) < 300
    assert kept == ids[-len(kept) :]


async def test_lag_counts_undelivered_and_unacknowledged_entries(rig: Rig) -> None:
    stream = rig.key("plan.events")
    await rig.bus.ensure_group(stream, "ves")
    await rig.bus.publish_many(stream, payloads(10), retention=ROOMY)
    assert await rig.bus.lag(stream, "ves") == 10

    delivered = await rig.bus.read(stream, "ves", "v1", count=4)
    assert await rig.bus.lag(stream, "ves") == 10
    assert await rig.bus.ack(stream, "ves", [e.id for e in delivered]) == 4
    assert await rig.bus.lag(stream, "ves") == 6

    rest = await rig.bus.read(stream, "ves", "v1", count=100)
    await rig.bus.ack(stream, "ves", [e.id for e in rest])
    assert await rig.bus.lag(stream, "ves") == 0


async def test_broadcast_reaches_every_subscriber_and_closing_unsubscribes(rig: Rig) -> None:
    channel = rig.key("live.samples")
    sent = payloads(3)
    ready = [asyncio.Event(), asyncio.Event()]

    async def listen(subscribed: asyncio.Event) -> list[bytes]:
        got: list[bytes] = []
        async with aclosing(rig.bus.subscribe(channel, ready=subscribed)) as live:
            async for payload in live:
                got.append(payload)
                if len(got) == len(sent):
                    break
        return got

    async with asyncio.timeout(5):
        listeners = [asyncio.create_task(listen(r)) for r in ready]
        # Pub/sub keeps no history: publish only once both subscriptions are confirmed.
        await asyncio.gather(*(r.wait() for r in ready))
        assert await rig.bus.subscribers(channel) == 2
        for p in sent:
            assert await rig.bus.broadcast(channel, p) == 2
        results = await asyncio.gather(*listeners)

        assert results == [sent, sent]
        # Redis forgets a subscriber when it notices the closed connection, a moment later.
        while await rig.bus.subscribers(channel) > 0:  # noqa: ASYNC110 - polling the server, no event to wait on
            await asyncio.sleep(0.005)
        assert await rig.bus.broadcast(channel, b"nobody") == 0


async def drain_all(bus: Bus, stream: str) -> list[Entry]:
    group = f"inspect-{uuid.uuid4().hex[:8]}"
    await bus.ensure_group(stream, group)
    return await drain(bus, stream, group, "inspector", batch=500)


# --- rolling upgrades: entries written by a newer codec ----------------------------------------------

V99 = versioned_header(PayloadKind.SAMPLES, 99) + b"columns of a future layout"


def sample_payload(value: float) -> bytes:
    return encode_samples(SampleBatch.from_samples([Sample("ntt.asm.wind_speed", T0, value)]))


@contextmanager
def _reads_v99() -> Iterator[None]:
    """This process as an upgraded one: its codec reads sample batches up to v99."""
    before = codec.READS_UP_TO[PayloadKind.SAMPLES]
    codec.READS_UP_TO[PayloadKind.SAMPLES] = 99
    try:
        yield
    finally:
        codec.READS_UP_TO[PayloadKind.SAMPLES] = before


class ArchiveHandler:
    """What every service handler does: decode, skip (and so acknowledge) what is corrupt, keep the rest."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.corrupt: list[str] = []

    async def __call__(self, entries: list[Entry]) -> None:
        for e in entries:
            try:
                b = decode_samples(e.payload)
            except CodecError:
                self.corrupt.append(e.id)
                continue
            self.values.extend(float(v) for v in b.numeric())


async def test_an_entry_of_a_newer_codec_stays_pending_while_the_rest_is_handled(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.key("mon.samples")
    ids = await rig.bus.publish_many(
        stream, [sample_payload(1.0), V99, b"\x53garbage", V99, sample_payload(2.0)], retention=ROOMY)
    handler = ArchiveHandler()
    old = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d-old", handler=handler, block_ms=1)

    with caplog.at_level(logging.ERROR, logger="skyops.bus.consumer"):
        assert await old.run_once() == 3

    assert handler.values == [1.0, 2.0]
    assert handler.corrupt == [ids[2]], "garbage keeps its old path: the handler skips it and it is acked"
    pending = await rig.bus.redis.xpending_range(stream, "archive", min="-", max="+", count=10)
    assert [p["message_id"] for p in pending] == [ids[1].encode(), ids[3].encode()]
    assert old.too_new == 2
    reasons = [r.getMessage() for r in caplog.records if "newer consumer" in r.getMessage()]
    assert len(reasons) == 1, "one log line per version, not per entry"
    assert "written by codec v99, this process reads up to v2: upgrade it" in reasons[0]
    healthy, why = old.health()
    assert not healthy
    assert "codec v99" in why and stream in why


async def test_an_upgraded_consumer_of_the_group_takes_the_newer_entries_over(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.publish_many(stream, [V99, sample_payload(3.0)], retention=ROOMY)
    old = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d-old", handler=ArchiveHandler(),
                         block_ms=1, min_idle_ms=100)
    assert await old.run_once() == 1
    newer_saw: list[bytes] = []

    async def newer_handler(entries: list[Entry]) -> None:
        newer_saw.extend(e.payload for e in entries)

    newer = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d-new", handler=newer_handler,
                           block_ms=1, min_idle_ms=100)
    await asyncio.sleep(0.15)  # Redis measures idle time on its own clock (real, bounded)
    assert await old.run_once() == 0
    pending = await rig.bus.redis.xpending_range(stream, "archive", min="-", max="+", count=10)
    assert [(p["consumer"], p["times_delivered"]) for p in pending] == [(b"d-old", 1)], (
        "an outdated consumer leaves an idle entry to the upgraded ones for longer than min_idle")
    with _reads_v99():
        assert await newer.run_once() == 1

    assert newer_saw == [V99]
    assert await rig.bus.pending_count(stream, "archive") == 0
    assert await rig.bus.lag(stream, "archive") == 0


async def test_a_pending_newer_entry_neither_jams_nor_spins_the_old_consumer(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.publish(stream, V99, retention=ROOMY)
    handler = ArchiveHandler()
    # min_idle_ms=0: every round reclaims the newer entry again, the worst case for a busy loop.
    old = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d-old", handler=handler,
                         block_ms=5, min_idle_ms=0)
    blocks: list[int | None] = []
    read = rig.bus.read

    async def recording_read(*args: Any, **kwargs: Any) -> list[Entry]:
        blocks.append(kwargs.get("block_ms"))
        return await read(*args, **kwargs)

    rig.bus.read = recording_read  # type: ignore[method-assign]
    for _ in range(3):
        assert await old.run_once() == 0
    await rig.bus.publish(stream, sample_payload(4.0), retention=ROOMY)
    assert await old.run_once() == 1

    assert blocks == [5, 5, 5, 5], "a reclaim of only unreadable entries must not skip the blocking read"
    assert handler.values == [4.0], "what follows the newer entry is still handled"
    assert await rig.bus.pending_count(stream, "archive") == 1
    assert old.too_new >= 3


async def test_a_retry_after_a_handler_failure_walks_past_the_newer_entry(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.publish_many(stream, [V99, sample_payload(5.0)], retention=ROOMY)
    up = False
    seen: list[list[str]] = []

    async def write(entries: list[Entry]) -> None:
        seen.append([e.id for e in entries])
        if not up:
            raise ConnectionError("archive is down")

    consumer = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d1", handler=write, block_ms=1)
    assert await consumer.run_once() == 0
    up = True
    assert await consumer.run_once() == 1
    assert await consumer.run_once() == 0

    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 1, "the handler never gets the v99 entry"
    assert await rig.bus.pending_count(stream, "archive") == 1
    healthy, why = consumer.health()
    assert not healthy and "consecutive failures" not in why


async def test_a_consumer_restarted_upgraded_under_its_name_takes_its_newer_entries_at_once(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.publish_many(stream, [sample_payload(6.0), V99], retention=ROOMY)
    before = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d1", handler=ArchiveHandler(),
                            block_ms=1)
    assert await before.run_once() == 1
    saw: list[bytes] = []

    async def upgraded_handler(entries: list[Entry]) -> None:
        saw.extend(e.payload for e in entries)

    after = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d1", handler=upgraded_handler,
                           block_ms=1)
    with _reads_v99():
        assert await after.run_once() == 1

    assert saw == [V99]
    assert after.health() == (True, "")
    assert await rig.bus.pending_count(stream, "archive") == 0


# --- retention that keeps what a consumer group has not acknowledged (the Mon Queue) -----------------

KEEPING = StreamRetention(max_len=100_000, max_age=timedelta(minutes=10), keep_unacknowledged=True,
                          age_trim_every=100_000)


async def test_kept_unacknowledged_entries_outlive_the_age_window_and_acknowledged_ones_do_not(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    await rig.bus.ensure_group(stream, "archive")
    await rig.bus.ensure_group(stream, "alarms")
    ids = await rig.bus.publish_many(stream, payloads(10), retention=KEEPING)
    # The alarms group read and acknowledged everything; the archive (down) got the first 6, acked 3.
    alarms = await drain(rig.bus, stream, "alarms", "a1")
    await rig.bus.ack(stream, "alarms", [e.id for e in alarms])
    archive = await rig.bus.read(stream, "archive", "d1", count=6)
    await rig.bus.ack(stream, "archive", [e.id for e in archive[:3]])

    # Hours later: by age everything could go, but only what both groups acknowledged does.
    now = from_us(entry_id_ms(ids[-1]) * 1000) + timedelta(hours=3)
    assert await rig.bus.trim(stream, retention=KEEPING, now=now, exact=True) == 3
    kept = await stored_ids(rig.bus, stream)
    assert kept == ids[3:]
    assert rig.bus.trimmed_unacknowledged.get(stream, 0) == 0
    # The archive comes back and gets every entry it had not acknowledged.
    backlog = StreamConsumer(rig.bus, stream=stream, group="archive", consumer="d2", handler=_noop, min_idle_ms=0,
                             block_ms=1)
    assert await backlog.run_once() == 7  # the 3 left pending by the first consumer and the 4 never delivered
    assert backlog.lost == 0 and backlog.reclaimed == 3
    assert await rig.bus.trim(stream, retention=KEEPING, now=now, exact=True) == 7
    assert await rig.bus.length(stream) == 0


async def _noop(entries: list[Entry]) -> None:
    return None


async def stored_ids(bus: Bus, stream: str) -> list[str]:
    """What the stream holds, read outside any group (a group of its own would protect the entries)."""
    return [e.id for e in await bus.range_after(stream, "0-0", count=10_000)]


async def test_over_the_byte_budget_acknowledged_entries_go_at_once_and_unacknowledged_ones_stay(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    budget = KEEPING.model_copy(update={"max_bytes": 4_000, "max_age": timedelta(days=1)})
    await rig.bus.ensure_group(stream, "archive")
    ids = await rig.bus.publish_many(stream, payloads(40, size=500), retention=budget)  # about 22 kB
    got = await rig.bus.read(stream, "archive", "d1", count=30)
    await rig.bus.ack(stream, "archive", [e.id for e in got])

    # Young entries, but over budget: the 30 acknowledged go, the 10 not yet read stay.
    assert await rig.bus.trim(stream, retention=budget, exact=True) == 30
    assert await stored_ids(rig.bus, stream) == ids[30:]


async def test_without_any_group_the_byte_budget_alone_bounds_the_stream(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    budget = KEEPING.model_copy(update={"max_bytes": 5_000, "max_age": timedelta(days=1)})
    ids = await rig.bus.publish_many(stream, payloads(40, size=500), retention=budget)
    await rig.bus.trim(stream, retention=budget, exact=True)
    kept = await stored_ids(rig.bus, stream)
    assert 5 <= len(kept) <= 10 and kept == ids[-len(kept):]


async def test_the_hard_cap_trims_unacknowledged_entries_and_counts_and_logs_them(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    stream = rig.key("mon.samples")
    capped = KEEPING.model_copy(update={"max_len": 25})
    await rig.bus.ensure_group(stream, "archive")
    # The first publish applies the retention (nothing to trim yet); the next check is far off.
    ids = await rig.bus.publish_many(stream, payloads(20), retention=capped)
    ids += await rig.bus.publish_many(stream, payloads(20), retention=capped)
    assert await rig.bus.length(stream) == 40, "XADD itself never trims what a group has not acknowledged"
    with caplog.at_level(logging.ERROR, logger="skyops.bus.streams"):
        assert await rig.bus.trim(stream, retention=capped, exact=True) == 15
    assert await stored_ids(rig.bus, stream) == ids[15:]
    assert rig.bus.trimmed_unacknowledged[stream] == 15
    assert "hard cap" in caplog.text and "15 entries" in caplog.text


async def test_publishing_applies_the_kept_retention_every_nth_entry(rig: Rig) -> None:
    stream = rig.key("mon.samples")
    every = KEEPING.model_copy(update={"max_bytes": 2_000, "age_trim_every": 10})
    await rig.bus.ensure_group(stream, "archive")
    for _ in range(6):
        for e in await rig.bus.publish_many(stream, payloads(5, size=400), retention=every) and \
                await drain(rig.bus, stream, "archive", "d1"):
            await rig.bus.ack(stream, "archive", [e.id])
    await rig.bus.publish_many(stream, payloads(10, size=400), retention=every)
    # Everything acknowledged was trimmed on the way (the byte budget holds 4 entries); the last 10 wait.
    assert await rig.bus.length(stream) <= 15
    assert await rig.bus.lag(stream, "archive") == 10
