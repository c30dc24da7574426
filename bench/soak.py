"""Soak: N minutes at 20,000 points/s through processing → bus → dispatcher → archive with the scenario running.

The platform's services run as `skyops run` processes (simulators, collectors, logging, alarms,
planner, VES sync) on a Redis and a Cassandra of the soak's own; a synthetic publisher (the real
SamplePublisher and point processing) adds 20,000 points/s to `mon.samples`, and the archive
dispatcher (the real Dispatcher, in its own process) writes them with the scenario's samples. The
wind scenario toggles every few minutes (alarm, re-plan, VES rewrite). Every 10 s the soak samples
the RSS of every process, the consumer groups' lags, the length of `mon.samples` and the error lines
in every log; at the end it prints each process's RSS per minute and its memory verdict: the last
minute against the first whole minute after warm-up, i.e. once the dispatcher's hold window and the
Mon Queue's byte budget are full (before that, memory rightly grows), and writes bench/results/soak.json.

    python bench/soak.py               # 10 minutes
    python bench/soak.py --quick       # 1 minute
    python bench/soak.py --minutes 30

Why the dispatcher is not `skyops run dispatcher --config`: that command's archive only registers the
shipped points (deploy/factory.py open_platform), so it drops the synthetic points as unknown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, print_table, write_results
from collectors.domain.processing import PointProcessor
from collectors.factory import build_monitoring, open_archive
from collectors.publisher import SamplePublisher
from config_db.loader import default_path
from config_db.monitoring import MonitoringConfig, load_monitoring
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.bus import Bus, open_redis
from skyops.records import SampleBatch
from skyops.settings import Settings
from skyops.streams import ALARM_EVENTS, LOG_RECORDS, MON_SAMPLES, PLAN_EVENTS, PLAN_TRIGGERS
from tests.support.servers import OwnCassandra, OwnRedis, free_port

RATE = 20_000.0  # points/s: the ASTRI Mini-Array requirement
SAMPLE_EVERY_S = 10.0
SKYOPS = str(Path(sys.executable).with_name("skyops"))
GROUPS = [(MON_SAMPLES, "archive"), (MON_SAMPLES, "alarms"), (MON_SAMPLES, "live"),
          (MON_SAMPLES, "planner-execution"), (LOG_RECORDS, "archive"), (ALARM_EVENTS, "alarm-dispatch"),
          (PLAN_TRIGGERS, "planner"), (PLAN_EVENTS, "ves_sync")]
# The groups whose consumers must be running before the load starts (the others are reported when present).
REQUIRED_GROUPS = [(MON_SAMPLES, "archive"), (MON_SAMPLES, "alarms"), (LOG_RECORDS, "archive"),
                   (ALARM_EVENTS, "alarm-dispatch"), (PLAN_EVENTS, "ves_sync")]
ERROR_LINE = re.compile(rb"^\S+ \S+ (ERROR|CRITICAL) |^Traceback", re.MULTILINE)


# --- the synthetic load and the dispatcher, each in its own process -----------------------------------

def soak_config(points: int, flush_aggregates_every_s: float | None = None) -> dict[str, Any]:
    """The shipped monitoring config plus `points` synthetic points that the processing passes on unchanged.

    `flush_aggregates_every_s` overrides the dispatcher's aggregate flush period (to tell its memory
    apart from the hold's: a flush re-reads the current hour of every point written).
    """
    data: dict[str, Any] = yaml.safe_load(default_path("monitoring.yaml").read_text())
    if flush_aggregates_every_s is not None:
        data["dispatcher"]["flush_aggregates_every_s"] = flush_aggregates_every_s
    data["points"] += [{"name": f"soak.p{i // 1000:03d}.v{i % 1000:03d}", "retention": "standard",
                        "processing": {"suppress_duplicates": False}} for i in range(points)]
    return data


def synthetic_names(config: MonitoringConfig) -> list[str]:
    return [p.name for p in config.points if p.name.startswith("soak.")]


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    tmp.replace(path)


async def publish_main(config_path: Path, stats_path: Path, rate: float) -> None:
    """Sweeps of every synthetic point at `rate` points/s, through the real processing and publisher."""
    config = load_monitoring(config_path)
    names = synthetic_names(config)
    redis = open_redis(os.environ["SKYOPS_REDIS_URL"])
    publisher = SamplePublisher(Bus(redis), PointProcessor(config.points), config.queue)
    period_s = len(names) / rate
    template = SampleBatch.from_floats(names, np.arange(len(names)), np.zeros(len(names), dtype=np.int64),
                                       np.zeros(len(names)))
    rng = np.random.default_rng(7)
    values = np.zeros(len(names))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    t0 = time.time()
    sweeps = failures = 0
    while not stop.is_set():
        due = t0 + sweeps * period_s
        delay = due - time.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            continue
        values += rng.normal(0.0, 0.1, len(names))
        ts_us = int(due * 1e6)
        publisher.add(SampleBatch(points=template.points, point_idx=template.point_idx,
                                  ts_us=np.full(len(names), ts_us, dtype=np.int64), kind=template.kind,
                                  bits=values.view(np.int64), quality=template.quality))
        sweeps += 1
        try:
            await publisher.flush()
        except Exception:  # Redis busy or down: the publisher keeps the samples for the next flush
            failures += 1
        if sweeps % max(1, int(1 / period_s)) == 0:
            write_stats(stats_path, {"sent": publisher.sent_samples, "dropped": publisher.dropped,
                                     "pending": publisher.pending, "failures": failures, "behind_s": -delay})
    with contextlib.suppress(Exception):
        await publisher.flush()
    write_stats(stats_path, {"sent": publisher.sent_samples, "dropped": publisher.dropped,
                             "pending": publisher.pending, "failures": failures, "behind_s": 0.0})
    await redis.aclose()


async def dispatch_main(config_path: Path, stats_path: Path, dispatchers: int) -> None:
    """The real archive dispatchers, on an archive that knows the synthetic points too."""
    config = load_monitoring(config_path)
    settings = Settings()
    archive = open_archive(settings, config)
    for attempt in range(12):  # a loaded machine can make a fresh Cassandra slow to accept the first session
        try:
            await archive.open()
            break
        except Exception:
            if attempt == 11:
                raise
            await asyncio.sleep(10)
    redis = open_redis(settings.redis_url)
    monitoring = build_monitoring(Bus(redis), archive, config, collect=False, live=False, dispatchers=dispatchers,
                                  consumer_prefix="soak-dispatcher")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await monitoring.manager.start()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            ds = monitoring.dispatchers
            write_stats(stats_path, {"archived": sum(d.archived for d in ds),
                                     "held": sum(d.hold.held_samples for d in ds),
                                     "held_mb": sum(d.hold.held_bytes for d in ds) / 1e6,
                                     "write_failures": sum(d.write_failures for d in ds),
                                     "unknown": sum(d.unknown_samples for d in ds)})
    finally:
        await monitoring.close()
        await archive.close()
        await redis.aclose()


# --- the soak ----------------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Soak:
    env: dict[str, str]
    work: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> None:
        log = self.work / f"{name}.log"
        with log.open("wb") as out:
            self.procs[name] = Proc(name, subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT),
                                    log)

    def stop(self, name: str, timeout_s: float = 60) -> int:
        p = self.procs[name].popen
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait(timeout=10)

    def errors(self, name: str) -> int:
        return len(ERROR_LINE.findall(self.procs[name].log.read_bytes()))


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def pid_of(pidfile: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(pidfile.read_text().strip())
    return None


async def lags(redis_url: str) -> dict[str, int | None]:
    redis = open_redis(redis_url)
    bus = Bus(redis)
    out: dict[str, int | None] = {}
    try:
        for stream, group in GROUPS:
            try:
                out[f"{stream}/{group}"] = await bus.lag(stream, group)
            except Exception:  # a group that does not exist (yet), or Redis busy: no figure this round
                out[f"{stream}/{group}"] = None
    finally:
        await redis.aclose()
    return out


async def stream_length(redis_url: str) -> int | None:
    redis = open_redis(redis_url)
    try:
        return await Bus(redis).length(MON_SAMPLES)
    except Exception:  # Redis busy: no figure this round
        return None
    finally:
        await redis.aclose()


def read_stats(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {}


def set_wind(asm_url: str, speed: float | None) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        if speed is None:
            httpx.delete(f"{asm_url}/asm/scenario", timeout=10)
        else:
            httpx.post(f"{asm_url}/asm/scenario", timeout=10, json={
                "name": "soak_wind", "steps": [
                    {"at_s": 0, "duration_s": 7200, "field": "wind_speed", "set": speed},
                    {"at_s": 0, "duration_s": 7200, "field": "wind_gust", "set": speed + 2.0}]})


def rate(timeline: list[dict[str, Any]], key: str) -> float:
    """Points/s between the first and the last sample of the timeline (start-up excluded)."""
    if len(timeline) < 2:
        return 0.0
    a, b = timeline[0], timeline[-1]
    return float((b[key] - a[key]) / (b["t"] - a["t"]))


def mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def rss_per_minute(timeline: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Mean RSS of every process in each whole minute of the load (minute k: k*60 <= t < (k+1)*60)."""
    minutes = int(max(row["t"] for row in timeline) // 60)
    out: dict[str, list[float | None]] = {}
    for name in sorted({k for row in timeline for k in row["rss_mb"]}):
        out[name] = []
        for k in range(max(1, minutes)):
            vals = [row["rss_mb"][name] for row in timeline
                    if k * 60 <= row["t"] < (k + 1) * 60 and row["rss_mb"].get(name) is not None]
            out[name].append(round(mean(vals), 1) if vals else None)
    return out


def warm_up_s(config: MonitoringConfig, rate: float, points: int) -> tuple[float, str]:
    """Seconds of load after which every bounded buffer is full, and why.

    The dispatcher holds a sample until its block is complete or for `hold_s` (plus the grace), and
    the Mon Queue keeps acknowledged entries up to its soft byte budget (`max_mb`) or `max_age_s`:
    before both are full, memory rightly grows.
    """
    d, q = config.dispatcher, config.queue
    sweep = SampleBatch.from_floats([f"soak.p{i // 1000:03d}.v{i % 1000:03d}" for i in range(points)],
                                    np.arange(points), np.zeros(points, dtype=np.int64), np.zeros(points))
    stream_bytes_per_s = len(codec.encode_samples(sweep)) / points * rate
    queue_s = min(q.max_age_s, q.max_mb * 1024 * 1024 / stream_bytes_per_s)
    hold_s = d.hold_s + d.block_grace_s
    why = (f"dispatcher hold {hold_s:.0f} s; mon.samples reaches its {q.max_mb:g} MB budget after "
           f"{queue_s:.0f} s at {stream_bytes_per_s / 1e6:.2f} MB/s")
    return max(hold_s, queue_s), why


def summarise(timeline: list[dict[str, Any]], baseline_minute: int, soak: Soak, duration_s: float,
              pub: dict[str, Any], disp: dict[str, Any], drain_s: float | None) -> list[Result]:
    """Memory per process (last minute against the minute after warm-up), lags, errors and throughput."""
    t_end = timeline[-1]["t"]
    last = [row for row in timeline if row["t"] >= t_end - 60]
    published, archived = rate(timeline, "published"), rate(timeline, "archived")
    sent = int(pub.get("sent", 0))
    results = [
        Result("points published (steady rate)", published, "points/s", f">= {RATE:,.0f}", RATE, published / RATE),
        Result("points archived (steady rate)", archived, "points/s", f">= {RATE:,.0f}", RATE, archived / RATE),
        Result("synthetic samples archived / published", int(disp.get("archived", 0)) / sent if sent else 0.0,
               "ratio", ">= 1 (the scenario's own samples add a few)"),
        Result("samples dropped by the publisher", float(pub.get("dropped", 0)), "samples", "0"),
        Result("archive write failures", float(disp.get("write_failures", 0)), "writes", "0"),
    ]
    if drain_s is not None:
        results.append(Result("archive caught up after the load stopped", drain_s, "s", "< 60 (the 30 s hold)"))
    per_minute = rss_per_minute(timeline)
    for name, minutes in per_minute.items():
        base = minutes[min(baseline_minute, len(minutes) - 1)]
        final = minutes[-1]
        if base is None or final is None:
            continue
        results.append(Result(f"RSS {name} (last minute vs minute {min(baseline_minute, len(minutes) - 1) + 1})",
                              final, "MB", "flat (< +10 %: ratio > 0.91)", base, base / final if final else None))
    lengths = [row["stream_len"] for row in last if row.get("stream_len") is not None]
    if lengths:
        results.append(Result("mon.samples length (max, last 60 s)", float(max(lengths)), "entries",
                              "bounded by the Mon Queue budget"))
    for key in sorted({k for row in timeline for k in row["lag"]}):
        values = [row["lag"][key] for row in last if row["lag"].get(key) is not None]
        if values:
            results.append(Result(f"lag {key} (max, last 60 s)", float(max(values)), "entries",
                                  "bounded (not growing)"))
    for name in sorted(soak.procs):
        results.append(Result(f"error lines {name}", float(soak.errors(name)), "lines", "0"))
    return results


def print_minutes(per_minute: dict[str, list[float | None]], baseline_minute: int) -> None:
    print(f"RSS per minute (MB); the verdict compares the last minute with minute {baseline_minute + 1}:")
    for name, minutes in per_minute.items():
        cells = " ".join(f"{v:7.0f}" if v is not None else "      -" for v in minutes)
        base, final = minutes[min(baseline_minute, len(minutes) - 1)], minutes[-1]
        growth = f"{(final / base - 1) * 100:+6.1f} %" if base and final else "      -"
        print(f"  {name:<20} {cells}   {growth}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="1 minute")
    ap.add_argument("--rate", type=float, default=RATE, help="synthetic points/s")
    ap.add_argument("--points", type=int, default=2000, help="synthetic points (each at rate/points Hz)")
    ap.add_argument("--dispatchers", type=int, default=2, help="archive dispatchers in the dispatcher process")
    ap.add_argument("--toggle-s", type=float, default=None, help="wind scenario period (default: minutes*6 s)")
    ap.add_argument("--flush-aggregates-every-s", type=float, default=None,
                    help="the dispatcher's aggregate flush period (default: the shipped config's)")
    ap.add_argument("--sql-url", default=os.environ.get("SKYOPS_TEST_SQL_URL"),
                    help="PostgreSQL for the planner and VES sync (default SKYOPS_TEST_SQL_URL; else SQLite)")
    sub = ap.add_subparsers(dest="role")
    for role in ("_publish", "_dispatch"):
        child = sub.add_parser(role)
        child.add_argument("--config", type=Path, required=True)
        child.add_argument("--stats", type=Path, required=True)
        child.add_argument("--rate", type=float, default=RATE)
        child.add_argument("--dispatchers", type=int, default=2)
    args = ap.parse_args(argv)
    if args.role is not None:
        from deploy.run_cli import configure_console_logging

        configure_console_logging()
    if args.role == "_publish":
        asyncio.run(publish_main(args.config, args.stats, args.rate))
        return 0
    if args.role == "_dispatch":
        asyncio.run(dispatch_main(args.config, args.stats, args.dispatchers))
        return 0
    minutes = 1.0 if args.quick else args.minutes
    return run_soak(minutes * 60, args)


def run_soak(duration_s: float, args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="skyops-soak-"))
    redis, cassandra = OwnRedis(), OwnCassandra(heap="1G")
    print(f"soak: {duration_s / 60:.1f} min at {args.rate:,.0f} points/s; logs in {work}", flush=True)
    schema: str | None = None
    sql_url = None
    try:
        redis.start()
        cassandra.start()
        keyspace = f"soak_{uuid.uuid4().hex[:8]}"
        asyncio.run(_create_keyspace(cassandra, keyspace))
        if args.sql_url:
            schema, sql_url = _create_schema(args.sql_url)
        ports = {n: free_port() for n in ("asm", "p2", "telescope")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}
        env.update({
            "COLUMNS": "200", "SKYOPS_REDIS_URL": redis.url, "SKYOPS_CASSANDRA_HOSTS": "127.0.0.1",
            "SKYOPS_CASSANDRA_PORT": str(cassandra.port), "SKYOPS_CASSANDRA_KEYSPACE": keyspace,
            "SKYOPS_VAR_DIR": str(work / "var"), "SKYOPS_VES_ENVIRONMENT": "local",
            "SKYOPS_VES_API_URL": f"http://127.0.0.1:{ports['p2']}/api/v1",
            "SKYOPS_VES_LOGIN_URL": f"http://127.0.0.1:{ports['p2']}/api/login",
            **_night_clock(),
        })
        if sql_url:
            env["SKYOPS_SQL_URL"] = sql_url
        config = work / "soak-monitoring.yaml"
        config.write_text(yaml.safe_dump(soak_config(args.points, args.flush_aggregates_every_s)))
        soak = Soak(env, work)
        timeline, pub, disp, drain_s = _drive(soak, ports, config, duration_s, args, redis, cassandra)
    finally:
        with contextlib.suppress(Exception):
            if schema and args.sql_url:
                _drop_schema(args.sql_url, schema)
        redis.remove()
        cassandra.remove()
    os.environ.setdefault("COLUMNS", "150")  # a wide table even when the output is a file
    warm_s, why = warm_up_s(load_monitoring(config), args.rate, args.points)
    baseline_minute = math.ceil(warm_s / 60)  # the first whole minute once every buffer is full
    per_minute = rss_per_minute(timeline)
    results = summarise(timeline, baseline_minute, soak, duration_s, pub, disp, drain_s)
    print_table(f"soak: {duration_s / 60:.1f} min at {args.rate:,.0f} points/s", results)
    print(f"warm-up: {warm_s:.0f} s ({why})")
    print_minutes(per_minute, baseline_minute)
    path = write_results("soak", results, {"timeline": timeline, "duration_s": duration_s, "logs": str(work),
                                           "rss_per_minute_mb": per_minute, "baseline_minute": baseline_minute + 1,
                                           "warm_up": f"{warm_s:.0f} s: {why}"})
    print(f"wrote {path}")
    return 0


def _night_clock() -> dict[str, str]:
    """Every process on one clock set in tonight's dark hours, so the planner has a night to plan at any hour."""
    from planner.config import load_site
    from planner.ephemeris import compute_night
    from planner.service import night_of

    wall = datetime.now(UTC)
    site = load_site()
    night = night_of(site, wall) + timedelta(days=1)
    start = datetime.fromtimestamp(compute_night(site, night).start_unix, UTC) + timedelta(hours=2)
    return {"SKYOPS_CLOCK_START": start.isoformat(), "SKYOPS_CLOCK_ANCHOR": wall.isoformat()}


async def _create_keyspace(cassandra: OwnCassandra, keyspace: str) -> None:
    archive = CassandraArchive(cassandra.hosts, port=cassandra.port, keyspace=keyspace)
    await archive.open()
    await archive.close()


def _create_schema(sql_url: str) -> tuple[str, str]:
    from sqlalchemy import make_url

    from skyops.opdb import make_engine, upgrade

    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = make_engine(sql_url)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    url = make_url(sql_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return schema, url


def _drop_schema(sql_url: str, schema: str) -> None:
    from skyops.opdb import make_engine

    admin = make_engine(sql_url)
    with admin.begin() as c:
        c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def _drive(soak: Soak, ports: dict[str, int], config: Path, duration_s: float, args: argparse.Namespace,
           redis: OwnRedis, cassandra: OwnCassandra) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any],
                                                              float | None]:
    asm_url = f"http://127.0.0.1:{ports['asm']}"
    tel = f"opc.tcp://127.0.0.1:{ports['telescope']}/ntt/"
    me = [sys.executable, str(Path(__file__).resolve())]
    pub_stats, disp_stats = soak.work / "publisher.json", soak.work / "dispatcher.json"
    commands = {
        "asm-simulator": [SKYOPS, "run", "asm-simulator", "--port", str(ports["asm"])],
        "telescope-simulator": [SKYOPS, "run", "telescope-simulator", "--port", str(ports["telescope"])],
        "p2-emulator": [SKYOPS, "run", "p2-emulator", "--port", str(ports["p2"]), "--state-dir",
                        str(soak.work / "p2")],
        "collectors": [SKYOPS, "run", "collectors", "--asm-url", f"{asm_url}/asm/current", "--opcua-endpoint", tel],
        "dispatcher": [*me, "_dispatch", "--config", str(config), "--stats", str(disp_stats),
                       "--dispatchers", str(args.dispatchers)],
        "logging": [SKYOPS, "run", "logging", "--no-syslog"],
        "alarms": [SKYOPS, "run", "alarms"],
        "planner": [SKYOPS, "run", "planner", "--sample-obs", str(Path(__file__).resolve().parent.parent / "deploy"
                                                                   / "data" / "sample_obs.json")],
        "ves-sync": [SKYOPS, "run", "ves-sync"],
    }
    timeline: list[dict[str, Any]] = []
    drain_s: float | None = None
    try:
        for name, argv in commands.items():
            soak.start(name, argv)
        _wait_groups(soak, redis.url, timeout_s=240)
        soak.start("publisher", [*me, "_publish", "--config", str(config), "--stats", str(pub_stats),
                                 "--rate", str(args.rate)])
        servers = {"redis-server": redis.data_dir / "redis.pid", "cassandra": cassandra.data_dir / "cassandra.pid"}
        toggle_s = args.toggle_s or max(20.0, duration_s / 10)
        t0 = time.monotonic()
        next_toggle, windy = t0 + toggle_s / 2, False
        while (t := time.monotonic() - t0) < duration_s:
            time.sleep(min(SAMPLE_EVERY_S, max(0.1, duration_s - t)))  # a soak runs in real time
            if time.monotonic() >= next_toggle:
                windy = not windy
                set_wind(asm_url, 13.5 if windy else None)
                next_toggle += toggle_s
            row = _sample(soak, servers, redis.url, time.monotonic() - t0, pub_stats, disp_stats)
            timeline.append(row)
            print(f"  t={row['t']:5.0f} s  published {row['published']:>10,}  archived {row['archived']:>10,}  "
                  f"archive lag {row['lag'].get('mon.samples/archive')}  "
                  f"held {row['held']:>8,} ({row['held_mb']:.0f} MB)  "
                  f"stream {row['stream_len']}  dispatcher {row['rss_mb'].get('dispatcher') or 0:.0f} MB  "
                  f"redis {row['rss_mb'].get('redis-server') or 0:.0f} MB  "
                  f"RSS total {sum(v for v in row['rss_mb'].values() if v):,.0f} MB", flush=True)
        soak.stop("publisher")
        drain_s = _wait_drained(pub_stats, disp_stats, timeout_s=120)
    finally:
        for name in reversed(list(soak.procs)):
            soak.stop(name)
    return timeline, read_stats(pub_stats), read_stats(disp_stats), drain_s


