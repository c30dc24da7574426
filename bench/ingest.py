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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.dispatcher import Dispatcher, LiveFanout
from collectors.domain.batching import split
from collectors.domain.holding import HeldEntry
from collectors.domain.processing import PointProcessor
from config_db.monitoring import DispatcherConfig, PointConfig, Processing, QueueConfig
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, open_redis
from skyops.records import SampleBatch
from skyops.timeutil import US_PER_S, from_us, to_us

ASTRI_RATE = 20_000.0  # samples/s: the ASTRI Mini-Array requirement, the baseline of every ratio
GOAL_RATE = 100_000.0
GOAL_LIVE_P99_MS = 200.0
BLOCK_S = 60  # the "standard" retention class's block
STALL_S = 240.0  # a case whose entries are not all read by then has stalled
RESULTS = Path(__file__).parent / "results" / "ingest.json"


@dataclass
class Timing:
    archive_ms: list[float] = field(default_factory=list)
    live_ms: list[float] = field(default_factory=list)  # newest sample's time → decoded by the reader
    bus_ms: list[float] = field(default_factory=list)  # entry published → decoded by the reader
    publish_ms: list[float] = field(default_factory=list)  # sweep's time → its entries published


class TimedDispatcher(Dispatcher):
    """A dispatcher that records, per bus entry, the time from its publication to its last sample archived."""

    timing: Timing

    async def flush_aggregates(self) -> int:
        # Roll-ups run off the write path (every 30 s by default) and would dominate a short run with
        # 20,000 point-hours; the benchmark measures ingest only.
        return 0

    def _archived(self, done: list[HeldEntry]) -> None:
        super()._archived(done)
        now_us = time.time_ns() // 1000
        self.timing.archive_ms.extend((now_us - h.produced_us) / 1000 for h in done if h.produced_us is not None)


def dispatcher_config() -> DispatcherConfig:
    # The shipped holding settings (60-s blocks, 30 s longest hold); no takeover during a run.
    return DispatcherConfig(batch_size=100, block_ms=50, min_idle_ms=120_000, flush_aggregates_every_s=3600)


def _child(keyspace: str, cassandra: list[str], redis_url: str, stream: str, names: list[str], consumer: str,
           stop: Any, out: Any) -> None:
    """A dispatcher in its own process, as `skyops run` would start it."""
    asyncio.run(_child_main(keyspace, cassandra, redis_url, stream, names, consumer, stop, out))


async def _child_main(keyspace: str, cassandra: list[str], redis_url: str, stream: str, names: list[str],
                      consumer: str, stop_mp: Any, out: Any) -> None:
    redis = open_redis(redis_url)
    archive = CassandraArchive(cassandra, keyspace=keyspace, points=dict.fromkeys(names, "standard"),
                               max_in_flight=512)
    await archive.open()
    d = TimedDispatcher(Bus(redis), archive, dispatcher_config(), consumer=consumer, stream=stream)
    d.timing = Timing()
    stop = asyncio.Event()
    out.put(("ready", consumer))

    async def watch() -> None:
        await asyncio.to_thread(stop_mp.wait)
        stop.set()

    await asyncio.gather(d.run(stop), watch())
    out.put(("done", d.archived, d.writes, d.timing.archive_ms, d.write_seconds))
    await archive.close()
    await redis.aclose()


def point_configs(n: int) -> list[PointConfig]:
    # Every sample is published (no suppression): the benchmark measures the pipeline, not the deadband.
    proc = Processing(suppress_duplicates=False)
    return [PointConfig(name=f"bench.p{i // 1000:03d}.v{i % 1000:03d}", unit="", retention="standard", processing=proc)
            for i in range(n)]


async def make_archives(backend: str, points: dict[str, str], tmp: Path, cassandra: list[str],
                        n: int) -> list[Archive]:
    """One archive object per in-process dispatcher, all on the same store."""
    if backend == "embedded":
        # SQLite has one writer: the dispatchers of one process share its archive object.
        a: Archive = SqliteArchive(tmp / f"bench-{uuid.uuid4().hex[:6]}.sqlite3", points=points)
        await a.open()
        return [a] * n
    keyspace = f"bench_{uuid.uuid4().hex[:10]}"
    c = CassandraArchive(cassandra, keyspace=keyspace, points=points, max_in_flight=512)
    await c.open()
    return [c]


