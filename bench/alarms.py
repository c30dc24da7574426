"""Benchmark: samples/s through alarm rule evaluation (2,000 rules, 20,000 points), sample→alarm-event latency."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
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
from skyops.bus import PAYLOAD_FIELD, Bus, StreamRetention, open_redis
from skyops.records import AlarmSeverity, SampleBatch
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


async def supervisor_rate(config: AlarmsConfig, batches: list[SampleBatch], redis_url: str | None) -> float:
    """Through the supervisor's handler: decode from the bus payload, evaluate, publish events, save state."""
    redis = open_redis(redis_url) if redis_url else _fake()
    tag = f"bench.{os.getpid()}."
    bus = Bus(redis)
    sup = _supervisor(config, bus, tag)
    await sup.start()
    payloads = [codec.encode_samples(b) for b in batches]
    from skyops.bus import Entry

    t = time.perf_counter()
    for i, payload in enumerate(payloads):
        await sup.handle_samples([Entry(f"{i + 1}-0", payload)])
    elapsed = time.perf_counter() - t
    await _cleanup(redis, tag)
    return sum(len(b) for b in batches) / elapsed


def _fake() -> Any:
    from fakeredis import FakeServer
    from fakeredis.aioredis import FakeRedis

    return FakeRedis(server=FakeServer(version=(7, 0)))


def _supervisor(config: AlarmsConfig, bus: Bus, tag: str) -> AlarmSupervisor:
    options = SupervisorOptions(samples_stream=tag + "mon.samples", events_stream=tag + "alarm.events",
                                triggers_stream=tag + "plan.triggers", commands_stream=tag + "alarm.commands",
                                block_ms=5, batch_size=10, tick_s=1.0)
    engine = AlarmEngine(config.build_rules(), started=datetime.now(UTC))
    return AlarmSupervisor(engine, bus, AlarmStateStore(bus.redis, prefix=tag), SystemClock(), options)


async def _cleanup(redis: Any, tag: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{tag}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def latency(config: AlarmsConfig, n_points: int, probes: int, redis_url: str | None,
                  batch_points: int) -> list[float]:
    """A batch of `batch_points` points carrying a probe value that flips one alarm; time until its event is
    readable on the alarm.events stream, with the supervisor running its loop (consumers and ticks)."""
    redis = open_redis(redis_url) if redis_url else _fake()
    tag = f"bench.lat.{os.getpid()}."
    bus = Bus(redis)
    # The probe: one threshold rule without delays on its own point.
    probe_rule = {"kind": "threshold", "name": "Probe", "instance": "Bench:1", "guidance": "bench",
                  "point": "bench.probe.value", "threshold": {"levels": {"warning": 1.0}}}
    full = AlarmsConfig.model_validate({"rules": [*config.model_dump()["rules"], probe_rule]})
    sup = _supervisor(full, bus, tag)
    stop = asyncio.Event()
    runner = asyncio.create_task(sup.run(stop))
    await asyncio.sleep(0.2)
    rng = np.random.default_rng(7)
    names = [point(i) for i in range(batch_points)] + ["bench.probe.value"]
    idx = np.arange(len(names), dtype=np.uint32)
    last_id = "0-0"  # the stream is new: read it from the start, so no event can slip past
    out: list[float] = []
    lost = 0
    try:
        for k in range(probes):
            values = np.append(np.abs(rng.standard_normal(batch_points)), 2.0 if k % 2 == 0 else 0.0)
            ts = np.full(len(names), to_us(datetime.now(UTC)), dtype=np.int64)
            payload = codec.encode_samples(SampleBatch.from_floats(names, idx, ts, values))
            want = AlarmSeverity.WARNING if k % 2 == 0 else AlarmSeverity.NONE
            t = time.perf_counter()
            await bus.publish(tag + "mon.samples", payload, retention=RETENTION)
            found = False
            while not found:
                reply: Any = await redis.xread({tag + "alarm.events": last_id}, block=2000, count=100)
                if not reply:
                    # Counted, not hidden: on a Redis shared with other test runs a stream may vanish.
                    lost += 1
                    break
                for entry_id, fields in reply[0][1]:
                    last_id = entry_id
                    events = codec.decode_alarm_events(bytes(fields[PAYLOAD_FIELD]))
                    # The severity tells this probe's event from a late one of the probe before.
                    found = found or any(e.alarm_id == "Probe.Bench:1" and e.severity == want for e in events)
            if found:
                out.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=30)
    if lost:
        print(f"{lost} of {probes} probes got no alarm event within 2 s (batches of {batch_points + 1} samples)")
    await _cleanup(redis, tag)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument("--redis-url", default=os.environ.get("SKYOPS_TEST_REDIS_URL"),
                        help="real Redis for the supervisor figures (default: $SKYOPS_TEST_REDIS_URL, else embedded)")
    args = parser.parse_args()
    n_rules, n_points = 2000, 20_000
    n_batches = 5 if args.quick else 20
    probes = 30 if args.quick else 200
    rng = np.random.default_rng(1)
    config = make_rules(n_rules, n_points)
    batches = make_batches(n_points, n_batches, rng)

    rate, events = engine_rate(config, batches)
    base = baseline_rate(config, batches[:1] if args.quick else batches[:2])
    # The supervisor reads the wall clock: its samples must be fresh, or every rule would be INVALID.
    fresh = make_batches(n_points, n_batches, rng, start=datetime.now(UTC) - timedelta(seconds=n_batches))
    sup_rate = asyncio.run(supervisor_rate(config, fresh, args.redis_url))
    lat_small = asyncio.run(latency(config, n_points, probes, args.redis_url, 1000))
    lat = asyncio.run(latency(config, n_points, probes, args.redis_url, n_points))
    backend = "Redis" if args.redis_url else "embedded bus"
    results = [
        Result(f"rule evaluation, {n_rules} rules over {n_points} points", rate, "samples/s",
               f">= {GOAL_RATE:,.0f} samples/s", base, ratio(rate, base, higher_is_better=True)),
        Result(f"supervisor handler (decode, evaluate, publish, save; {backend})", sup_rate, "samples/s",
               f">= {GOAL_RATE:,.0f} samples/s", base, ratio(sup_rate, base, higher_is_better=True)),
        Result(f"sample → alarm event latency p50 ({backend}, 1001-sample batches)", p(lat_small, 50), "ms",
               f"< {GOAL_P99_MS:g} ms (p99)"),
        Result(f"sample → alarm event latency p99 ({backend}, 1001-sample batches)", p(lat_small, 99), "ms",
               f"< {GOAL_P99_MS:g} ms"),
        Result(f"sample → alarm event latency p50 ({backend}, {n_points + 1}-sample batches)", p(lat, 50), "ms",
               f"< {GOAL_P99_MS:g} ms (p99)"),
        Result(f"sample → alarm event latency p99 ({backend}, {n_points + 1}-sample batches)", p(lat, 99), "ms",
               f"< {GOAL_P99_MS:g} ms"),
    ]
    print(f"{events} alarm events over {n_batches} batches; baseline = one sample at a time through the engine")
    print_table("alarms", results)
    print(write_results("alarms", results))


if __name__ == "__main__":
    main()
