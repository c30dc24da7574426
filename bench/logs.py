"""Logging benchmark: each intake into the bus, the consumer draining into each archive, filtered log search."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn
from pydantic import SecretStr

from bench.common import Result, print_table, ratio, write_results
from config_db.logging import HttpIntakeConfig, LogFilters, SyslogConfig, load_logging_config
from logging_svc.consumer import LogConsumer
from logging_svc.domain.filters import ComponentLevels
from logging_svc.domain.jsonlines import record_to_line
from logging_svc.handler import BusLogHandler, LogShipper, set_caller_info
from logging_svc.http_intake import HttpIntake, make_app
from logging_svc.syslog_intake import SyslogIntake
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive, LogQuery
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, StreamRetention, open_redis
from skyops.records import LogRecord
from skyops.timeutil import from_us, to_us

RETENTION = StreamRetention(max_len=5_000_000, max_age=timedelta(hours=1))
SOURCES = ("planner", "alarms", "collectors", "hmi", "ves_sync", "devices", "deploy", "tcs", "dome", "ccd")
LEVELS = np.array([10, 20, 30, 40])
LEVEL_P = np.array([0.40, 0.40, 0.15, 0.05])
WORDS = ("tracking", "exposure", "guider", "shutter", "filter", "wheel", "encoder", "ok", "offset", "rotator",
         "focus", "seeing", "airmass", "slew", "target", "acquired", "readout", "temperature", "pressure")
KEY = "bench-key-0123456789abcdef"
PHASE_TIMEOUT_S = float(os.environ.get("BENCH_PHASE_TIMEOUT_S", "240"))
T = TypeVar("T")
UDP_SENDER = """
import socket, sys, time
host, port, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
body = b"<13>Nov 22 03:14:15 dome-plc shutterd[881]: shutter open, encoder ok, temperature nominal " * 2
for i in range(k):
    s.sendto(body + str(i).encode(), (host, port))
    if i % 50 == 49:
        time.sleep(0.001)
