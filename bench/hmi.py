"""HMI benchmark: alarm event → websocket client latency with 200 subscribers in other processes, and samples fan-out.

The server (uvicorn running `create_app`) runs in its own process; the clients are real graphql-transport-ws clients
(the `websockets` library) spread over a few other processes; every process reads the same host clock
(CLOCK_MONOTONIC), so "publish → receive" is measured across processes. Each configuration is run twice in the same
run: with the shared fan-out (one GraphQL execution and one JSON encoding per event for all identical
subscriptions) and with strawberry's per-subscriber execution (the baseline).

    python bench/hmi.py            # 200 clients, real Redis (a private redis-server) and embedded bus
    python bench/hmi.py --quick    # fewer events, Redis bus only (under 3 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets
from fastapi import Request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, p, print_table, ratio, write_results
from skyops import runtime
from skyops.bus import Bus, StreamRetention, open_redis
from skyops.codec import encode_alarm_events, encode_samples
from skyops.records import AlarmEvent, AlarmSeverity, SampleBatch
from skyops.streams import ALARM_EVENTS, MON_SAMPLES
from tests.support.servers import free_port, private_redis

RET = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))
USER, PASSWORD = "bench", "bench-password-123"
SAMPLE_POINTS_PER_CLIENT = 200
ALARM_QUERY = "subscription { alarmEvents { seq event { alarmId seq severity reason time attributes } } }"
HERE = Path(__file__).resolve()


def point_names(n: int) -> list[str]:
    return [f"bench.hmi.p{i:04d}" for i in range(n)]


# ---------------------------------------------------------------------------------------------- the load (publisher)


async def publish_marker(bus: Bus, kind: str) -> None:
    """A warm-up or end-of-run alarm event (clients recognise it by its attribute)."""
    ev = AlarmEvent(alarm_id="Bench.Marker:1", ts=datetime.now(UTC), seq=0, action="transition",
                    severity=AlarmSeverity.WARNING, attributes={kind: "1", "sent": repr(time.monotonic())})
    await bus.publish(ALARM_EVENTS, encode_alarm_events([ev]), retention=RET)


async def publish_load(bus: Bus, *, events: int, rate: float, points: int, sample_hz: float) -> dict[str, float]:
    """`events` alarm events at a steady `rate` (the send time inside), with sample batches flowing meanwhile."""
    done = asyncio.Event()
    sent_values = 0
    names = point_names(points)

    async def samples() -> None:
        nonlocal sent_values
        tick = 0
        t0 = time.monotonic()
        while not done.is_set():
            now_us = int(datetime.now(UTC).timestamp() * 1e6)
            batch = SampleBatch.from_floats(names, range(points), [now_us] * points, [float(tick)] * points)
            await bus.publish(MON_SAMPLES, encode_samples(batch), retention=RET)
            sent_values += points
            tick += 1
            await asyncio.sleep(max(0.0, t0 + tick / sample_hz - time.monotonic()))

    feeder = asyncio.create_task(samples())
    t0 = time.monotonic()
    for i in range(events):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))  # a steady schedule, no drift
        ev = AlarmEvent(alarm_id=f"Bench.Rule:{i % 10}", ts=datetime.now(UTC), seq=i, action="transition",
                        severity=AlarmSeverity.CRITICAL, reason=f"bench event {i}",
                        attributes={"sent": repr(time.monotonic())})
        await bus.publish(ALARM_EVENTS, encode_alarm_events([ev]), retention=RET)
    seconds = time.monotonic() - t0
    done.set()
    await feeder
    await publish_marker(bus, "end")
    return {"seconds": seconds, "sample_values_sent": float(sent_values)}


# ---------------------------------------------------------------------------------------------- the server process


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from deploy.factory import build_hmi_services, open_platform
    from hmi_api.app import create_app
    from skyops.opdb.models import Group
    from skyops.opdb.users import UserCreate
    from skyops.settings import Settings

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    platform = await open_platform(Settings(var_dir=Path(args.var), redis_url=args.redis or None))
    services, _ = await build_hmi_services(platform)
    assert services.live is not None
    services.live.shared_fanout = args.fanout == "shared"
    await asyncio.to_thread(services.auth.users.create, data=UserCreate(
        username=USER, full_name="Bench", group=Group.OPERATOR, password=PASSWORD), now=platform.clock.now())
    app = create_app(health=platform.health, services=services)
    if args.settle == "on":
        runtime.settle_heap()  # as deploy does once a process has started

    if not args.redis:  # embedded bus: only this process can publish on it
        @app.post("/bench/marker/{kind}", include_in_schema=False)
        async def marker(kind: str) -> dict[str, str]:
            await publish_marker(platform.bus, kind)
            return {"ok": kind}

        @app.post("/bench/load", include_in_schema=False)
        async def load(request: Request) -> dict[str, float]:
            spec = await request.json()
            return await publish_load(platform.bus, **spec)

    diag = ServerDiagnostics()

    @app.post("/bench/profile/{action}", include_in_schema=False)
    async def profile(action: str) -> dict[str, Any]:
        if profiler is not None:
            profiler.enable() if action == "start" else profiler.disable()
        if action == "start":
            diag.start()
            return {"ok": action}
        return diag.stop()

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning",
                                           ws=args.ws, ws_per_message_deflate=args.deflate == "on"))
    try:
        await server.serve()
    finally:
        if profiler is not None:  # before any await: uvicorn re-raises SIGINT, which cancels this task
            profiler.disable()
            profiler.dump_stats(args.profile)
        await platform.close()


class ServerDiagnostics:
    """What stalls the server's event loop during the measured run: garbage-collector pauses and loop lag."""

    tick_s = 0.005

    def __init__(self) -> None:
        self.gc_ms: list[float] = []
        self.lag_ms: list[float] = []
        self._gc_t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_ms.append((time.perf_counter() - self._gc_t0) * 1000)

    async def _watch(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            self.lag_ms.append((time.perf_counter() - t - self.tick_s) * 1000)

    def start(self) -> None:
        import gc

        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._watch())

    def stop(self) -> dict[str, Any]:
        import gc

        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
        return {"gc_pauses": len(self.gc_ms), "gc_max_ms": max(self.gc_ms, default=0.0),
                "gc_total_ms": sum(self.gc_ms), "loop_lag_p99_ms": p(self.lag_ms, 99) if self.lag_ms else 0.0,
                "loop_lag_max_ms": max(self.lag_ms, default=0.0)}


