"""Benchmark: alarm rule evaluation rate (2,000 rules, 20,000 points) and publish→alarm-event latency under load."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alarms.config import AlarmsConfig
from alarms.domain.engine import AlarmEngine
from alarms.store import AlarmStateStore
from alarms.supervisor import AlarmSupervisor, SupervisorOptions
from bench.common import Result, p, print_table, ratio, write_results
from skyops import codec
from skyops.bus import PAYLOAD_FIELD, Bus, Entry, StreamRetention, open_redis
from skyops.records import SampleBatch
from skyops.timeutil import SystemClock, to_us

GOAL_RATE = 200_000.0
GOAL_P99_MS = 100.0
T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(hours=1))


def point(i: int) -> str:
    return f"bench.p{i // 1000}.v{i % 1000}"


def make_rules(n_rules: int, n_points: int) -> AlarmsConfig:
    """A site-like mix: thresholds, wind restrictions, expressions, heartbeats and VES-like rules."""
    rules: list[dict[str, Any]] = []
    stride = max(1, n_points // n_rules)
    for r in range(n_rules):
        base = (r * stride) % n_points
        common = {"name": "Bench", "instance": f"R{r}:1", "guidance": "bench", "max_age_s": 600,
                  "activation_delay_s": {"warning": 5}, "clear_delay_s": 5}
        kind = r % 10
        if kind < 6:
            rules.append({**common, "kind": "threshold", "point": point(base),
                          "threshold": {"levels": {"warning": 2.0, "serious": 2.5, "critical": 3.0},
                                        "hysteresis": 0.2}})
        elif kind < 7:
            rules.append({**common, "kind": "wind_restriction", "speed_point": point(base),
                          "direction_point": point((base + 1) % n_points), "speed": {"levels": {"warning": 2.0}},
                          "half_width_deg": 45, "consequence": {"kind": "pointing_restriction",
                                                                "min_severity": "WARNING"}})
        elif kind < 8:
            rules.append({**common, "kind": "expression",
                          "inputs": {"a": point(base), "b": point((base + 1) % n_points)}, "expression": "a - b",
                          "threshold": {"levels": {"warning": 3.5}}})
        elif kind < 9:
            rules.append({**common, "kind": "staleness", "points": [point(base)],
                          "silence_s": {"levels": {"warning": 60}}})
        else:
            rules.append({**common, "kind": "ves_sync", "failures_point": point(base),
                          "success_age_point": point((base + 1) % n_points),
                          "failures": {"levels": {"warning": 2.5}}, "success_age_s": {"levels": {"warning": 3.0}}})
    return AlarmsConfig.model_validate({"rules": rules})


def make_batches(n_points: int, n_batches: int, rng: np.random.Generator, start: datetime = T0) -> list[SampleBatch]:
    """Each batch: every point once, one second apart; values N(0, 1) so a few rules cross their levels."""
    names = [point(i) for i in range(n_points)]
    idx = np.arange(n_points, dtype=np.uint32)
    out = []
    for b in range(n_batches):
        ts = np.full(n_points, to_us(start) + b * 1_000_000, dtype=np.int64)
        out.append(SampleBatch.from_floats(names, idx, ts, np.abs(rng.standard_normal(n_points))))
    return out


def engine_rate(config: AlarmsConfig, batches: list[SampleBatch]) -> tuple[float, int]:
    engine = AlarmEngine(config.build_rules(), started=T0)
    events = 0
    t = time.perf_counter()
    for b, batch in enumerate(batches):
        out = engine.process(batch, T0 + timedelta(seconds=b))
        events += len(out.events)
    elapsed = time.perf_counter() - t
    return sum(len(b) for b in batches) / elapsed, events


def baseline_rate(config: AlarmsConfig, batches: list[SampleBatch]) -> float:
    """The naive way: each sample, one at a time, re-evaluates the rules that read its point."""
    engine = AlarmEngine(config.build_rules(), started=T0)
    n = 0
    t = time.perf_counter()
    for b, batch in enumerate(batches):
        now = T0 + timedelta(seconds=b)
        for sample in batch.samples():
            engine.process(SampleBatch.from_samples([sample]), now)
            n += 1
    return n / (time.perf_counter() - t)


async def supervisor_rate(config: AlarmsConfig, batches: list[SampleBatch],
                          redis_url: str | None) -> tuple[float, float]:
    """Through the supervisor's handler: decode from the bus payload, evaluate, publish events, save state.

    Returns samples/s and the median CPU time per batch of this thread (what a quiet machine needs at least).
    """
    redis = open_redis(redis_url) if redis_url else _fake()
    tag = f"bench.{os.getpid()}."
    bus = Bus(redis)
    sup = _supervisor(config, bus, tag)
    await sup.start()
    payloads = [codec.encode_samples(b) for b in batches]
    cpu_ms = []
    t = time.perf_counter()
    for i, payload in enumerate(payloads):
        cpu = time.thread_time()
        await sup.handle_samples([Entry(f"{i + 1}-0", payload)])
        cpu_ms.append((time.thread_time() - cpu) * 1000)
    elapsed = time.perf_counter() - t
    await _cleanup(redis, tag)
    return sum(len(b) for b in batches) / elapsed, statistics.median(cpu_ms)


def _fake() -> Any:
    from fakeredis import FakeServer
    from fakeredis.aioredis import FakeRedis

    return FakeRedis(server=FakeServer(version=(7, 0)))


def _supervisor(config: AlarmsConfig, bus: Bus, tag: str) -> AlarmSupervisor:
    engine = AlarmEngine(config.build_rules(), started=datetime.now(UTC))
    return AlarmSupervisor(engine, bus, AlarmStateStore(bus.redis, prefix=tag), SystemClock(), _options(tag))


async def _cleanup(redis: Any, tag: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{tag}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


PROBE_POINT = "bench.probe.value"
PROBE_ID = "Probe.Bench:1"
RAISE_BASE = 1000.0  # a probe value >= 1 raises (WARNING), below clears; both carry the batch number


def with_probe(config: AlarmsConfig) -> AlarmsConfig:
    """The bench rules plus the probe: a threshold without delays on its own point, flipped by every batch."""
    probe = {"kind": "threshold", "name": "Probe", "instance": "Bench:1", "guidance": "bench",
             "point": PROBE_POINT, "threshold": {"levels": {"warning": 1.0}}}
    return AlarmsConfig.model_validate({"rules": [*config.model_dump()["rules"], probe]})


def probe_value(k: int) -> float:
    """Batch k's probe value: even batches raise, odd ones clear; the event's value attribute gives k back."""
    return RAISE_BASE + k if k % 2 == 0 else k * 1e-6


def probe_batch(value: str) -> int:
    v = float(value)
    return round(v - RAISE_BASE) if v >= 1.0 else round(v * 1e6)


def _options(tag: str) -> SupervisorOptions:
    # The production options, on streams of the bench's own.
    return SupervisorOptions(samples_stream=tag + "mon.samples", events_stream=tag + "alarm.events",
                             triggers_stream=tag + "plan.triggers", commands_stream=tag + "alarm.commands")


def _serve(n_rules: int, n_points: int, redis_url: str, tag: str, ready: Any, stop: Any) -> None:
    """The supervisor as `skyops run alarms` runs it: its own process, its loop reading the bus."""
    asyncio.run(_serve_async(n_rules, n_points, redis_url, tag, ready, stop))


async def _serve_async(n_rules: int, n_points: int, redis_url: str, tag: str, ready: Any, stop: Any) -> None:
    config = with_probe(make_rules(n_rules, n_points))
    redis = open_redis(redis_url)
    bus = Bus(redis)
    engine = AlarmEngine(config.build_rules(), started=datetime.now(UTC))
    sup = AlarmSupervisor(engine, bus, AlarmStateStore(redis, prefix=tag), SystemClock(), _options(tag))
    done = asyncio.Event()
    runner = asyncio.create_task(sup.run(done))
    await _wait_group(redis, tag + "mon.samples")
    ready.set()
    await asyncio.to_thread(stop.wait)
    done.set()
    await asyncio.wait_for(runner, timeout=30)
    await redis.aclose()


async def _wait_group(redis: Any, stream: str, timeout_s: float = 60.0) -> None:
    """Until the supervisor's consumer group exists: batches published before it would never be read."""
    for _ in range(round(timeout_s / 0.05)):
        try:
            groups: Any = await redis.xinfo_groups(stream)
        except Exception:  # the stream does not exist yet
            groups = []
        if any(g["name"] in ("alarms", b"alarms") for g in groups):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the supervisor did not create its group on {stream} within {timeout_s:g} s")