async def drop_archives(archives: list[Archive]) -> None:
    first = archives[0]
    if isinstance(first, CassandraArchive):
        await first.drop_keyspace()
    for a in {id(a): a for a in archives}.values():
        await a.close()


async def live_listener(bus: Bus, stream: str, timing: Timing, ready: asyncio.Event) -> None:
    """What the operator's page does (hmi_api.live.SampleHub): tail the stream, decode, take the newest."""
    position = await bus.last_id(stream)
    ready.set()
    while True:
        for e in await bus.tail(stream, position, count=500, block_ms=1000):
            position = e.id
            batch = codec.decode_samples(e.payload)
            now_us = time.time_ns() // 1000
            timing.live_ms.append((now_us - int(batch.ts_us.max())) / 1000)
            if e.produced_us is not None:
                timing.bus_ms.append((now_us - e.produced_us) / 1000)


async def fanout_listener(bus: Bus, channel: str, timing: Timing, ready: asyncio.Event) -> None:
    """A subscriber of the LiveFanout's pub/sub channel."""
    async for payload in bus.subscribe(channel, ready=ready):
        batch = codec.decode_samples(payload)
        now_us = time.time_ns() // 1000
        timing.live_ms.append((now_us - int(batch.ts_us.max())) / 1000)


def _live_child(redis_url: str, target: str, mode: str, stop: Any, out: Any) -> None:
    """The operator's page in its own process, as the HMI runs: it reads the live path and times it."""
    asyncio.run(_live_main(redis_url, target, mode, stop, out))


async def _live_main(redis_url: str, target: str, mode: str, stop_mp: Any, out: Any) -> None:
    redis = open_redis(redis_url)
    bus = Bus(redis)
    timing = Timing()
    ready = asyncio.Event()
    listen = live_listener(bus, target, timing, ready) if mode == "tail" else fanout_listener(bus, target, timing,
                                                                                            ready)
    task = asyncio.create_task(listen)
    await asyncio.wait_for(ready.wait(), 30)
    out.put(("ready",))
    await asyncio.to_thread(stop_mp.wait)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    out.put(("live", timing.live_ms, timing.bus_ms))
    await redis.aclose()


@dataclass
class Case:
    backend: str
    n_points: int
    rate_hz: float
    seconds: float
    dispatchers: int
    redis_url: str | None
    cassandra: list[str]
    tmp: Path
    realtime: bool


def sweep_maker(names: list[str]) -> Any:
    """Builds one sweep (every point once) as a collector would hand it over: names checked once, not per sweep."""
    template = SampleBatch.from_floats(names, np.arange(len(names)), np.zeros(len(names), dtype=np.int64),
                                       np.zeros(len(names)))
    rng = np.random.default_rng(1)

    def make(ts_us: int) -> SampleBatch:
        values = rng.normal(10.0, 1.0, len(names))
        return SampleBatch(points=template.points, point_idx=template.point_idx,
                           ts_us=np.full(len(names), ts_us, dtype=np.int64), kind=template.kind,
                           bits=values.view(np.int64), quality=template.quality)

    return make