# ---------------------------------------------------------------------------------------------- the client processes


@dataclass
class ClientStats:
    latencies_ms: list[float] = field(default_factory=list)
    sample_values: int = 0
    sample_messages: int = 0
    errors: list[str] = field(default_factory=list)
    warm: int = 0


async def one_client(url: str, token: str, samples: bool, stats: ClientStats, subscribed: asyncio.Event,
                     warm: asyncio.Event) -> None:
    try:
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                                      max_queue=None, open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"not acknowledged: {ack}")
            await ws.send(json.dumps({"id": "a", "type": "subscribe", "payload": {"query": ALARM_QUERY}}))
            if samples:
                names = json.dumps(point_names(SAMPLE_POINTS_PER_CLIENT))
                query = f"subscription {{ samples(points: {names}, maxRateHz: 5) {{ point value quality }} }}"
                await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query}}))
            subscribed.set()
            is_warm = False
            async for raw in ws:
                now = time.monotonic()
                msg = json.loads(raw)
                kind, op = msg.get("type"), msg.get("id")
                if kind == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                if kind != "next":
                    if kind != "pong":
                        stats.errors.append(f"unexpected {str(msg)[:200]}")
                    continue
                if op == "s":
                    stats.sample_messages += 1
                    stats.sample_values += len(msg["payload"]["data"]["samples"])
                    continue
                attrs = msg["payload"]["data"]["alarmEvents"]["event"]["attributes"]
                if "end" in attrs:
                    return
                if "warm" in attrs:
                    if not is_warm:
                        is_warm = True
                        stats.warm += 1
                        warm.set()
                    continue
                stats.latencies_ms.append((now - float(attrs["sent"])) * 1000)
            stats.errors.append(f"closed early: {ws.close_code} {ws.close_reason}")
    except Exception as exc:  # a benchmark client reports every failure rather than dying silently
        stats.errors.append(f"{type(exc).__name__}: {exc}")
        subscribed.set()
        warm.set()


async def clients(args: argparse.Namespace) -> None:
    """`args.n` connections (the first `args.samples_n` also subscribe to samples); reports on stdout, one JSON line."""
    async with httpx.AsyncClient(base_url=args.http) as http:
        login = f'mutation {{ login(username: "{USER}", password: "{PASSWORD}") {{ token }} }}'
        token = (await http.post("/graphql", json={"query": login}, timeout=60)).json()["data"]["login"]["token"]
    stats = ClientStats()
    subscribed = [asyncio.Event() for _ in range(args.n)]
    warm = [asyncio.Event() for _ in range(args.n)]
    tasks = []
    for i in range(args.n):
        tasks.append(asyncio.create_task(one_client(args.url, token, i < args.samples_n, stats, subscribed[i],
                                                    warm[i])))
        await asyncio.sleep(0.005)  # a login storm of 200 handshakes at once is not what we measure
    await asyncio.gather(*(e.wait() for e in subscribed))
    print(json.dumps({"subscribed": args.n}), flush=True)
    await asyncio.gather(*(e.wait() for e in warm))
    print(json.dumps({"warm": stats.warm}), flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), args.timeout)
    print(json.dumps({"result": {"latencies_ms": stats.latencies_ms, "sample_values": stats.sample_values,
                                 "sample_messages": stats.sample_messages, "errors": stats.errors[:20]}}), flush=True)


