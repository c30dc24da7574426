"""Benchmark: a plan change on the bus → a verified VES in P2 (the emulator, over HTTP with the real p2api client)."""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, p, print_table, ratio, write_results
from skyops.bus import Bus, StreamRetention
from skyops.messages import PlanEvent, PlannedBlock
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.streams import PLAN_EVENTS
from skyops.timeutil import SystemClock
from ves_sync.consumer import VesSyncConsumer
from ves_sync.emulator import default_seed
from ves_sync.p2 import P2Account, P2Client, register_environment
from ves_sync.service import VesSyncService
from ves_sync.store import VesSyncStore

GOAL_S = 1.0
PASSWORD = "p2-emulator"
RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=1))
START = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(state_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The emulator in its own process, as `skyops run p2-emulator` runs it (no GIL shared with the client)."""
    port = free_port()
    code = (f"from pathlib import Path; from ves_sync.emulator import serve; "
            f"serve('127.0.0.1', {port}, Path({str(state_dir)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("the P2 emulator did not start")


def blocks(n: int) -> list[PlannedBlock]:
    return [
        PlannedBlock(
            ob_id=f"bench-ob-{i:04d}", name=f"target {i}", target_name=f"SN2026b{i:03d}", ra_deg=(11.7 * i) % 360,
            dec_deg=-70 + 2.1 * i % 90, magnitude=18.0, exposure_s=600.0, priority=1, ob_type="classification",
            start=START + timedelta(minutes=15 * i), end=START + timedelta(minutes=15 * i + 14),
            max_airmass=1.8, min_moon_distance_deg=30, max_seeing_arcsec=1.5,
        )
        for i in range(n)
    ]


def changed_plan(base: list[PlannedBlock], run: int, rng: random.Random) -> PlanEvent:
    """A re-plan: the order shuffled and two OBs' exposure changed, as after a weather alarm."""
    order = base[:]
    rng.shuffle(order)
    for k in rng.sample(range(len(order)), 2):
        order[k] = order[k].model_copy(update={"exposure_s": 600.0 + 60 * (run + 1)})
    return PlanEvent(plan_id=f"bench-{run}", night="2026-11-21", created=datetime.now(UTC), reason="bench re-plan",
                     blocks=tuple(order))


def service(environment: str, store_path: Path) -> VesSyncService:
    engine = make_engine(f"sqlite:///{store_path}")
    upgrade(engine)
    container = default_seed().run_of("soxs").container_id
    return VesSyncService(
        owner=P2Client(P2Account(environment, "soxs", PASSWORD)),
        operator=P2Client(P2Account(environment, "operator", PASSWORD)),
        store=VesSyncStore(make_sessionmaker(engine)), container_id=container, instrument="SOXS",
        clock=SystemClock(),
    )


async def plan_change_s(consumer: VesSyncConsumer, bus: Bus, event: PlanEvent) -> float:
    t = time.perf_counter()
    await bus.publish(PLAN_EVENTS, event.encode(), retention=RETENTION)
    acked = await consumer.run_once()
    elapsed = time.perf_counter() - t
    report = consumer.reports[-1]
    if acked != 1 or report.plan_id != event.plan_id or report.rejected:
        raise RuntimeError(f"plan {event.plan_id} did not reach a verified VES: {report}")
    return elapsed


async def main(n_obs: int, runs: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, port = start_emulator(work / "p2")
        try:
            environment = "bench"
            register_environment(environment, f"http://127.0.0.1:{port}/api/v1", f"http://127.0.0.1:{port}/api/login")
            redis = FakeRedis(server=FakeServer(version=(7, 0)), decode_responses=False)
            bus = Bus(redis)
            sync = service(environment, work / "opdb.sqlite3")
            consumer = VesSyncConsumer(bus=bus, service=sync, clock=SystemClock(), samples_retention=RETENTION,
                                       block_ms=10)
            rng = random.Random(7)
            base = blocks(n_obs)
            first = PlanEvent(plan_id="bench-initial", night="2026-11-21", created=datetime.now(UTC),
                              reason="bench initial", blocks=tuple(base))
            initial_s = await plan_change_s(consumer, bus, first)
            ours = [await plan_change_s(consumer, bus, changed_plan(base, run, rng)) for run in range(runs)]
            # Baseline: the same re-plans synced without memory of what P2 holds (each OB re-read and checked).
            baseline = []
            for run in range(runs):
                stateless = service(environment, work / f"stateless-{run}.sqlite3")
                t = time.perf_counter()
                report = await asyncio.to_thread(stateless.sync, changed_plan(base, runs + run, rng))
                baseline.append(time.perf_counter() - t)
                if report.created or report.rejected:
                    raise RuntimeError(f"stateless baseline created or rejected OBs: {report}")
            await redis.aclose()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    ms = [x * 1000 for x in ours]
    base_ms = [x * 1000 for x in baseline]
    goal = f"< {GOAL_S * 1000:.0f} ms"
    return [
        Result(f"plan change → verified VES, {n_obs} OBs, p50", p(ms, 50), "ms", goal, p(base_ms, 50),
               ratio(p(ms, 50), p(base_ms, 50), higher_is_better=False)),
        Result(f"plan change → verified VES, {n_obs} OBs, p99", p(ms, 99), "ms", goal, p(base_ms, 99),
               ratio(p(ms, 99), p(base_ms, 99), higher_is_better=False)),
        Result(f"first sync (creates {n_obs} OBs) → verified VES", initial_s * 1000, "ms"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--obs", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args()
    results = asyncio.run(main(args.obs, 5 if args.quick else args.runs))
    print_table("VES sync: plan change → verified VES (baseline: stateless sync of the same plan)", results)
    print(f"wrote {write_results('ves', results, {'runs': 5 if args.quick else args.runs, 'obs': args.obs})}")