async def run_case(case: Case, *, live: str = "tail") -> dict[str, Any]:
    """Push `seconds` worth of N points at R Hz: paced in real time, or as fast as the pipeline takes it.

    An as-fast-as-possible run is simulated time starting at a block boundary in the past, so the
    dispatchers hold and write whole blocks as they would in real time. It ends once every entry was
    read: the dispatchers are stopped, write what they still hold and acknowledge it; the elapsed time
    runs until the stream's backlog is zero.
    """
    configs = point_configs(case.n_points)
    names = [c.name for c in configs]
    stream = f"bench.mon.samples.{uuid.uuid4().hex[:8]}"
    channel = f"bench.live.{uuid.uuid4().hex[:8]}"
    redis = open_redis(case.redis_url)
    bus = Bus(redis)
    timing = Timing()
    dconf = dispatcher_config()
    archives = await make_archives(case.backend, dict.fromkeys(names, "standard"), case.tmp, case.cassandra,
                                   case.dispatchers)
    ds: list[TimedDispatcher] = []
    procs: list[Any] = []
    ctx = mp.get_context("spawn")
    stop_mp, results = ctx.Event(), ctx.Queue()
    await bus.ensure_group(stream, dconf.group, start="0")
    if case.backend == "embedded":
        for i, a in enumerate(archives):
            d = TimedDispatcher(bus, a, dconf, consumer=f"bench-{i}", stream=stream)
            d.timing = timing
            ds.append(d)
    else:
        keyspace = archives[0].keyspace  # type: ignore[attr-defined]
        for i in range(case.dispatchers):
            proc = ctx.Process(target=_child, args=(keyspace, case.cassandra, case.redis_url, stream, names,
                                                    f"bench-{i}", stop_mp, results))
            proc.start()
            procs.append(proc)
        for _ in procs:
            await asyncio.to_thread(results.get, True, 120)
    processor = PointProcessor(configs)
    queue = QueueConfig(max_len=2_000_000, max_age_s=3600, max_batch=5000)
    retention = queue.retention()
    stop = asyncio.Event()
    ready = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop)) for d in ds]
    live_q = ctx.Queue()
    live_proc: Any = None
    listener = asyncio.create_task(asyncio.sleep(0))
    if live == "fanout":
        fanout = LiveFanout(bus, consumer="bench-live", stream=stream, channel=channel, block_ms=50)
        await fanout.consumer.run_once()  # the live group joins before the first batch
        tasks.append(asyncio.create_task(fanout.run(stop)))
    if live != "off" and case.redis_url is not None:
        target = channel if live == "fanout" else stream
        live_proc = ctx.Process(target=_live_child, args=(case.redis_url, target, live, stop_mp, live_q))
        live_proc.start()
        await asyncio.to_thread(live_q.get, True, 60)
    elif live != "off":
        # The embedded bus lives in this process: so does its reader.
        listen = (live_listener(bus, stream, timing, ready) if live == "tail"
                  else fanout_listener(bus, channel, timing, ready))
        listener = asyncio.create_task(listen)
        await asyncio.wait_for(ready.wait(), 10)
    count = max(1, int(case.seconds * case.rate_hz))
    make = sweep_maker(names)
    sent = 0
    stamps: list[int] = []
    process_s = 0.0
    t_start = time.perf_counter()
    # Simulated time starts on a block boundary far enough in the past that it never runs into the future.
    now_us = to_us(datetime.now(UTC))
    span_us = int(case.seconds * US_PER_S) + 2 * BLOCK_S * US_PER_S
    sim_t0 = (now_us - span_us) // (BLOCK_S * US_PER_S) * (BLOCK_S * US_PER_S)
    for k in range(count):
        if case.realtime:
            delay = t_start + k / case.rate_hz - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ts_us = time.time_ns() // 1000
        else:
            ts_us = sim_t0 + int(k * 1e6 / case.rate_hz)
        stamps.append(ts_us)
        p0 = time.perf_counter()
        out = processor.process(make(ts_us))
        payloads = [codec.encode_samples(piece) for piece in split(out, queue.max_batch)]
        process_s += time.perf_counter() - p0
        await bus.publish_many(stream, payloads, retention=retention)
        if case.realtime:
            timing.publish_ms.append((time.time_ns() // 1000 - ts_us) / 1000)
        sent += len(out)
        await asyncio.sleep(0)  # let the dispatchers in
    publish_s = time.perf_counter() - t_start
    # Every entry read (held or written), then stop: the dispatchers write what they hold and ack it.
    deadline = time.perf_counter() + STALL_S
    while await bus.lag(stream, dconf.group) - await bus.pending_count(stream, dconf.group) > 0:
        if time.perf_counter() > deadline:
            # The archive is down or the machine is swamped: stop rather than hang (and clean up).
            stop.set()
            stop_mp.set()
            for proc in procs:
                proc.terminate()
                proc.join(10)
            for t in tasks:
                t.cancel()
            await redis.delete(stream)
            await redis.aclose()
            with contextlib.suppress(Exception):
                await drop_archives(archives)
            raise RuntimeError(f"the pipeline read nothing more for {STALL_S:.0f} s: is the archive up?")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # last live messages
    stop.set()
    stop_mp.set()
    await asyncio.gather(*tasks)
    archived = sum(d.archived for d in ds)
    writes = sum(d.writes for d in ds)
    write_s = sum(d.write_seconds for d in ds)
    for _ in procs:
        _, n, w, lat, ws = await asyncio.to_thread(results.get, True, 300)
        archived += n
        writes += w
        write_s += ws
        timing.archive_ms.extend(lat)
    if live_proc is not None:
        _, live_ms, bus_ms = await asyncio.to_thread(live_q.get, True, 60)
        timing.live_ms.extend(live_ms)
        timing.bus_ms.extend(bus_ms)
        live_proc.join(30)
    for proc in procs:
        proc.join(30)
    backlog = await bus.lag(stream, dconf.group)
    elapsed = time.perf_counter() - t_start
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    # Spot check: every point holds exactly its samples, once.
    check = names[:: max(1, case.n_points // 20)]
    lo, hi = from_us(stamps[0]), from_us(stamps[-1] + 1)
    counts = [len(b) for b in (await archives[0].raw_many(check, lo, hi)).values()]
    await redis.delete(stream)
    await redis.aclose()
    await drop_archives(archives)
    return {
        "backend": case.backend, "points": case.n_points, "rate_hz": case.rate_hz, "seconds": case.seconds,
        "realtime": case.realtime, "dispatchers": case.dispatchers, "samples": sent, "archived": archived,
        "archive_writes": writes, "archive_write_s": write_s, "backlog_left": backlog,
        "per_point_ok": all(c == count for c in counts), "elapsed_s": elapsed, "publish_s": publish_s,
        "samples_per_s": archived / elapsed, "processing_samples_per_s": sent / process_s if process_s else 0.0,
        "archive_p50_ms": _pct(timing.archive_ms, 50), "archive_p99_ms": _pct(timing.archive_ms, 99),
        "live_p50_ms": _pct(timing.live_ms, 50), "live_p99_ms": _pct(timing.live_ms, 99),
        "live_messages": len(timing.live_ms),
        "publish_p50_ms": _pct(timing.publish_ms, 50), "publish_p99_ms": _pct(timing.publish_ms, 99),
        "bus_to_live_p50_ms": _pct(timing.bus_ms, 50), "bus_to_live_p99_ms": _pct(timing.bus_ms, 99),
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def result(name: str, value: float, unit: str, goal: float | None, baseline: float | None) -> dict[str, Any]:
    ratio = value / baseline if baseline else None
    return {"name": name, "value": round(value, 3), "unit": unit, "goal": goal, "baseline": baseline,
            "ratio": round(ratio, 3) if ratio is not None else None}


def plan(quick: bool, backend: str, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(rate Hz, data seconds) of the throughput runs and of the real-time latency runs."""
    if quick:
        return [(1.0, 120.0)], [(1.0, 5.0), (5.0, 5.0)]
    if backend == "embedded":
        return [(1.0, 120.0), (10.0, 12.0)], [(1.0, 10.0)]
    return [(1.0, 120.0), (10.0, 12.0)], [(1.0, 10.0), (5.0, 10.0)]


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, under 3 minutes)")
    ap.add_argument("--backends", default="embedded,distributed")
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--dispatchers", type=int, default=1)
    ap.add_argument("--cases", default="throughput,latency", help="which runs: throughput, latency or both")
    ap.add_argument("--live", choices=("tail", "fanout"), default="tail",
                    help="live path measured: the HMI's stream tail, or the LiveFanout pub/sub channel")
    args = ap.parse_args(argv)
    redis_url = os.environ.get("SKYOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    cassandra = [h for h in os.environ.get("SKYOPS_TEST_CASSANDRA_HOSTS", "127.0.0.1").split(",") if h]
    results: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    t_run = time.perf_counter()
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for backend in args.backends.split(","):
            n = (2_000 if backend == "embedded" else 5_000) if args.quick else args.points
            url = None if backend == "embedded" else redis_url
            label = "embedded (fakeredis + SQLite)" if backend == "embedded" else "Redis + Cassandra"
            print(f"\n== {label}: {n:,} points, {args.dispatchers} dispatcher(s)"
                  f"{' (own processes)' if backend != 'embedded' else ''}, live path: {args.live}", flush=True)
            throughput, latency = plan(args.quick, backend, n)
            throughput = throughput if "throughput" in args.cases else []
            latency = latency if "latency" in args.cases else []
            for rate, secs in throughput:
                # The operator's page runs in its own process: no live reader competes with the pipeline here.
                tp = await run_case(Case(backend, n, rate, secs, args.dispatchers, url, cassandra, tmp, False),
                                    live="off")
                cases.append({"mode": "throughput", **tp})
                exact = tp["per_point_ok"] and tp["archived"] == tp["samples"] and tp["backlog_left"] == 0
                print(f"  sustained at {rate:>4.0f} Hz {tp['samples_per_s']:>10,.0f} samples/s "
                      f"({tp['samples_per_s'] / ASTRI_RATE:.2f}× the ASTRI 20,000/s; {tp['samples']:,} samples "
                      f"({secs:.0f} s of data) in {tp['elapsed_s']:.1f} s, {tp['archive_writes']} archive writes; "
                      f"all archived exactly once: {exact})", flush=True)
                print(f"      publish→archive p50 {tp['archive_p50_ms']:,.0f} ms, p99 {tp['archive_p99_ms']:,.0f} ms "
                      "(held for whole blocks)", flush=True)
                results.append(result(f"{backend}.sustained_{rate:.0f}hz", tp["samples_per_s"], "samples/s",
                                      GOAL_RATE if backend != "embedded" else None, ASTRI_RATE))
                if rate == 1.0:
                    print(f"  processing          {tp['processing_samples_per_s']:>10,.0f} samples/s "
                          "(limits/deadband/encode only)")
                    results.append(result(f"{backend}.processing", tp["processing_samples_per_s"], "samples/s",
                                          None, ASTRI_RATE))
            for rate, secs in latency:
                lat = await run_case(Case(backend, n, rate, secs, args.dispatchers, url, cassandra, tmp, True),
                                     live=args.live)
                cases.append({"mode": "latency", **lat})
                print(f"  real time {rate:.0f} Hz ({n * rate:,.0f} samples/s, {secs:.0f} s): sample→live "
                      f"p50 {lat['live_p50_ms']:.0f} ms, p99 {lat['live_p99_ms']:.0f} ms "
                      f"({lat['live_messages']} batches; all archived exactly once: "
                      f"{lat['per_point_ok'] and lat['archived'] == lat['samples']})", flush=True)
                print(f"      of which sample→published (processing, encoding, XADD) "
                      f"p50 {lat['publish_p50_ms']:.0f} ms, p99 {lat['publish_p99_ms']:.0f} ms; "
                      "published→decoded by the reader "
                      f"p50 {lat['bus_to_live_p50_ms']:.0f} ms, p99 {lat['bus_to_live_p99_ms']:.0f} ms", flush=True)
                results += [
                    result(f"{backend}.sample_to_live_p50_{rate:.0f}hz", lat["live_p50_ms"], "ms", None, None),
                    result(f"{backend}.sample_to_live_p99_{rate:.0f}hz", lat["live_p99_ms"], "ms", GOAL_LIVE_P99_MS,
                           None),
                ]
    report = {
        "bench": "ingest",
        "command": "python bench/ingest.py " + " ".join(argv),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    # A shared machine's load moves these figures by 2x: keep it with them.
                    "load_avg_start": load_start, "load_avg_end": list(os.getloadavg())},
        "results": results,
        "cases": cases,
    }
    print(f"\nbench run took {time.perf_counter() - t_run:.0f} s (load average {load_start[0]:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
