"""Ingest benchmark: N points at rate R through processing → bus → dispatchers → archive, embedded and distributed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from collectors.dispatcher import Dispatcher, LiveFanout
from collectors.domain.processing import PointProcessor
from config_db.monitoring import DispatcherConfig, PointConfig, Processing, QueueConfig
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, Entry, open_redis
from skyops.records import SampleBatch
from skyops.timeutil import from_us, to_us

ASTRI_RATE = 20_000.0  # samples/s: the ASTRI Mini-Array requirement, the baseline of every ratio
GOAL_RATE = 100_000.0
GOAL_LIVE_P99_MS = 200.0
RESULTS = Path(__file__).parent / "results" / "ingest.json"


@dataclass
class Timing:
    archive_ms: list[float] = field(default_factory=list)
    live_ms: list[float] = field(default_factory=list)


class TimedDispatcher(Dispatcher):
    """A dispatcher that records, per entry, the time from the newest sample's timestamp to archived."""

    timing: Timing

    async def flush_aggregates(self) -> int:
        # Roll-ups run off the write path (every 30 s by default) and would dominate a short run with
        # 20,000 point-hours; the benchmark measures ingest only.
        return 0

    async def handle(self, entries: list[Entry]) -> None:
        await super().handle(entries)
        now_us = time.time_ns() // 1000
        for e in entries:
            if e.produced_us is not None:
                self.timing.archive_ms.append((now_us - e.produced_us) / 1000)


def _child(keyspace: str, cassandra: list[str], redis_url: str, stream: str, names: list[str], consumer: str,
           batch_size: int, stop: Any, out: Any) -> None:
    """A dispatcher in its own process, as `skyops run` would start it."""
    asyncio.run(_child_main(keyspace, cassandra, redis_url, stream, names, consumer, batch_size, stop, out))


async def _child_main(keyspace: str, cassandra: list[str], redis_url: str, stream: str, names: list[str],
                      consumer: str, batch_size: int, stop_mp: Any, out: Any) -> None:
    redis = open_redis(redis_url)
    archive = CassandraArchive(cassandra, keyspace=keyspace, points=dict.fromkeys(names, "standard"),
                               max_in_flight=512)
    await archive.open()
    d = TimedDispatcher(Bus(redis), archive, _dispatcher_config(batch_size), consumer=consumer, stream=stream)
    d.timing = Timing()
    stop = asyncio.Event()
    out.put(("ready", consumer))

    async def watch() -> None:
        await asyncio.to_thread(stop_mp.wait)
        stop.set()

    await asyncio.gather(d.run(stop), watch())
    out.put(("done", d.archived, d.timing.archive_ms))
    await archive.close()
    await redis.aclose()


def _dispatcher_config(batch_size: int) -> DispatcherConfig:
    return DispatcherConfig(batch_size=batch_size, block_ms=50, min_idle_ms=60_000, flush_aggregates_every_s=3600)


def point_configs(n: int) -> list[PointConfig]:
    # Every sample is published (no suppression): the benchmark measures the pipeline, not the deadband.
    proc = Processing(suppress_duplicates=False)
    return [PointConfig(name=f"bench.p{i // 1000:03d}.v{i % 1000:03d}", unit="", retention="standard", processing=proc)
            for i in range(n)]


async def make_archives(backend: str, points: dict[str, str], tmp: Path, cassandra: list[str],
                        n: int) -> list[Archive]:
    """One archive object per dispatcher (as separate processes would have), all on the same store."""
    if backend == "embedded":
        # SQLite has one writer: the dispatchers of one process share its archive object.
        a: Archive = SqliteArchive(tmp / f"bench-{uuid.uuid4().hex[:6]}.sqlite3", points=points)
        await a.open()
        return [a] * n
    keyspace = f"bench_{uuid.uuid4().hex[:10]}"
    out: list[Archive] = []
    for _ in range(n):
        c = CassandraArchive(cassandra, keyspace=keyspace, points=points, max_in_flight=512)
        await c.open()
        out.append(c)
    return out


async def drop_archives(archives: list[Archive]) -> None:
    first = archives[0]
    if isinstance(first, CassandraArchive):
        await first.drop_keyspace()
    for a in {id(a): a for a in archives}.values():
        await a.close()


async def live_listener(bus: Bus, channel: str, timing: Timing, ready: asyncio.Event) -> None:
    async for payload in bus.subscribe(channel, ready=ready):
        now_us = time.time_ns() // 1000
        batch = codec.decode_samples(payload)
        timing.live_ms.append((now_us - int(batch.ts_us.max())) / 1000)