# ---------------------------------------------------------------------------------------------- the orchestrator


@dataclass
class RunResult:
    latencies_ms: list[float]
    sample_values_per_s: float
    sample_messages_per_s: float
    sample_values_sent_per_s: float
    errors: list[str]
    events: int
    seconds: float
    server_cpu_s: float  # from the first alarm published until every client had every alarm


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes, from /proc (Linux)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def read_json_line(proc: asyncio.subprocess.Process, key: str, within_s: float) -> Any:
    assert proc.stdout is not None
    deadline = time.monotonic() + within_s
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
        if not line:
            raise RuntimeError(f"client process ended before reporting {key!r}")
        with contextlib.suppress(json.JSONDecodeError):
            msg = json.loads(line)
            if key in msg:
                return msg[key]


async def run_config(args: argparse.Namespace, *, redis_url: str | None, fanout: str, events: int,
                     clients: int, profile: str | None = None) -> RunResult:
    port = free_port()
    http_url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql"
    with tempfile.TemporaryDirectory() as tmp:
        server_cmd = [sys.executable, str(HERE), "_serve", "--port", str(port), "--var", tmp, "--fanout", fanout,
                      "--ws", args.ws, "--deflate", args.deflate, "--settle", args.settle,
                      "--loop", args.loop]
        if redis_url:
            server_cmd += ["--redis", redis_url]
        if profile:
            server_cmd += ["--profile", profile]
        server = await asyncio.create_subprocess_exec(*server_cmd)
        procs: list[asyncio.subprocess.Process] = []
        bus: Bus | None = None
        try:
            async with httpx.AsyncClient(base_url=http_url) as http:
                for _ in range(600):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/health")).status_code == 200:
                            break
                    if server.returncode is not None:
                        raise RuntimeError("the server process died at start")
                    await asyncio.sleep(0.1)
                procs_n = min(args.procs, clients)
                sample_clients = min(args.sample_clients, clients - 1)  # at least one client without samples
                split = [clients // procs_n + (1 if i < clients % procs_n else 0) for i in range(procs_n)]
                sample_split = [sample_clients // procs_n + (1 if i < sample_clients % procs_n else 0)
                                for i in range(procs_n)]
                for n, sn in zip(split, sample_split, strict=True):
                    procs.append(await asyncio.create_subprocess_exec(
                        sys.executable, str(HERE), "_clients", "--url", ws_url, "--http", http_url, "--n", str(n),
                        "--samples-n", str(sn), "--timeout", str(events / args.rate + 120),
                        stdout=asyncio.subprocess.PIPE, limit=1 << 24))
                for proc in procs:
                    await read_json_line(proc, "subscribed", 120)
                if redis_url:
                    bus = Bus(open_redis(redis_url))

                async def marker(kind: str) -> None:
                    if bus is not None:
                        await publish_marker(bus, kind)
                    else:
                        (await http.post(f"/bench/marker/{kind}")).raise_for_status()

                # Warm-up: marker events until every client got one (so every subscription is attached).
                warmed = asyncio.gather(*(read_json_line(proc, "warm", 120) for proc in procs))
                while not warmed.done():
                    await marker("warm")
                    await asyncio.wait({warmed}, timeout=0.2)
                await warmed
                await http.post("/bench/profile/start")
                cpu0 = cpu_seconds([server.pid])
                spec = {"events": events, "rate": args.rate, "points": args.points, "sample_hz": args.sample_hz}
                if bus is not None:
                    load = await publish_load(bus, **spec)
                else:
                    r = await http.post("/bench/load", json=spec, timeout=events / args.rate + 120)
                    r.raise_for_status()
                    load = r.json()
                reports = [await read_json_line(proc, "result", events / args.rate + 120) for proc in procs]
                cpu1 = cpu_seconds([server.pid])
                diagnostics = (await http.post("/bench/profile/stop")).json()
                print(f"  server: {diagnostics}", flush=True)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
            if bus is not None:
                await bus.redis.aclose()
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), 30)
            except TimeoutError:
                server.kill()
                await server.wait()
    seconds = load["seconds"]
    return RunResult(
        latencies_ms=[x for r in reports for x in r["latencies_ms"]],
        sample_values_per_s=sum(r["sample_values"] for r in reports) / seconds,
        sample_messages_per_s=sum(r["sample_messages"] for r in reports) / seconds,
        sample_values_sent_per_s=load["sample_values_sent"] / seconds,
        errors=[e for r in reports for e in r["errors"]],
        events=events,
        seconds=seconds,
        server_cpu_s=cpu1 - cpu0,
    )


