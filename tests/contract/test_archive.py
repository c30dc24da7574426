"""One suite for every archive adapter: SQLite (embedded) and a real Cassandra node."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from skyops.archive.binning import Resolution
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive, LogQuery
from skyops.archive.sqlite import SqliteArchive
from skyops.errors import InvalidRecordError, NaiveDatetimeError, UnknownPointError
from skyops.records import AlarmEvent, AlarmSeverity, LogRecord, Quality, Sample, SampleBatch
from skyops.timeutil import to_us

T0 = datetime(2026, 11, 21, 23, 58, tzinfo=UTC)  # crosses a UTC day boundary two minutes in
POINTS = {
    "ntt.tcs.altitude": "long",
    "ntt.tcs.state": "long",
    "lasilla.asm.wind_speed": "long",
    "lasilla.asm.seeing": "short",
}


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.integration)])
async def archive(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Archive]:
    if request.param == "sqlite":
        a: Archive = SqliteArchive(f"{tmp_path}/archive.sqlite3", points=POINTS)
    else:
        hosts = request.getfixturevalue("cassandra_hosts")
        a = CassandraArchive(hosts, keyspace=f"t_{uuid.uuid4().hex[:12]}", points=POINTS)
    await a.open()
    try:
        yield a
    finally:
        if isinstance(a, CassandraArchive):
            await a.drop_keyspace()
        await a.close()


def mixed_samples() -> list[Sample]:
    return [
        Sample("ntt.tcs.altitude", T0, 45.123456789),
        Sample("ntt.tcs.altitude", T0 + timedelta(microseconds=1), 0.0),
        Sample("ntt.tcs.altitude", T0 + timedelta(seconds=1), -1e-300),
        Sample("ntt.tcs.altitude", T0 + timedelta(seconds=2), None, Quality.BAD),
        Sample("ntt.tcs.altitude", T0 + timedelta(seconds=3), 2**62 + 1),
        Sample("ntt.tcs.altitude", T0 + timedelta(minutes=3), True),
        Sample("ntt.tcs.state", T0, "TRACKING"),
        Sample("ntt.tcs.state", T0 + timedelta(seconds=5), "SLEWING ✓", Quality.UNCERTAIN),
        Sample("ntt.tcs.state", T0 + timedelta(seconds=9), "TRACKING"),
    ]


async def test_exact_round_trip_of_every_value_type(archive: Archive) -> None:
    samples = mixed_samples()
    await archive.write_samples(SampleBatch.from_samples(samples))
    for point in ("ntt.tcs.altitude", "ntt.tcs.state"):
        got = list((await archive.raw(point, T0, T0 + timedelta(hours=1))).samples())
        want = [s for s in samples if s.point == point]
        assert got == want
        assert all(type(g.value) is type(w.value) for g, w in zip(got, want, strict=True))


async def test_rewrite_is_idempotent_and_overlaps_are_deduplicated(archive: Archive) -> None:
    batch = SampleBatch.from_samples(mixed_samples())
    await archive.write_samples(batch)
    await archive.write_samples(batch)
    # A regrouped replay (a subset, then a superset) must not duplicate either.
    await archive.write_samples(batch.select(np.arange(3)))
    got = await archive.raw("ntt.tcs.altitude", T0, T0 + timedelta(hours=1))
    assert len(got) == 6
    assert list(got.ts_us) == sorted(set(got.ts_us.tolist()))


async def test_samples_come_back_in_time_order_whatever_the_write_order(archive: Archive) -> None:
    rng = np.random.default_rng(7)
    ts = to_us(T0) + rng.permutation(500).astype(np.int64) * 1_000_000
    vals = rng.normal(size=500)
    for part in np.array_split(np.arange(500), 7):
        await archive.write_samples(
            SampleBatch.from_floats(["lasilla.asm.wind_speed"], np.zeros(len(part)), ts[part], vals[part])
        )
    got = await archive.raw("lasilla.asm.wind_speed", T0, T0 + timedelta(hours=1))
    order = np.argsort(ts)
    assert np.array_equal(got.ts_us, ts[order])
    assert np.array_equal(got.numeric(), vals[order])


async def test_raw_range_is_half_open_and_crosses_days(archive: Archive) -> None:
    ts = to_us(T0) + np.arange(0, 600, 10, dtype=np.int64) * 1_000_000
    await archive.write_samples(SampleBatch.from_floats(["lasilla.asm.wind_speed"], np.zeros(60), ts, np.arange(60.0)))
    start, end = T0 + timedelta(seconds=100), T0 + timedelta(seconds=200)
    got = await archive.raw("lasilla.asm.wind_speed", start, end)
    assert got.numeric().tolist() == [float(i) for i in range(10, 20)]
    whole = await archive.raw("lasilla.asm.wind_speed", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert len(whole) == 60


async def test_binned_from_raw_and_from_aggregates_agree(archive: Archive) -> None:
    n = 3 * 3600
    ts = to_us(T0) + np.arange(n, dtype=np.int64) * 1_000_000
    vals = np.sin(np.arange(n) / 300.0) * 10
    vals[::97] = np.nan  # bad samples are counted, never averaged
    await archive.write_samples(SampleBatch.from_floats(["lasilla.asm.wind_speed"], np.zeros(n), ts, vals))
    await archive.flush_aggregates()
    start, end = T0, T0 + timedelta(seconds=n)
    fine = await archive.binned("lasilla.asm.wind_speed", start, end, 1000)  # 11 s bins: raw
    coarse = await archive.binned("lasilla.asm.wind_speed", start, end, 30)  # 6 min bins: 1-minute aggregates
    assert fine.resolution == "raw"
    assert coarse.resolution == "1m"
    assert int(fine.count.sum()) == int(coarse.count.sum()) == int(np.isfinite(vals).sum())
    assert int(coarse.bad_count.sum()) == int((~np.isfinite(vals)).sum())
    good = vals[np.isfinite(vals)]
    assert math.isclose(float(np.nanmax(coarse.vmax)), float(good.max()))
    assert math.isclose(float(np.nanmin(fine.vmin)), float(good.min()))
    total = float(np.nansum(coarse.mean * coarse.count))
    assert math.isclose(total, float(good.sum()), rel_tol=1e-9, abs_tol=1e-6)


async def test_binned_reports_empty_bins_as_gaps(archive: Archive) -> None:
    ts = to_us(T0) + np.array([0, 1, 2, 50, 51], dtype=np.int64) * 60_000_000
    await archive.write_samples(
        SampleBatch.from_floats(["lasilla.asm.wind_speed"], np.zeros(5), ts, [1.0, 2.0, 3.0, 4.0, 5.0])
    )
    b = await archive.binned("lasilla.asm.wind_speed", T0, T0 + timedelta(minutes=60), 60)
    assert len(b) == 60
    assert b.gap.sum() == 55
    assert b.first[0] == 1.0
    assert b.last[51] == 5.0
    assert math.isnan(b.mean[10])


async def test_long_ranges_read_hourly_aggregates(archive: Archive) -> None:
    # One sample every 10 minutes for 20 days.
    n = 20 * 144
    ts = to_us(T0 - timedelta(days=20)) + np.arange(n, dtype=np.int64) * 600_000_000
    vals = np.arange(n, dtype=np.float64)
    await archive.write_samples(SampleBatch.from_floats(["lasilla.asm.wind_speed"], np.zeros(n), ts, vals))
    await archive.flush_aggregates()
    b = await archive.binned("lasilla.asm.wind_speed", T0 - timedelta(days=20), T0, 200)
    assert b.resolution == "1h"
    assert len(b) <= 200
    assert int(b.count.sum()) == n
    assert float(np.nanmax(b.vmax)) == n - 1


async def test_flushing_as_data_arrives_gives_the_hour_that_one_flush_of_the_whole_hour_gives(
    archive: Archive,
) -> None:
    point, n = "lasilla.asm.wind_speed", 3600
    start = to_us(T0 - timedelta(minutes=30))  # the hour boundary falls inside the run
    ts = start + np.arange(n, dtype=np.int64) * 1_000_000
    vals = np.cos(np.arange(n) / 50.0) * 7
    vals[::61] = np.nan
    for lo in range(0, n, 30):  # 30 s per write and a flush after each, as the dispatcher does
        await archive.write_samples(SampleBatch.from_floats([point], np.zeros(30), ts[lo:lo + 30], vals[lo:lo + 30]))
        assert archive.dirty_hours() in (1, 2)
        await archive.flush_aggregates()
    assert archive.dirty_hours() == 0
    span = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    incremental = await archive.aggregates(point, Resolution.HOUR, *span)
    assert await archive.rebuild_aggregates([point], *span) == 3  # 22:58 → 00:58: three hours, two with data
    rebuilt = await archive.aggregates(point, Resolution.HOUR, *span)
    assert incremental.count.tolist() == rebuilt.count.tolist()
    assert len(rebuilt) == 2 and int(rebuilt.count.sum()) == int(np.isfinite(vals).sum())
    assert incremental.bad_count.tolist() == rebuilt.bad_count.tolist()
    for name in ("vmin", "vmax", "vsum", "vsumsq", "first", "last"):
        assert np.allclose(getattr(incremental, name), getattr(rebuilt, name), rtol=1e-12), name
    assert incremental.first_us.tolist() == rebuilt.first_us.tolist()
    minutes = await archive.aggregates(point, Resolution.MINUTE, *span)
    assert len(minutes) == 60 and int(minutes.count.sum()) == int(np.isfinite(vals).sum())


async def test_latest_keeps_the_newest_sample_whatever_the_write_order(archive: Archive) -> None:
    new = Sample("lasilla.asm.seeing", T0 + timedelta(seconds=30), 0.71)
    old = Sample("lasilla.asm.seeing", T0, 1.9)
    await archive.write_samples(SampleBatch.from_samples([new]))
    await archive.write_samples(SampleBatch.from_samples([old]))
    await archive.write_samples(SampleBatch.from_samples([Sample("ntt.tcs.state", T0, "PARKED")]))
    latest = await archive.latest(["lasilla.asm.seeing", "ntt.tcs.state"])
    assert latest["lasilla.asm.seeing"] == new
    assert latest["ntt.tcs.state"].value == "PARKED"
    assert set(await archive.latest()) == {"lasilla.asm.seeing", "ntt.tcs.state"}


async def test_unknown_points_refuse_the_batch_and_write_nothing(archive: Archive) -> None:
    batch = SampleBatch.from_samples(
        [Sample("lasilla.asm.seeing", T0, 0.8), Sample("lasilla.asm.rain_gauge", T0, 1.0)]
    )
    with pytest.raises(UnknownPointError, match=r"lasilla\.asm\.rain_gauge"):
        await archive.write_samples(batch)
    assert len(await archive.raw("lasilla.asm.seeing", T0, T0 + timedelta(hours=1))) == 0
    with pytest.raises(UnknownPointError):
        await archive.raw("no.such.point", T0, T0 + timedelta(hours=1))


async def test_naive_and_inverted_ranges_are_refused(archive: Archive) -> None:
    with pytest.raises(NaiveDatetimeError):
        await archive.raw("lasilla.asm.seeing", datetime(2026, 1, 1), T0)
    with pytest.raises(InvalidRecordError, match="not after"):
        await archive.raw("lasilla.asm.seeing", T0, T0 - timedelta(seconds=1))
    with pytest.raises(InvalidRecordError, match="bins"):
        await archive.binned("lasilla.asm.seeing", T0, T0 + timedelta(hours=1), 0)


async def test_other_timezones_are_converted_to_utc(archive: Archive) -> None:
    chile = timezone(timedelta(hours=-3))
    await archive.write_samples(SampleBatch.from_samples([Sample("lasilla.asm.seeing", T0.astimezone(chile), 1.0)]))
    (got,) = list((await archive.raw("lasilla.asm.seeing", T0, T0 + timedelta(seconds=1))).samples())
    assert got.ts == T0
    assert got.ts.tzinfo == UTC


def log(ts: datetime, level: str, source: str, msg: str, host: str = "wt1", component: str = "") -> LogRecord:
    return LogRecord(ts=ts, level=level, source=source, message=msg, host=host, component=component,  # type: ignore[arg-type]
                     attributes={"k": "v"})


async def test_logs_round_trip_filter_and_page(archive: Archive) -> None:
    records = [
        log(T0 + timedelta(seconds=i), "WARNING" if i % 3 == 0 else "INFO", "planner" if i % 2 else "ves",
            f"message {i} {'dome' if i % 5 == 0 else ''}", host="wt1" if i < 50 else "wt2")
        for i in range(120)
    ]
    await archive.write_logs(records)
    await archive.write_logs(records[:10])  # replay: no duplicates
    everything = await archive.query_logs(LogQuery(start=T0, end=T0 + timedelta(hours=1), limit=1000))
    assert len(everything.records) == 120
    assert everything.records[0] == records[-1]
    assert everything.next_cursor is None

    q = LogQuery(start=T0, end=T0 + timedelta(hours=1), min_level=30, sources=("planner",), limit=7)
    want = [r for r in reversed(records) if r.level >= 30 and r.source == "planner"]
    got: list[LogRecord] = []
    cursor = None
    while True:
        page = await archive.query_logs(dataclasses.replace(q, cursor=cursor))
        got.extend(page.records)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert got == want

    text = await archive.query_logs(LogQuery(start=T0, end=T0 + timedelta(hours=1), text="DOME", hosts=("wt2",)))
    assert {r.message for r in text.records} == {r.message for r in records if "dome" in r.message and r.host == "wt2"}
    oldest = await archive.query_logs(LogQuery(start=T0, end=T0 + timedelta(hours=1), regex=r"message 1\d ",
                                               newest_first=False))
    assert [r.message.split()[1] for r in oldest.records] == [str(i) for i in range(10, 20)]


async def test_bad_log_queries_are_refused() -> None:
    with pytest.raises(InvalidRecordError, match="regular expression"):
        LogQuery(start=T0, end=T0 + timedelta(hours=1), regex="(")
    with pytest.raises(InvalidRecordError, match="cursor"):
        LogQuery(start=T0, end=T0 + timedelta(hours=1), cursor="%%%")


async def test_alarm_history_round_trip_newest_first(archive: Archive) -> None:
    events = [
        AlarmEvent(alarm_id="WindSpeed.ASM:1", ts=T0 + timedelta(minutes=i), seq=i, action="transition",
                   severity=AlarmSeverity(i % 4), latched=AlarmSeverity.CRITICAL, state="ACTIVE", reason=f"r{i}",
                   attributes={"value": str(i)})
        for i in range(5)
    ] + [
        AlarmEvent(alarm_id="Humidity.ASM:1", ts=T0 + timedelta(minutes=2, seconds=30), seq=0, action="ack",
                   severity=AlarmSeverity.SERIOUS, acked=True, user="night-op", comment="dome closed")
    ]
    await archive.write_alarm_events(events)
    await archive.write_alarm_events(events)
    one = await archive.alarm_history(start=T0, end=T0 + timedelta(hours=1), alarm_id="WindSpeed.ASM:1")
    assert one == sorted(events[:5], key=lambda e: e.ts, reverse=True)
    every = await archive.alarm_history(start=T0, end=T0 + timedelta(hours=1))
    assert len(every) == 6
    assert every[2].user == "night-op"
    assert len(await archive.alarm_history(start=T0, end=T0 + timedelta(hours=1), limit=2)) == 2


async def test_ping_answers_on_an_open_archive(archive: Archive) -> None:
    await archive.ping()