@dataclass
class Latencies:
    from_publish_ms: list[float]
    from_sample_ms: list[float]
    lost: int  # batches after which no probe event came at all
    merged: int  # batches evaluated together with a later one (their probe overwritten)


async def sustained_latency(n_rules: int, n_points: int, batch_points: int, rate_hz: float, probes: int,
                            redis_url: str | None, warmup: int = 3) -> Latencies:
    """Batches of `batch_points` random points plus the probe, published at `rate_hz` whatever happens
    (open loop: a slow supervisor shows as queueing, not as a slower sender), while a reader follows
    `alarm.events` and times each probe event from its batch's publish time and sample timestamp.

    With a Redis URL the supervisor runs in its own process, as deployed; else in this event loop on the
    embedded bus. The first `warmup` batches (the first evaluation of every rule) are not counted.
    """
    tag = f"bench.lat.{os.getpid()}.{batch_points}."
    redis = open_redis(redis_url) if redis_url else _fake()
    bus = Bus(redis)
    ctx = mp.get_context("spawn")
    ready, stop_child = ctx.Event(), ctx.Event()
    child: Any = None
    stop_local = asyncio.Event()
    local: asyncio.Task[None] | None = None
    if redis_url:
        child = ctx.Process(target=_serve, args=(n_rules, n_points, redis_url, tag, ready, stop_child))
        child.start()
        if not await asyncio.to_thread(ready.wait, 120):
            child.kill()
            raise RuntimeError("the supervisor process did not start within 120 s")
    else:
        engine = AlarmEngine(with_probe(make_rules(n_rules, n_points)).build_rules(), started=datetime.now(UTC))
        sup = AlarmSupervisor(engine, bus, AlarmStateStore(redis, prefix=tag), SystemClock(), _options(tag))
        local = asyncio.create_task(sup.run(stop_local))
        await _wait_group(redis, tag + "mon.samples")
    total = warmup + probes
    published: dict[int, tuple[float, float]] = {}  # batch → (publish perf time, sample wall time)
    seen: dict[int, tuple[float, float]] = {}  # batch → (perf time, wall time) its probe event was read
    finished = asyncio.Event()
    all_seen = asyncio.Event()

    async def follow() -> None:
        last_id = "0-0"  # the stream is new: read it from the start, so no event can slip past
        while not finished.is_set():
            reply: Any = await redis.xread({tag + "alarm.events": last_id}, block=200, count=100)
            now_perf, now_wall = time.perf_counter(), time.time()
            for entry_id, fields in reply[0][1] if reply else []:
                last_id = entry_id
                for e in codec.decode_alarm_events(bytes(fields[PAYLOAD_FIELD])):
                    if e.alarm_id == PROBE_ID and e.action in ("raise", "change", "clear"):
                        seen.setdefault(probe_batch(e.attributes["value"]), (now_perf, now_wall))
            if len(seen) >= total:
                all_seen.set()

    reader = asyncio.create_task(follow())
    rng = np.random.default_rng(7)
    names = [point(i) for i in range(batch_points)] + [PROBE_POINT]
    idx = np.arange(len(names), dtype=np.uint32)
    # Each batch is built and encoded ahead of its slot, stamped with the slot's time: the sender's own work
    # (a collector's) stays out of the measured window and out of the way of the reader in this loop.
    ahead_s = min(0.5 / rate_hz, 0.2)
    start, start_wall = time.perf_counter() + ahead_s, time.time() + ahead_s
    try:
        for k in range(total):
            values = np.append(np.abs(rng.standard_normal(batch_points)), probe_value(k))
            slot_wall = start_wall + k / rate_hz
            ts = np.full(len(names), round(slot_wall * 1e6), dtype=np.int64)
            payload = codec.encode_samples(SampleBatch.from_floats(names, idx, ts, values))
            delay = start + k / rate_hz - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            published[k] = (time.perf_counter(), slot_wall)
            await bus.publish(tag + "mon.samples", payload, retention=RETENTION)
            # Build the next batch only when its slot is near, not while this one's event is awaited.
            wait = start + (k + 1) / rate_hz - ahead_s - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), timeout=5.0)
    finally:
        finished.set()
        await reader
        stop_child.set()
        stop_local.set()
        if child is not None:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
        if local is not None:
            await asyncio.wait_for(local, timeout=30)
    await _cleanup(redis, tag)
    # Every sample of an entry is evaluated in time order, so each probe has its own event (`merged` stays 0).
    # Were one ever without, its samples count as evaluated when the first later event came out.
    done_at: dict[int, tuple[float, float]] = {}
    first: tuple[float, float] | None = None
    for k in reversed(range(total)):
        if k in seen and (first is None or seen[k][0] < first[0]):
            first = seen[k]
        if first is not None:
            done_at[k] = first
    counted = range(warmup, total)
    return Latencies(
        from_publish_ms=[(done_at[k][0] - published[k][0]) * 1000 for k in counted if k in done_at],
        from_sample_ms=[(done_at[k][1] - published[k][1]) * 1000 for k in counted if k in done_at],
        lost=sum(1 for k in counted if k not in done_at),
        merged=sum(1 for k in counted if k not in seen and k in done_at),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument("--redis-url", default=os.environ.get("SKYOPS_TEST_REDIS_URL"),
                        help="real Redis for the supervisor figures (default: $SKYOPS_TEST_REDIS_URL, else embedded)")
    args = parser.parse_args()
    n_rules, n_points = 2000, 20_000
    n_batches = 5 if args.quick else 20
    rng = np.random.default_rng(1)
    config = make_rules(n_rules, n_points)
    batches = make_batches(n_points, n_batches, rng)

    rate, events = engine_rate(config, batches)
    base = baseline_rate(config, batches[:1] if args.quick else batches[:2])
    # The supervisor reads the wall clock: its samples must be fresh, or every rule would be INVALID.
    fresh = make_batches(n_points, n_batches, rng, start=datetime.now(UTC) - timedelta(seconds=n_batches))
    sup_rate, sup_cpu_ms = asyncio.run(supervisor_rate(config, fresh, args.redis_url))
    backend = "Redis, supervisor in its own process" if args.redis_url else "embedded bus, one process"
    results = [
        Result(f"rule evaluation, {n_rules} rules over {n_points} points", rate, "samples/s",
               f">= {GOAL_RATE:,.0f} samples/s", base, ratio(rate, base, higher_is_better=True)),
        Result(f"supervisor handler (decode, evaluate, publish, save; {backend.split(',')[0]})", sup_rate,
               "samples/s", f">= {GOAL_RATE:,.0f} samples/s", base, ratio(sup_rate, base, higher_is_better=True)),
        Result(f"supervisor CPU time per {n_points}-sample batch (median; decode, evaluate, publish, save)",
               sup_cpu_ms, "ms", f"< {GOAL_P99_MS:g} ms"),
    ]
    # Two sustained loads of about 20,000 samples/s: many small batches, and the ASTRI shape (every point once
    # a second in one batch). Each batch redraws every value, so ~5 % of the rules cross a level every second.
    scenarios = [(1000, 20.0, 40 if args.quick else 200), (n_points, 1.0, 20 if args.quick else 120)]
    for batch_points, hz, probes in scenarios:
        lat = asyncio.run(sustained_latency(n_rules, n_points, batch_points, hz, probes, args.redis_url))
        what = f"{batch_points + 1}-sample batches at {hz:g} Hz; {backend}"
        if lat.lost or lat.merged:
            print(f"{what}: {lat.lost} of {probes} batches were followed by no probe event within 5 s; "
                  f"{lat.merged} were read and evaluated together with the next batch")
        results += [
            Result(f"publish → alarm event p50 ({what})", p(lat.from_publish_ms, 50), "ms",
                   f"< {GOAL_P99_MS:g} ms (p99)"),
            Result(f"publish → alarm event p99 ({what})", p(lat.from_publish_ms, 99), "ms", f"< {GOAL_P99_MS:g} ms"),
            Result(f"sample timestamp → alarm event p99 ({what})", p(lat.from_sample_ms, 99), "ms",
                   f"< {GOAL_P99_MS:g} ms"),
            Result(f"probes without an alarm event ({what})", float(lat.lost), "probes", "0"),
        ]
    print(f"{events} alarm events over {n_batches} batches; baseline = one sample at a time through the engine")
    print_table("alarms", results)
    print(write_results("alarms", results))


if __name__ == "__main__":
    main()