def cpu_per_message(run: RunResult) -> float:
    """Server CPU time per websocket message delivered: what the fan-out costs, whatever else loads the host."""
    messages = len(run.latencies_ms) + run.sample_messages_per_s * run.seconds
    return run.server_cpu_s / messages * 1e6 if messages else float("nan")


def rows(label: str, clients: int, new: RunResult, base: RunResult) -> list[Result]:
    expected = clients * new.events  # every client gets every alarm
    return [
        Result(f"{label}: alarm → client p50, {clients} clients", p(new.latencies_ms, 50), "ms",
               baseline=p(base.latencies_ms, 50),
               ratio=ratio(p(new.latencies_ms, 50), p(base.latencies_ms, 50), higher_is_better=False)),
        Result(f"{label}: alarm → client p99, {clients} clients", p(new.latencies_ms, 99), "ms", goal="< 100",
               baseline=p(base.latencies_ms, 99),
               ratio=ratio(p(new.latencies_ms, 99), p(base.latencies_ms, 99), higher_is_better=False)),
        Result(f"{label}: alarm deliveries lost (of {expected})", float(expected - len(new.latencies_ms)), "events",
               goal="0", baseline=float(clients * base.events - len(base.latencies_ms))),
        Result(f"{label}: coalesced sample values delivered", new.sample_values_per_s, "values/s",
               baseline=base.sample_values_per_s,
               ratio=ratio(new.sample_values_per_s, base.sample_values_per_s, higher_is_better=True)),
        Result(f"{label}: sample messages delivered", new.sample_messages_per_s, "messages/s",
               baseline=base.sample_messages_per_s,
               ratio=ratio(new.sample_messages_per_s, base.sample_messages_per_s, higher_is_better=True)),
        Result(f"{label}: server CPU per delivered message (alarms and samples)", cpu_per_message(new), "µs",
               baseline=cpu_per_message(base),
               ratio=ratio(cpu_per_message(new), cpu_per_message(base), higher_is_better=False)),
    ]