"""
NOTES = {
    "MB/s": "bytes of the records as JSON lines (HTTP: request bodies; syslog TCP: framed messages)",
    "intake baseline": "a naive producer: one XADD per record (Bus.publish of a 1-record batch)",
    "handler": "logger.info calls through the shipped handler configuration (config_db/defaults/logging.yaml: "
               "caller_info false, as install_bus_logging applies it), then shipped to Redis on the same thread",
    "drain baseline": "the archive written one record per call, as an unbatched consumer would",
    "drain": "LogConsumer with its default read size (20 bus entries of 1,000 records per archive write)",
    "search baseline": "the newest 100,000 records of the range read unfiltered and filtered in Python "
                       "(no level/source/text pushdown; a lower bound of a full scan)",
    "MB/CPU-s": "the same MB divided by the CPU time of the bench process alone (not Redis's, not Cassandra's): "
                "what one free core would sustain, and steadier than wall-clock MB/s on a busy machine",
    "search data": "1,000,000 records over 24 h, 10 sources, 40% DEBUG 40% INFO 15% WARNING 5% ERROR, "
                   "2% mention the dome; the Cassandra copy is kept between runs (--refill rewrites it)",
}
GB = 1e6
# MB per CPU-second of this process in each measured span (Redis's and Cassandra's own CPU not included):
# on a shared, loaded machine this moves far less than the wall-clock figures do.
CPU_USE: dict[str, float] = {}


_BODIES = [" ".join(WORDS[w] for w in row)
           for row in np.random.default_rng(0).integers(0, len(WORDS), (4096, 18))]
SEARCH_T0 = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, so a filled search keyspace can be reused


def make_records(n: int, start_us: int, span_us: int, seed: int = 1, first_seq: int = 0) -> list[LogRecord]:
    """A realistic mix: 10 sources, mostly DEBUG/INFO, ~150-byte messages, 2% mention the dome."""
    rng = np.random.default_rng(seed)
    ts = np.sort(start_us + rng.integers(0, span_us, n))
    src = rng.integers(0, len(SOURCES), n)
    lvl = rng.choice(LEVELS, n, p=LEVEL_P)
    dome = rng.random(n) < 0.02
    body = rng.integers(0, len(_BODIES), n)
    out = []
    for i in range(n):
        msg = f"{'dome closed: ' if dome[i] else ''}{_BODIES[body[i]]} seq={first_seq + i}"
        out.append(LogRecord(ts=from_us(int(ts[i])), level=int(lvl[i]), source=SOURCES[src[i]], message=msg,
                             component=f"{SOURCES[src[i]]}.worker{i % 4}", host=f"ops{i % 3}",
                             attributes={"n": str(i)}))
    return out


def jsonl_size(records: list[LogRecord]) -> int:
    return sum(len(record_to_line(r)) + 1 for r in records)


# -- intakes into the bus ------------------------------------------------------------------------------


async def bench_handler(bus: Bus, n: int, stream: str) -> tuple[float, float, float]:
    """`logging` calls → BusLogHandler → LogShipper → Redis; returns (records/s, MB/s, baseline records/s)."""
    logger = logging.getLogger("bench.logs.handler")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = BusLogHandler(levels=ComponentLevels(LogFilters()), max_buffer=n + 10)
    logger.addHandler(handler)
    # As install_bus_logging sets up every skyops process, with the shipped handler configuration.
    restore = set_caller_info(load_logging_config().handler.caller_info)
    shipper = LogShipper(handler, bus, source="bench", host="bench1", retention=RETENTION, batch_size=1000,
                         batches_per_round=20, stream=stream)
    sample = make_records(2000, to_us(datetime.now(UTC)), 10**6)
    msgs = [r.message for r in sample]
    try:
        t, c = time.perf_counter(), time.process_time()
        for i in range(n):
            logger.info("%s", msgs[i % len(msgs)])
        while await shipper.flush_once():
            pass
        dt, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        logger.removeHandler(handler)
        restore()
    size = jsonl_size([LogRecord(ts=r.ts, level=20, source="bench", message=r.message, component=logger.name,
                                 host="bench1") for r in sample]) * n / len(sample)
    CPU_USE["logging handler → Redis"] = size / cpu / GB
    # Baseline: the naive producer, one XADD per record.
    k = min(2000, n)
    t = time.perf_counter()
    for r in sample[:k]:
        await bus.publish(stream + ".naive", codec.encode_logs([r]), retention=RETENTION)
    base = k / (time.perf_counter() - t)
    await bus.redis.delete(stream + ".naive")
    return n / dt, size / dt / GB, base


async def bench_http(bus: Bus, records: list[LogRecord], stream: str, batch: int) -> tuple[float, float]:
    intake = HttpIntake(bus, HttpIntakeConfig(keys={"bench": SecretStr(KEY)}, records_per_entry=1000),
                        retention=RETENTION, stream=stream)
    lines = [record_to_line(r).replace('"source":"' + r.source + '",', "").encode() for r in records]
    bodies = [b"\n".join(lines[i : i + batch]) + b"\n" for i in range(0, len(lines), batch)]
    server = uvicorn.Server(uvicorn.Config(make_app(intake), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            t, c = time.perf_counter(), time.process_time()
            for body in bodies:
                resp = await client.post("/logs", content=body, headers={"Authorization": f"Bearer {KEY}"})
                resp.raise_for_status()
            dt, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        server.should_exit = True
        await task
    assert intake.stats.accepted == len(records), intake.stats
    CPU_USE["HTTP JSON lines → Redis (client and server)"] = sum(len(b) for b in bodies) / cpu / GB
    return len(records) / dt, sum(len(b) for b in bodies) / dt / GB


async def bench_syslog(bus: Bus, n: int, stream: str) -> tuple[float, float, float, float]:
    """RFC 5424 over TCP (octet counting) and RFC 3164 over UDP; returns (TCP records/s, TCP MB/s, UDP records/s)."""
    intake = SyslogIntake(bus, SyslogConfig(udp_port=0, tcp_port=0), retention=RETENTION, stream=stream,
                          batch_size=2000, max_buffer=n * 2)
    await intake.start()
    body = " ".join(WORDS) * 5
    msgs = [f"<134>1 2026-11-22T03:14:{i % 60:02d}.{i % 1000:03d}Z ccd-ctrl ccdd {i} - - {body} {i}".encode()
            for i in range(n)]
    framed = b"".join(b"%d %s" % (len(m), m) for m in msgs)
    try:
        _, writer = await asyncio.open_connection(*intake.tcp_address)
        t, c = time.perf_counter(), time.process_time()
        writer.write(framed)
        await writer.drain()
        for _ in range(6000):
            if intake.received >= n:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"syslog TCP: only {intake.received} of {n} messages arrived within 60 s")
        await intake.flush()
        dt, cpu = time.perf_counter() - t, time.process_time() - c
        CPU_USE["syslog RFC 5424 over TCP → Redis"] = len(framed) / cpu / GB
        writer.close()
        await writer.wait_closed()
        # UDP from another process, as a device would send; paced at about 50,000 datagrams/s.
        k = n // 4
        before = intake.received
        host, port = intake.udp_address
        t = time.perf_counter()
        sender = await asyncio.create_subprocess_exec(sys.executable, "-c", UDP_SENDER, host, str(port), str(k))
        await sender.wait()
        seen = -1
        for _ in range(100):  # until nothing more arrives for 20 ms
            if intake.received == seen:
                break
            seen = intake.received
            await asyncio.sleep(0.02)
        await intake.flush()
        udp_dt = time.perf_counter() - t
    finally:
        await intake.stop()
    udp_got = intake.received - before
    print(f"UDP: {udp_got} of {k} datagrams received ({100 * (k - udp_got) / k:.1f}% lost)")
    return n / dt, len(framed) / dt / GB, udp_got / udp_dt, 100 * (k - udp_got) / k


# -- the consumer draining into the archive ---------------------------------------------------------------


async def bench_drain(bus: Bus, archive: Archive, records: list[LogRecord], stream: str) -> tuple[float, float, float]:
    payloads = [codec.encode_logs(records[i : i + 1000]) for i in range(0, len(records), 1000)]
    await bus.publish_many(stream, payloads, retention=RETENTION)
    # The consumer as deployed (LogConsumer's own read size), reading entries of 1,000 records.
    consumer = LogConsumer(bus, archive, consumer="bench", stream=stream, live_channel=stream + ".live",
                           block_ms=10)
    t, c = time.perf_counter(), time.process_time()
    while await consumer.run_once():
        pass
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    assert consumer.archived == len(records), consumer.archived
    kind = "Cassandra" if isinstance(archive, CassandraArchive) else "SQLite"
    CPU_USE[f"consumer Redis → {kind}"] = jsonl_size(records) / cpu / GB
    # Baseline: archiving record by record, as a consumer without batches would.
    k = 500
    t = time.perf_counter()
    for r in make_records(k, to_us(records[0].ts) - 10**9, 10**8, seed=9):
        await archive.write_logs([r])
    base = k / (time.perf_counter() - t)
    return len(records) / dt, jsonl_size(records) / dt / GB, base


# -- search ---------------------------------------------------------------------------------------------


def search_chunks(n: int) -> list[tuple[int, int]]:
    step = 50_000
    return [(i, min(step, n - i)) for i in range(0, n, step)]


def search_chunk(n: int, i: int, k: int) -> list[LogRecord]:
    """Chunk `i` of the deterministic search data set: `n` records over the 24 h from SEARCH_T0."""
    span_us = 24 * 3600 * 10**6
    return make_records(k, to_us(SEARCH_T0) + span_us * i // n, span_us * k // n, seed=100 + i, first_seq=i)


async def is_filled(archive: Archive, n: int) -> bool:
    """The fill writes chunks in order, so the last record being there means every chunk was written."""
    i, k = search_chunks(n)[-1]
    last = search_chunk(n, i, k)[-1]
    q = LogQuery(start=last.ts, end=last.ts + timedelta(microseconds=1), sources=(last.source,), limit=10)
    return last in (await archive.query_logs(q)).records


async def fill(archive: Archive, n: int) -> float:
    t = time.perf_counter()
    for i, k in search_chunks(n):
        part = search_chunk(n, i, k)
        for j in range(0, len(part), 5000):
            await archive.write_logs(part[j : j + 5000])
    return time.perf_counter() - t


async def median_ms(archive: Archive, q: LogQuery, repeat: int = 5) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        page = await archive.query_logs(q)
        times.append((time.perf_counter() - t) * 1000)
        found = len(page.records)
    return statistics.median(times), found


async def bench_search(archive: Archive) -> list[tuple[str, float, float, int]]:
    start, end = SEARCH_T0, SEARCH_T0 + timedelta(hours=24)
    filtered = LogQuery(start=start, end=end, min_level=30, sources=("planner",), text="dome", limit=100)
    rare = LogQuery(start=start, end=end, min_level=40, sources=("planner",), text="seq=12345 ", limit=100)
    # Baseline: the same search with every filter applied after reading (no level, source or text pushdown).
    plain = LogQuery(start=start, end=end, limit=100_000)
    out = []
    for name, q in (("level+source+text, first page of 100", filtered), ("level+source+rare text", rare)):
        ms, found = await median_ms(archive, q)
        out.append((name, ms, 0.0, found))

    async def baseline() -> None:
        page = await archive.query_logs(plain)
        hits = [r for r in page.records if filtered.matches(r)][:100]
        del hits

    t = time.perf_counter()
    await baseline()
    base_ms = (time.perf_counter() - t) * 1000
    return [(n, ms, base_ms, f) for n, ms, _, f in out]


async def step(name: str, work: Awaitable[T]) -> T:
    """One phase, announced as it starts and ends; a stuck phase prints where every task waits, then fails."""
    print(f"{name} …", flush=True)
    t = time.perf_counter()
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=PHASE_TIMEOUT_S)
    if not done:
        for other in asyncio.all_tasks():
            other.print_stack(file=sys.stdout)
        task.cancel()
        raise TimeoutError(f"bench phase {name!r} did not finish within {PHASE_TIMEOUT_S} s")
    print(f"{name}: {time.perf_counter() - t:.1f} s", flush=True)
    return task.result()


def search_results(adapter: str, n: int, rows: list[tuple[str, float, float, int]]) -> list[Result]:
    return [Result(f"{adapter} search over {n:,}: {name} ({found} hits)", ms, "ms", "< 500 ms", base_ms,
                   ratio(ms, base_ms, higher_is_better=False)) for name, ms, base_ms, found in rows]


async def main(args: argparse.Namespace) -> None:
    results: list[Result] = []
    parts = set(args.parts.split(","))
    tag = uuid.uuid4().hex[:8]
    redis = open_redis(args.redis_url)
    bus = Bus(redis)
    n_intake = 20_000 if args.quick else 100_000
    n_drain = 20_000 if args.quick else 100_000
    n_search = 100_000 if args.quick else 1_000_000
    now = datetime.now(UTC)
    streams_used = [f"bench.logs.{tag}.{k}" for k in ("handler", "http", "syslog", "sqlite", "cass")]
    drain_recs = make_records(n_drain, to_us(now) - 6 * 3600 * 10**6, 6 * 3600 * 10**6, seed=5)
    try:
        if "intake" in parts:
            rps, mbs, base = await step("handler", bench_handler(bus, n_intake, streams_used[0]))
            results += [Result("logging handler → Redis", rps, "records/s", None, base,
                               ratio(rps, base, higher_is_better=True)),
                        Result("logging handler → Redis", mbs, "MB/s", ">= 25 MB/s")]
            recs = make_records(n_intake, to_us(now) - 3600 * 10**6, 3600 * 10**6)
            rps_h, mbs_h = await step("http", bench_http(bus, recs, streams_used[1], batch=5000))
            results += [Result("HTTP JSON lines (5000/batch, loopback) → Redis", rps_h, "records/s", None, base,
                               ratio(rps_h, base, higher_is_better=True)),
                        Result("HTTP JSON lines (5000/batch, loopback) → Redis", mbs_h, "MB/s", ">= 25 MB/s")]
            rps_s, mbs_s, udp_rps, udp_loss = await step("syslog", bench_syslog(bus, n_intake, streams_used[2]))
            results += [Result("syslog RFC 5424 over TCP → Redis", rps_s, "records/s", None, base,
                               ratio(rps_s, base, higher_is_better=True)),
                        Result("syslog RFC 5424 over TCP → Redis", mbs_s, "MB/s", ">= 25 MB/s"),
                        Result("syslog RFC 3164 over UDP → Redis", udp_rps, "records/s", None, base,
                               ratio(udp_rps, base, higher_is_better=True)),
                        Result("syslog UDP datagrams lost at ~50,000/s offered", udp_loss, "%")]
        with tempfile.TemporaryDirectory() as tmp:
            if "drain" in parts:
                sqlite = SqliteArchive(Path(tmp) / "archive.sqlite3")
                await sqlite.open()
                try:
                    rps_d, mbs_d, base_d = await step("drain", bench_drain(bus, sqlite, drain_recs, streams_used[3]))
                finally:
                    await sqlite.close()
                results += [Result("consumer Redis → SQLite", rps_d, "records/s", None, base_d,
                                   ratio(rps_d, base_d, higher_is_better=True)),
                            Result("consumer Redis → SQLite", mbs_d, "MB/s", ">= 5 MB/s")]
            if "search" in parts:
                sqlite = SqliteArchive(Path(tmp) / "search.sqlite3")
                await sqlite.open()
                try:
                    print(f"filled SQLite with {n_search:,} records in {await fill(sqlite, n_search):.1f} s")
                    results += search_results("SQLite", n_search, await step("SQLite search", bench_search(sqlite)))
                finally:
                    await sqlite.close()
        if args.cassandra and "drain" in parts:
            cass = CassandraArchive([args.cassandra], keyspace=f"bench_logs_{tag}", max_in_flight=128)
            await cass.open()
            try:
                rps_c, mbs_c, base_c = await step("drain", bench_drain(bus, cass, drain_recs, streams_used[4]))
            finally:
                await cass.drop_keyspace()
                await cass.close()
            results += [Result("consumer Redis → Cassandra", rps_c, "records/s", None, base_c,
                               ratio(rps_c, base_c, higher_is_better=True)),
                        Result("consumer Redis → Cassandra", mbs_c, "MB/s", ">= 5 MB/s")]
        if args.cassandra and "search" in parts:
            # The search data set is deterministic, so it is filled once and kept between runs.
            cass = CassandraArchive([args.cassandra], keyspace=f"bench_logs_search_{n_search}", max_in_flight=128)
            await cass.open()
            try:
                if args.refill or not await is_filled(cass, n_search):
                    print(f"filled Cassandra with {n_search:,} records in {await fill(cass, n_search):.1f} s")
                results += search_results("Cassandra", n_search, await step("Cassandra search", bench_search(cass)))
            finally:
                await cass.close()
    finally:
        for s in streams_used:
            await redis.delete(s)
        await redis.aclose()
    results += [Result(f"{name} (CPU of the bench process)", v, "MB/CPU-s") for name, v in CPU_USE.items()]
    print_table("logging service", results)
    if parts >= {"intake", "drain", "search"}:
        print(write_results("logs", results, extra={"notes": NOTES}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k records for search, 20k through intakes")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--cassandra", default="127.0.0.1", help="a contact point; empty to skip Cassandra")
    parser.add_argument("--parts", default="intake,drain,search", help="comma-separated subset to run")
    parser.add_argument("--refill", action="store_true", help="rewrite the kept Cassandra search data set")
    asyncio.run(main(parser.parse_args()))
