"""HMI benchmark: alarm event → websocket client latency with N concurrent subscribers, and sample fan-out."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, p, print_table, ratio, write_results
from deploy.factory import build_hmi_services, open_platform
from hmi_api.app import create_app
from skyops.bus import StreamRetention
from skyops.codec import encode_alarm_events, encode_samples
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate
from skyops.records import AlarmEvent, AlarmSeverity, SampleBatch
from skyops.settings import Settings
from skyops.streams import ALARM_EVENTS, MON_SAMPLES

RET = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))
PASSWORD = "bench-password-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def client(url: str, token: str, query: str, ready: asyncio.Event, out: list[float], want: int,
                 stamp: Any) -> None:
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                                  max_queue=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        ready.set()
        got = 0
        while got < want:
            msg = json.loads(await ws.recv())
            if msg.get("type") != "next":
                continue
            now = time.perf_counter()
            for sent in stamp(msg["payload"]["data"]):
                out.append((now - sent) * 1000)
                got += 1


async def run_alarms(url: str, token: str, bus: Any, clients: int, events: int) -> list[float]:
    latencies: list[float] = []
    readies = [asyncio.Event() for _ in range(clients)]
    query = "subscription { alarmEvents { seq event { attributes } } }"
    tasks = [asyncio.create_task(client(url, token, query, r, latencies, events,
                                        lambda d: [float(d["alarmEvents"]["event"]["attributes"]["sent"])]))
             for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(0.5)  # let every subscription attach to the hub
    t0 = datetime.now(UTC)
    for i in range(events):
        ev = AlarmEvent(alarm_id=f"Bench.Rule:{i % 10}", ts=t0, seq=i, action="transition",
                        severity=AlarmSeverity.CRITICAL, attributes={"sent": repr(time.perf_counter())})
        await bus.publish(ALARM_EVENTS, encode_alarm_events([ev]), retention=RET)
        await asyncio.sleep(0.02)  # 50 alarm events per second: an alarm storm
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return latencies


async def run_samples(url: str, token: str, bus: Any, clients: int, points: int, seconds: float) -> tuple[float, int]:
    """Publish `points` points at 10 Hz for `seconds`; count coalesced updates clients receive per second."""
    names = [f"bench.hmi.p{i:04d}" for i in range(points)]
    query = f"subscription {{ samples(points: {json.dumps(names[:200])}, maxRateHz: 5) {{ point value }} }}"
    counts = [0]
    stop = asyncio.Event()

    async def one(ready: asyncio.Event) -> None:
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                                      max_queue=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            await ws.recv()
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            ready.set()
            while not stop.is_set():
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if msg.get("type") == "next":
                    counts[0] += len(msg["payload"]["data"]["samples"])

    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(one(r)) for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(0.5)
    t_end = time.perf_counter() + seconds
    sent = 0
    while time.perf_counter() < t_end:
        now_us = int(datetime.now(UTC).timestamp() * 1e6)
        batch = SampleBatch.from_floats(names, range(points), [now_us] * points, [float(sent)] * points)
        await bus.publish(MON_SAMPLES, encode_samples(batch), retention=RET)
        sent += points
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    return counts[0] / seconds, sent


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.events = 50, 30
    with tempfile.TemporaryDirectory() as tmp:
        platform = await open_platform(Settings(var_dir=Path(tmp)))
        services, _ = await build_hmi_services(platform)
        await asyncio.to_thread(services.auth.users.create, data=UserCreate(
            username="bench", full_name="Bench", group=Group.OPERATOR, password=PASSWORD), now=platform.clock.now())
        port = free_port()
        app = create_app(health=platform.health, services=services)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes no event for "listening"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            login = f'mutation {{ login(username: "bench", password: "{PASSWORD}") {{ token }} }}'
            r = await http.post("/graphql", json={"query": login})
            token = r.json()["data"]["login"]["token"]
        url = f"ws://127.0.0.1:{port}/graphql"
        try:
            base = await run_alarms(url, token, platform.bus, 1, args.events)
            lat = await run_alarms(url, token, platform.bus, args.clients, args.events)
            rate, sent = await run_samples(url, token, platform.bus, min(args.clients, 50), 1000, 5.0)
        finally:
            server.should_exit = True
            await serving
            await platform.close()
    assert len(lat) == args.clients * args.events, (len(lat), args.clients * args.events)
    results = [
        Result(f"alarm → client p50, {args.clients} clients", p(lat, 50), "ms"),
        Result(f"alarm → client p99, {args.clients} clients", p(lat, 99), "ms", goal="< 100",
               baseline=p(base, 99), ratio=ratio(p(lat, 99), p(base, 99), higher_is_better=False)),
        Result("alarm deliveries", float(len(lat)), "events", goal="none lost"),
        Result(f"coalesced sample updates delivered ({min(args.clients, 50)} clients, 200 points each)", rate,
               "values/s", baseline=float(sent) / 5.0),
    ]
    print_table("hmi benchmark (server, bus and clients in one process on loopback)", results)
    print(f"wrote {write_results('hmi', results, {'note': 'baseline of the p99 row: one subscriber'})}")


if __name__ == "__main__":
    asyncio.run(main())