async def orchestrate(args: argparse.Namespace) -> None:
    results: list[Result] = []
    failures: list[str] = []
    with private_redis() as redis_url:
        buses: list[tuple[str, str | None]] = [("redis bus", redis_url)]
        if not args.quick:
            buses.append(("embedded bus", None))
        for label, url in buses:
            runs = {}
            for fanout in args.fanouts.split(","):
                # In one process the per-client baseline saturates the publisher too: a shorter run says as much.
                events = args.events if url or fanout == "shared" else min(args.events, args.embedded_baseline_events)
                print(f"… {label}, {fanout} fan-out: {args.clients} clients, {events} alarms at {args.rate}/s",
                      flush=True)
                runs[fanout] = await run_config(args, redis_url=url, fanout=fanout, events=events, clients=args.clients,
                                                profile=args.profile if fanout == "shared" else None)
                failures += [f"{label}/{fanout}: {e}" for e in runs[fanout].errors]
            if "shared" in runs and "per-client" in runs:
                results += rows(label, args.clients, runs["shared"], runs["per-client"])
            else:
                for fanout, run in runs.items():
                    results += rows(f"{label} ({fanout})", args.clients, run, run)
            if url and args.untuned:
                # The same shared fan-out on last session's server settings: what the loop, deflate and heap cost.
                print(f"… {label}, shared fan-out, untuned server (asyncio loop, deflate on, heap not settled)",
                      flush=True)
                untuned_args = argparse.Namespace(**{**vars(args), "loop": "asyncio", "deflate": "on", "settle": "off"})
                untuned = await run_config(untuned_args, redis_url=url, fanout="shared", events=args.events,
                                           clients=args.clients)
                failures += [f"{label}/untuned: {e}" for e in untuned.errors]
                tuned = runs.get("shared")
                if tuned is not None:
                    for q in (50, 99):
                        results.append(Result(
                            f"{label}: alarm → client p{q}, {args.clients} clients, vs untuned server",
                            p(tuned.latencies_ms, q), "ms", baseline=p(untuned.latencies_ms, q),
                            ratio=ratio(p(tuned.latencies_ms, q), p(untuned.latencies_ms, q), higher_is_better=False)))
                    results.append(Result(f"{label}: server CPU per delivered message, vs untuned server",
                                          cpu_per_message(tuned), "µs", baseline=cpu_per_message(untuned),
                                          ratio=ratio(cpu_per_message(tuned), cpu_per_message(untuned),
                                                      higher_is_better=False)))
            if url:
                # The floor: one subscriber under the same load shows what the host itself adds (a busy shared
                # machine adds hundreds of milliseconds of run-queue waits to every process).
                print(f"… {label}, shared fan-out: 1 client (the host's floor)", flush=True)
                floor = await run_config(args, redis_url=url, fanout="shared", events=args.events, clients=1)
                failures += [f"{label}/floor: {e}" for e in floor.errors]
                results.append(Result(f"{label}: alarm → client p99, 1 client (the host's floor)",
                                      p(floor.latencies_ms, 99), "ms"))
    print_table(f"hmi benchmark: server, publisher and {args.procs} client processes on loopback "
                f"(baseline: strawberry per-subscriber execution, same run)", results)
    note = (f"{args.clients} graphql-transport-ws clients in {args.procs} processes, all subscribed to alarmEvents, "
            f"{args.sample_clients} also to samples of {SAMPLE_POINTS_PER_CLIENT} points at maxRateHz 5; "
            f"{args.events} alarm events at {args.rate}/s while {args.points} points are published at "
            f"{args.sample_hz} Hz; uvicorn ws={args.ws}, permessage-deflate {args.deflate}, {args.loop} loop, "
            f"heap settled {args.settle}; "
            "baseline = per-subscriber execution (shared_fanout off), on the embedded bus over "
            f"{min(args.events, args.embedded_baseline_events)} events (the in-process publisher saturates with it)")
    print(f"wrote {write_results('hmi', results, {'note': note, 'failures': failures[:20]})}")
    if failures:
        print("client failures:", *failures[:20], sep="\n  ")
        sys.exit(1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        ap = argparse.ArgumentParser()
        ap.add_argument("_role")
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--var", required=True)
        ap.add_argument("--redis")
        ap.add_argument("--fanout", choices=["shared", "per-client"], default="shared")
        ap.add_argument("--ws", default="auto")
        ap.add_argument("--deflate", choices=["on", "off"], default="off")
        ap.add_argument("--settle", choices=["on", "off"], default="on")
        ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
        ap.add_argument("--profile")
        sargs = ap.parse_args()
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT that stopped it
            runtime.run(serve(sargs), sargs.loop)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_clients":
        ap = argparse.ArgumentParser()
        ap.add_argument("_role")
        ap.add_argument("--url", required=True)
        ap.add_argument("--http", required=True)
        ap.add_argument("--n", type=int, required=True)
        ap.add_argument("--samples-n", type=int, default=0)
        ap.add_argument("--timeout", type=float, default=300)
        asyncio.run(clients(ap.parse_args()))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--sample-clients", type=int, default=50, help="how many clients also subscribe to samples")
    ap.add_argument("--procs", type=int, default=4, help="client processes")
    ap.add_argument("--events", type=int, default=150)
    ap.add_argument("--embedded-baseline-events", type=int, default=40,
                    help="alarm events of the per-client run on the embedded bus (it saturates)")
    ap.add_argument("--rate", type=float, default=20.0, help="alarm events per second")
    ap.add_argument("--points", type=int, default=1000, help="points per sample batch")
    ap.add_argument("--sample-hz", type=float, default=10.0)
    ap.add_argument("--ws", default="auto", help="uvicorn's websocket implementation (auto, as deploy runs it)")
    ap.add_argument("--deflate", choices=["on", "off"], default="off",
                    help="permessage-deflate (off, as deploy runs it)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop",
                    help="the server's event loop (uvloop, as deploy runs it)")
    ap.add_argument("--settle", choices=["on", "off"], default="on",
                    help="freeze the start-up heap out of the garbage collector's view (as deploy does)")
    ap.add_argument("--untuned", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the shared fan-out on an untuned server (asyncio loop, deflate, heap not settled)")
    ap.add_argument("--fanouts", default="per-client,shared", help="which fan-outs to run (baseline first)")
    ap.add_argument("--profile", help="write the server's cProfile stats (shared fan-out run) to this file")
    ap.add_argument("--quick", action="store_true", help="fewer events, Redis bus only")
    args = ap.parse_args()
    if args.quick:
        args.events = min(args.events, 100)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
