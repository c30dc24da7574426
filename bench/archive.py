"""Archive benchmark: write 1,000,000 samples over 1,000 points, then raw and binned reads, per adapter."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, Result, p, print_table, ratio, timed_async, write_results
from skyops.archive.binning import aggregate, plan_bins, to_bins
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive
from skyops.archive.sqlite import SqliteArchive
from skyops.records import SampleBatch
from skyops.timeutil import from_us, to_us

DAY0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def points(n: int) -> list[str]:
    return [f"bench.p{i:04d}.value" for i in range(n)]


def batches(names: list[str], per_point: int, batch_seconds: int, start: datetime) -> list[SampleBatch]:
    """1 Hz samples for every point, cut into dispatcher-sized batches of `batch_seconds`."""
    n = len(names)
    rng = np.random.default_rng(1)
    t0 = to_us(start)
    out = []
    for s in range(0, per_point, batch_seconds):
        k = min(batch_seconds, per_point - s)
        idx = np.tile(np.arange(n), k)
        ts = t0 + np.repeat(np.arange(s, s + k), n).astype(np.int64) * 1_000_000
        out.append(SampleBatch.from_floats(names, idx, ts, rng.normal(10, 2, n * k)))
    return out


async def bench_adapter(
    label: str, archive: Archive, args: argparse.Namespace
) -> tuple[list[Result], dict[str, float]]:
    names = points(args.points)
    day_point, month_point = "bench.day.value", "bench.month.value"
    archive.register_points({**{n: "standard" for n in names}, day_point: "standard", month_point: "long"})
    results: list[Result] = []
    raw: dict[str, float] = {}

    total = args.points * args.per_point
    for batch_seconds in (60, 10):
        work = batches(names, args.per_point, batch_seconds, DAY0 + timedelta(hours=2 if batch_seconds == 60 else 5))
        t = time.perf_counter()
        for b in work:
            await archive.write_samples(b)
        write_s = time.perf_counter() - t
        raw[f"write_{batch_seconds}"] = total / write_s
        results.append(Result(f"{label}: write, {batch_seconds} s batches", total / write_s, "samples/s",
                              goal=">= 100000" if label == "cassandra" else None))
        if batch_seconds == 60:
            t = time.perf_counter()
            hours = await archive.flush_aggregates()
            flush_s = time.perf_counter() - t
            results.append(Result(f"{label}: aggregate rollup ({hours} point-hours)", flush_s * 1000, "ms"))
        else:
            await archive.flush_aggregates()

    # One point-day at 1 Hz, then read back whole.
    day = SampleBatch.from_floats([day_point], np.zeros(86_400), to_us(DAY0) + np.arange(86_400) * 1_000_000,
                                  np.random.default_rng(2).normal(size=86_400))
    for part in np.array_split(np.arange(86_400), 24):
        await archive.write_samples(day.select(part))
    got = await archive.raw(day_point, DAY0, DAY0 + timedelta(days=1))
    assert len(got) == 86_400, len(got)
    lat = await timed_async(lambda: archive.raw(day_point, DAY0, DAY0 + timedelta(days=1)), args.repeat)
    raw["day_read_p50"] = p(lat, 50)
    results.append(Result(f"{label}: raw read, one point-day (86,400 samples) p50", p(lat, 50), "ms",
                          goal="< 100" if label == "cassandra" else None))
    results.append(Result(f"{label}: raw read, one point-day p99", p(lat, 99), "ms"))

    # 30 days at one sample per 10 s, binned to 1,000 bins from aggregates vs from raw.
    start = DAY0 - timedelta(days=29)
    n = 30 * 8640
    month = SampleBatch.from_floats([month_point], np.zeros(n), to_us(start) + np.arange(n) * 10_000_000,
                                    np.random.default_rng(3).normal(size=n))
    for part in np.array_split(np.arange(n), 30):
        await archive.write_samples(month.select(part))
    await archive.flush_aggregates()
    end = start + timedelta(days=30)
    binned = await archive.binned(month_point, start, end, 1000)
    assert int(binned.count.sum()) == n, int(binned.count.sum())
    lat = await timed_async(lambda: archive.binned(month_point, start, end, 1000), args.repeat)

    async def from_raw() -> None:
        series = await archive.raw(month_point, start, end)
        plan = plan_bins(to_us(start), to_us(end), 1000)
        to_bins(month_point, plan, aggregate(series, plan.origin_us, plan.width_us))

    base = await timed_async(from_raw, max(3, args.repeat // 4))
    results.append(Result(f"{label}: 30 days → {len(binned)} bins ({binned.resolution}) p50", p(lat, 50), "ms",
                          goal="< 200" if label == "cassandra" else None, baseline=p(base, 50),
                          ratio=ratio(p(lat, 50), p(base, 50), higher_is_better=False)))
    return results, raw


async def naive_cassandra_baseline(hosts: list[str], keyspace: str, n_samples: int) -> tuple[float, float]:
    """One row per sample (the layout packed blocks replace): insert rate and a point-day read."""
    from cassandra.cluster import Cluster

    cluster = Cluster(hosts, protocol_version=5)
    s = cluster.connect()
    try:
        s.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
                  "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.naive (point text, day int, ts bigint, value double, "
                  "quality tinyint, PRIMARY KEY ((point, day), ts))")
        ins = s.prepare(f"INSERT INTO {keyspace}.naive (point, day, ts, value, quality) VALUES (?,?,?,?,?)")
        from cassandra.concurrent import execute_concurrent_with_args

        t0 = to_us(DAY0)
        rows = [("bench.naive", 0, t0 + i * 1_000_000, float(i), 0) for i in range(n_samples)]
        t = time.perf_counter()
        execute_concurrent_with_args(s, ins, rows, concurrency=128)
        rate = n_samples / (time.perf_counter() - t)
        sel = s.prepare(f"SELECT ts, value, quality FROM {keyspace}.naive WHERE point = ? AND day = ?")
        t = time.perf_counter()
        got = list(s.execute(sel, ("bench.naive", 0)))
        read_ms = (time.perf_counter() - t) * 1000 * (86_400 / max(1, len(got)))
        return rate, read_ms
    finally:
        cluster.shutdown()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--per-point", type=int, default=1000, help="1 Hz samples per point")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="100 points × 200 samples")
    ap.add_argument("--adapters", default="sqlite,cassandra")
    args = ap.parse_args()
    if args.quick:
        args.points, args.per_point, args.repeat = 100, 200, 5
    hosts = [h for h in os.environ.get("SKYOPS_TEST_CASSANDRA_HOSTS", "").split(",") if h]
    results: list[Result] = []
    for label in args.adapters.split(","):
        if label == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                archive: Archive = SqliteArchive(Path(tmp) / "bench.sqlite3")
                await archive.open()
                try:
                    r, _ = await bench_adapter("sqlite", archive, args)
                finally:
                    await archive.close()
        else:
            if not hosts:
                raise SystemExit("SKYOPS_TEST_CASSANDRA_HOSTS is unset: run `make services-up` and eval its env")
            ks = f"bench_{uuid.uuid4().hex[:8]}"
            cass = CassandraArchive(hosts, keyspace=ks, max_in_flight=256)
            await cass.open()
            try:
                r, _raw = await bench_adapter("cassandra", cass, args)
                rate, day_ms = await naive_cassandra_baseline(hosts, ks, 20_000 if not args.quick else 5_000)
                for res in r:
                    if res.name.startswith("cassandra: write, 60"):
                        res.baseline, res.ratio = rate, ratio(res.value, rate, higher_is_better=True)
                    if res.name.startswith("cassandra: raw read, one point-day (86,400 samples) p50"):
                        res.baseline, res.ratio = day_ms, ratio(res.value, day_ms, higher_is_better=False)
            finally:
                await cass.drop_keyspace()
                await cass.close()
        results.extend(r)
    # A run of some adapters keeps the other adapters' rows from the previous run in the results file.
    previous = RESULTS_DIR / "archive.json"
    if previous.exists():
        ran = {label + ":" for label in args.adapters.split(",")}
        kept = [Result(**r) for r in json.loads(previous.read_text())["results"]
                if not any(r["name"].startswith(prefix) for prefix in ran)]
        results = kept + results
    print_table("archive benchmark", results)
    path = write_results("archive", results, {"dataset": {
        "points": args.points, "samples_per_point": args.per_point, "point_day": 86_400,
        "month_point": "30 days at 0.1 Hz", "baselines": "write/day-read: one row per sample (20,000 rows, read "
        "scaled to a day); binned: read the raw 30 days and bin them"}})
    print(f"wrote {path}")


if __name__ == "__main__":
    _ = from_us
    asyncio.run(main())