def _wait_groups(soak: Soak, redis_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in soak.procs.values():
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.popen.returncode}): {p.log.read_text()[-2000:]}")
        found = asyncio.run(lags(redis_url))
        if all(found.get(f"{stream}/{group}") is not None for stream, group in REQUIRED_GROUPS):
            return
        time.sleep(2)  # processes starting
    raise RuntimeError(f"consumer groups not all there after {timeout_s:.0f} s: {asyncio.run(lags(redis_url))}")


def _wait_drained(pub_stats: Path, disp_stats: Path, timeout_s: float) -> float | None:
    """Seconds until the dispatcher has archived as many samples as the publisher sent (None: not in time)."""
    t0 = time.monotonic()
    sent = int(read_stats(pub_stats).get("sent", 0))
    while time.monotonic() - t0 < timeout_s:
        if int(read_stats(disp_stats).get("archived", 0)) >= sent:
            return time.monotonic() - t0
        time.sleep(1)  # the dispatcher holds samples up to 30 s for their archive block
    return None


def _sample(soak: Soak, servers: dict[str, Path], redis_url: str, t: float, pub_stats: Path,
            disp_stats: Path) -> dict[str, Any]:
    rss = {name: rss_mb(p.popen.pid) for name, p in soak.procs.items()}
    for name, pidfile in servers.items():
        pid = pid_of(pidfile)
        rss[name] = rss_mb(pid) if pid else None
    pub, disp = read_stats(pub_stats), read_stats(disp_stats)
    return {"t": round(t, 1), "rss_mb": rss, "lag": asyncio.run(lags(redis_url)),
            "stream_len": asyncio.run(stream_length(redis_url)),
            "errors": {name: soak.errors(name) for name in soak.procs},
            "published": int(pub.get("sent", 0)), "archived": int(disp.get("archived", 0)),
            "held": int(disp.get("held", 0)), "held_mb": float(disp.get("held_mb", 0.0)),
            "publisher_pending": int(pub.get("pending", 0))}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