async def run_case(*, backend: str, n_points: int, rate_hz: float, seconds: float, dispatchers: int,
                   redis_url: str | None, cassandra: list[str], tmp: Path, realtime: bool) -> dict[str, Any]:
    """Push `seconds` worth of N points at R Hz; `realtime` paces it, otherwise as fast as it goes."""
    configs = point_configs(n_points)
    names = [c.name for c in configs]
    stream = f"bench.mon.samples.{uuid.uuid4().hex[:8]}"
    channel = f"bench.live.{uuid.uuid4().hex[:8]}"
    redis = open_redis(redis_url)
    bus = Bus(redis)
    timing = Timing()
    batch_size = 100
    dconf = _dispatcher_config(batch_size)
    archives = await make_archives(backend, dict.fromkeys(names, "standard"), tmp, cassandra,
                                   dispatchers if backend == "embedded" else 1)
    ds = []
    procs: list[Any] = []
    ctx = mp.get_context("spawn")
    stop_mp, results = ctx.Event(), ctx.Queue()
    await bus.ensure_group(stream, dconf.group, start="0")
    if backend == "embedded":
        for i, a in enumerate(archives):
            d = TimedDispatcher(bus, a, dconf, consumer=f"bench-{i}", stream=stream)
            d.timing = timing
            ds.append(d)
    else:
        keyspace = archives[0].keyspace  # type: ignore[attr-defined]
        for i in range(dispatchers):
            proc = ctx.Process(target=_child, args=(keyspace, cassandra, redis_url, stream, names, f"bench-{i}",
                                                    batch_size, stop_mp, results))
            proc.start()
            procs.append(proc)
        for _ in procs:
            await asyncio.to_thread(results.get, True, 120)
    fanout = LiveFanout(bus, consumer="bench-live", stream=stream, channel=channel, block_ms=50)
    processor = PointProcessor(configs)
    queue = QueueConfig(max_len=2_000_000, max_age_s=3600, max_batch=5000)
    retention = queue.retention()
    stop = asyncio.Event()
    ready = asyncio.Event()
    listener = asyncio.create_task(live_listener(bus, channel, timing, ready))
    await asyncio.wait_for(ready.wait(), 10)
    await fanout.consumer.run_once()  # the live group joins before the first batch
    tasks = [asyncio.create_task(d.run(stop)) for d in ds] + [asyncio.create_task(fanout.run(stop))]
    idx = np.arange(n_points, dtype=np.uint32)
    rng = np.random.default_rng(1)
    sweeps = max(1, int(seconds * rate_hz))
    sent = 0
    stamps: list[int] = []
    process_s = 0.0
    t_start = time.perf_counter()
    sim_t0 = to_us(datetime.now(UTC))
    for k in range(sweeps):
        if realtime:
            due = t_start + k / rate_hz
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ts_us = time.time_ns() // 1000
        else:
            ts_us = sim_t0 + int(k * 1e6 / rate_hz)
        stamps.append(ts_us)
        batch = SampleBatch.from_floats(names, idx, np.full(n_points, ts_us, dtype=np.int64),
                                        rng.normal(10.0, 1.0, n_points))
        p0 = time.perf_counter()
        out = processor.process(batch)
        payloads = [codec.encode_samples(out.select(np.arange(i, min(i + queue.max_batch, len(out)))))
                    for i in range(0, len(out), queue.max_batch)]
        process_s += time.perf_counter() - p0
        await bus.publish_many(stream, payloads, retention=retention)
        sent += len(out)
        await asyncio.sleep(0)  # let the dispatchers in
    while await bus.lag(stream, dconf.group) > 0:  # noqa: ASYNC110 - a server-side count, no event to await
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - t_start
    await asyncio.sleep(0.2)  # last live messages
    stop.set()
    stop_mp.set()
    await asyncio.gather(*tasks)
    archived = sum(d.archived for d in ds)
    for _ in procs:
        _, n, lat = await asyncio.to_thread(results.get, True, 300)
        archived += n
        timing.archive_ms.extend(lat)
    for proc in procs:
        proc.join(30)
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    # Spot check: every point holds exactly its samples.
    check = names[:: max(1, n_points // 20)]
    lo, hi = from_us(stamps[0]), from_us(stamps[-1] + 1)
    counts = [len(b) for b in (await archives[0].raw_many(check, lo, hi)).values()]
    await redis.delete(stream)
    await redis.aclose()
    await drop_archives(archives)
    return {
        "backend": backend, "points": n_points, "rate_hz": rate_hz, "samples": sent, "archived": archived,
        "per_point_ok": all(c == sweeps for c in counts), "elapsed_s": elapsed,
        "samples_per_s": archived / elapsed, "processing_samples_per_s": sent / process_s if process_s else 0.0,
        "archive_p50_ms": float(np.percentile(timing.archive_ms, 50)) if timing.archive_ms else float("nan"),
        "archive_p99_ms": float(np.percentile(timing.archive_ms, 99)) if timing.archive_ms else float("nan"),
        "live_p50_ms": float(np.percentile(timing.live_ms, 50)) if timing.live_ms else float("nan"),
        "live_p99_ms": float(np.percentile(timing.live_ms, 99)) if timing.live_ms else float("nan"),
    }


def result(name: str, value: float, unit: str, goal: float | None, baseline: float | None) -> dict[str, Any]:
    ratio = value / baseline if baseline else None
    return {"name": name, "value": round(value, 3), "unit": unit, "goal": goal, "baseline": baseline,
            "ratio": round(ratio, 3) if ratio is not None else None}


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--backends", default="embedded,distributed")
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--dispatchers", type=int, default=2)
    args = ap.parse_args(argv)
    redis_url = os.environ.get("SKYOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    cassandra = [h for h in os.environ.get("SKYOPS_TEST_CASSANDRA_HOSTS", "127.0.0.1").split(",") if h]
    n = 2_000 if args.quick else args.points
    results: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    t_run = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for backend in args.backends.split(","):
            url = None if backend == "embedded" else redis_url
            label = "embedded (fakeredis + SQLite)" if backend == "embedded" else "Redis + Cassandra"
            print(f"\n== {label}: {n:,} points, {args.dispatchers} dispatchers"
                  f"{' (own processes)' if backend != 'embedded' else ''}", flush=True)
            # Throughput: simulated time, as fast as the pipeline takes it; at 1 Hz (the ASTRI shape)
            # and at 10 Hz (the same points, ten times the rate: fuller packed blocks).
            for rate, secs in ((1.0, 5 if args.quick else (12 if backend == "embedded" else 8)),
                               (10.0, 1 if args.quick else (2 if backend == "embedded" else 1))):
                tp = await run_case(backend=backend, n_points=n, rate_hz=rate, seconds=secs,
                                    dispatchers=args.dispatchers, redis_url=url, cassandra=cassandra, tmp=tmp,
                                    realtime=False)
                cases.append({"mode": "throughput", **tp})
                exact = tp["per_point_ok"] and tp["archived"] == tp["samples"]
                print(f"  sustained at {rate:>4.0f} Hz {tp['samples_per_s']:>10,.0f} samples/s "
                      f"({tp['samples_per_s'] / ASTRI_RATE:.2f}× the ASTRI 20,000/s; {tp['samples']:,} samples in "
                      f"{tp['elapsed_s']:.1f} s; all archived exactly: {exact})",
                      flush=True)
                results.append(result(f"{backend}.sustained_{rate:.0f}hz", tp["samples_per_s"], "samples/s",
                                      GOAL_RATE if backend != "embedded" else None, ASTRI_RATE))
                if rate == 1.0:
                    print(f"  processing          {tp['processing_samples_per_s']:>10,.0f} samples/s "
                          "(limits/deadband/encode only)")
                    results.append(result(f"{backend}.processing", tp["processing_samples_per_s"], "samples/s",
                                          None, ASTRI_RATE))
            # Latency: real time at the ASTRI rate (N points at 1 Hz).
            lat = await run_case(backend=backend, n_points=n, rate_hz=1.0, seconds=3 if args.quick else 4,
                                 dispatchers=args.dispatchers, redis_url=url, cassandra=cassandra, tmp=tmp,
                                 realtime=True)
            cases.append({"mode": "latency", **lat})
            print(f"  at 1 Hz real time:  sample→archive p50 {lat['archive_p50_ms']:.0f} ms, "
                  f"p99 {lat['archive_p99_ms']:.0f} ms; sample→live p50 {lat['live_p50_ms']:.0f} ms, "
                  f"p99 {lat['live_p99_ms']:.0f} ms", flush=True)
            results += [
                result(f"{backend}.sample_to_archive_p50", lat["archive_p50_ms"], "ms", None, None),
                result(f"{backend}.sample_to_archive_p99", lat["archive_p99_ms"], "ms", None, None),
                result(f"{backend}.sample_to_live_p50", lat["live_p50_ms"], "ms", None, None),
                result(f"{backend}.sample_to_live_p99", lat["live_p99_ms"], "ms", GOAL_LIVE_P99_MS, None),
            ]
    report = {
        "bench": "ingest",
        "command": "python bench/ingest.py " + " ".join(argv),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        "cases": cases,
    }
    print(f"\nbench run took {time.perf_counter() - t_run:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
