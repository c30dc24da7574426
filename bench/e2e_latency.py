"""End-to-end latency of the weather loop: a wind sample over the limit → alarm → re-plan → VES verified in P2.

Each service runs as its own `skyops run` process (alarms, planner, ves-sync, the P2 emulator) on a private
redis-server; the bench publishes the ASM wind points itself, so the time starts when the sample that crosses
the pointing-restriction threshold is on `mon.samples`. It then times, per rise and per clear of the wind:

- the wind alarm's transition on `alarm.events`,
- the re-plan it triggers on `plan.events`,
- the operator's VES written and read back in the P2 emulator (the VES-sync history records the moment of
  the successful read-back, with the plan id).

Stream times are the Redis entry ids (the server's clock, ms); the VES time is the sync's clock, which runs
at the wall's speed from a known anchor. Process start-up and the first plan are not counted. The alarm
rule's configured delays (activation 60 s, clear 600 s in the shipped rules) are set to 0 here and
reported separately: they are the site's choice, not latency.

Baseline, measured in the same run: the same services wired in one process on the embedded bus
(fakeredis), as `skyops up` runs them.

    python -m bench.e2e_latency [--quick] [--cycles N] [--sql-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml
from sqlalchemy import Engine, select

from bench.common import Result, p, print_table, ratio, write_results
from deploy.clocks import AnchoredClock
from deploy.sample_obs import SAMPLE_OBS_PATH
from planner.config import load_site
from planner.ephemeris import compute_night
from planner.service import night_of
from skyops.bus import PAYLOAD_FIELD, Bus, StreamRetention
from skyops.codec import decode_alarm_events, encode_samples
from skyops.messages import ConsequenceKind, PlanEvent, decode_plan_event
from skyops.opdb import make_engine, make_sessionmaker
from skyops.records import Sample, SampleBatch
from skyops.streams import ALARM_EVENTS, MON_SAMPLES, PLAN_EVENTS
from skyops.timeutil import require_utc
from tests.support.processes import Processes
from tests.support.servers import free_port, own_schema, private_redis
from ves_sync.models import SyncedNight
from ves_sync.store import VesSyncStore

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config_db" / "defaults" / "alarms.yaml"
WIND_RULE = "WindPointing"
WIND_ALARM = "WindPointing.NTT:1"
HIGH, LOW = 13.5, 9.0  # m/s: over the 12 m/s limit; under it by more than the 1.5 m/s hysteresis
WIND_FROM, TELESCOPE_AZ = 90.0, 270.0  # the telescope points away from the wind: the alarm stays at WARNING
SAMPLE_PERIOD_S = 0.25
STAGE_TIMEOUT_S = 60.0
STAGES = ("alarm", "plan", "ves")
RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=6))




def wind_rules(path: Path) -> dict[str, Any]:
    """The shipped wind pointing-restriction rule alone, without its delays; returns the shipped delays."""
    doc = yaml.safe_load(RULES.read_text())
    rule = next(r for r in doc["rules"] if r["name"] == WIND_RULE)
    shipped = {"activation_delay_s": rule.get("activation_delay_s"), "clear_delay_s": rule.get("clear_delay_s")}
    rule["activation_delay_s"] = dict.fromkeys(rule.get("activation_delay_s") or {"warning": 0}, 0)
    rule["clear_delay_s"] = 0
    doc["rules"] = [rule]
    path.write_text(yaml.safe_dump(doc))
    return shipped


def night_clock(wall: datetime) -> tuple[datetime, datetime]:
    """(clock start, wall anchor): the clock reads one hour into tonight's (or the next) dark time."""
    site = load_site()
    night = night_of(site, wall)
    grid = compute_night(site, night)
    start = datetime.fromtimestamp(grid.start_unix, UTC) + timedelta(hours=1)
    if start + timedelta(hours=3) < wall:  # tonight's dark time is over: use the next night's
        grid = compute_night(site, night + timedelta(days=1))
        start = datetime.fromtimestamp(grid.start_unix, UTC) + timedelta(hours=1)
    return start, wall


def entry_ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


@dataclass
class Transition:
    """One rise or clear of the wind, with the wall times (ms since the epoch) of each stage."""

    rising: bool
    sample_ms: int
    stage_ms: dict[str, int] = field(default_factory=dict)

    def latency_ms(self, stage: str) -> float | None:
        at = self.stage_ms.get(stage)
        return None if at is None else float(at - self.sample_ms)


class Driver:
    """Publishes the wind points and watches the streams and the VES history for each transition."""

    def __init__(self, client: aioredis.Redis, clock: AnchoredClock, history: Engine,
                 alive: Callable[[], None]) -> None:
        self.client = client
        self.alive = alive  # raises when a service died: a dead chain must fail the bench, not time out
        self.clock = clock
        self.bus = Bus(client, clock=clock)
        self.sessions = make_sessionmaker(history)
        self.store = VesSyncStore(self.sessions)
        self.wind = LOW

    def batch(self) -> bytes:
        now = self.clock.now()
        return encode_samples(SampleBatch.from_samples([
            Sample("lasilla.asm.wind_speed", now, self.wind),
            Sample("lasilla.asm.wind_direction", now, WIND_FROM),
            Sample("ntt.tcs.azimuth", now, TELESCOPE_AZ),
        ]))

    async def feed(self, stop: asyncio.Event) -> None:
        """The ASM and telescope points at a steady pace, so the rule's inputs never go stale."""
        while not stop.is_set():
            await self.bus.publish(MON_SAMPLES, self.batch(), retention=RETENTION)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_PERIOD_S)

    async def transition(self, rising: bool) -> Transition:
        self.wind = HIGH if rising else LOW
        sample_id = await self.bus.publish(MON_SAMPLES, self.batch(), retention=RETENTION)
        t = Transition(rising, entry_ms(sample_id))
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        alarm = await self._poll(lambda: self._alarm_after(sample_id), deadline)
        if alarm is None:
            return t
        t.stage_ms["alarm"] = alarm
        plan = await self._poll(lambda: self._plan_after(sample_id, rising), deadline)
        if plan is None:
            return t
        t.stage_ms["plan"], event = plan
        ves = await self._poll(lambda: self._ves_verified(event.plan_id), deadline)
        if ves is not None:
            t.stage_ms["ves"] = ves
        return t

    async def _poll(self, probe: Any, deadline: float) -> Any:
        # Observation only (not part of the measured chain): every time read comes from the stores.
        while time.monotonic() < deadline:
            self.alive()
            found = await probe()
            if found is not None:
                return found
            await asyncio.sleep(0.02)
        return None

    async def _read(self, stream: str, after: str | None = None) -> list[tuple[str, bytes]]:
        raw: Any = await self.client.xrange(stream, min=f"({after}" if after else "-")
        return [(eid.decode() if isinstance(eid, bytes) else str(eid), fields[PAYLOAD_FIELD]) for eid, fields in raw]

    async def _alarm_after(self, entry_id: str) -> int | None:
        for eid, payload in await self._read(ALARM_EVENTS, entry_id):
            if any(e.alarm_id == WIND_ALARM for e in decode_alarm_events(payload)):
                return entry_ms(eid)
        return None

    async def _plan_after(self, entry_id: str, rising: bool) -> tuple[int, PlanEvent] | None:
        for eid, payload in await self._read(PLAN_EVENTS, entry_id):
            event = decode_plan_event(payload)
            t = event.trigger
            if (t is not None and t.alarm_id == WIND_ALARM and t.consequence is ConsequenceKind.POINTING_RESTRICTION
                    and t.active == rising):
                return entry_ms(eid), event
        return None

    def _verified_at(self, plan_id: str) -> datetime | None:
        """When the sync read the plan's VES back from P2: its VES change, or (VES already right) the night's
        synced mark, both written after the read-back (sync clock time)."""
        change = next((c for c in self.store.history(limit=20) if c.plan_id == plan_id), None)
        if change is not None:
            return change.ts
        with self.sessions() as session:
            row = session.scalars(select(SyncedNight).where(SyncedNight.plan_id == plan_id)).first()
            return None if row is None else require_utc(row.synced_at)

    async def _ves_verified(self, plan_id: str) -> int | None:
        at = await asyncio.to_thread(self._verified_at, plan_id)
        if at is None:
            return None
        # The sync's clock runs at the wall's speed from the anchor: back to wall time.
        wall = self.clock.anchor + (at - self.clock.start) / self.clock.speed
        return round(wall.timestamp() * 1000)

    async def first_plan_synced(self, timeout_s: float) -> bool:
        async def synced() -> bool | None:
            entries = await self._read(PLAN_EVENTS)
            if not entries:
                return None
            plan = decode_plan_event(entries[-1][1])
            return True if await self._ves_verified(plan.plan_id) is not None else None

        return bool(await self._poll(synced, time.monotonic() + timeout_s))

    async def cycles(self, n: int) -> list[Transition]:
        stop = asyncio.Event()
        feeder = asyncio.create_task(self.feed(stop))
        out: list[Transition] = []
        try:
            await asyncio.sleep(2 * SAMPLE_PERIOD_S)  # the rule sees calm wind first
            for i in range(n):
                for rising in (True, False):
                    t = await self.transition(rising)
                    out.append(t)
                    print(f"  cycle {i + 1}/{n} {'rise ' if rising else 'clear'}: " + "  ".join(
                        f"{s} {t.latency_ms(s):.0f} ms" if t.latency_ms(s) is not None else f"{s} -"
                        for s in STAGES), flush=True)
                    await asyncio.sleep(4 * SAMPLE_PERIOD_S)  # let the last VES sync settle
        finally:
            stop.set()
            await feeder
        return out


def base_env(work: Path, redis_url: str, sql_url: str, rules: Path, p2_port: int, start: datetime,
             anchor: datetime) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}
    env.update({
        "COLUMNS": "200", "SKYOPS_REDIS_URL": redis_url, "SKYOPS_SQL_URL": sql_url,
        "SKYOPS_VAR_DIR": str(work / "var"), "SKYOPS_ALARMS_RULES_FILE": str(rules),
        "SKYOPS_VES_ENVIRONMENT": "local",
        "SKYOPS_VES_API_URL": f"http://127.0.0.1:{p2_port}/api/v1",
        "SKYOPS_VES_LOGIN_URL": f"http://127.0.0.1:{p2_port}/api/login",
        "SKYOPS_CLOCK_START": start.isoformat(), "SKYOPS_CLOCK_ANCHOR": anchor.isoformat(),
    })
    return env


async def distributed(work: Path, redis_url: str, sql_url: str, rules: Path, cycles: int) -> list[Transition]:
    """Each service its own `skyops run` process on the real Redis server."""
    p2_port = free_port()
    start, anchor = night_clock(datetime.now(UTC))
    env = base_env(work, redis_url, sql_url, rules, p2_port, start, anchor)
    procs = Processes(env, work / "logs")
    engine = make_engine(sql_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        procs.start("p2", "p2-emulator", "--port", str(p2_port), "--state-dir", str(work / "p2"))
        procs.start("alarms", "alarms")
        procs.start("planner", "planner", "--sample-obs", str(SAMPLE_OBS_PATH))
        procs.start("ves-sync", "ves-sync")
        driver = Driver(client, AnchoredClock(start, anchor), engine, procs.check_alive)
        print("… distributed: waiting for the first plan in P2 (start-up, not counted)", flush=True)
        if not await driver.first_plan_synced(240):
            raise RuntimeError(f"the first plan never reached P2:\n{procs.tails()}")
        procs.check_alive()
        return await driver.cycles(cycles)
    finally:
        await client.aclose()
        engine.dispose()
        codes = procs.stop()
        if any(codes.values()):
            print(f"process exit codes: {codes}\n{procs.tails()}", file=sys.stderr)


async def embedded(work: Path, rules: Path, cycles: int) -> list[Transition]:
    """The same services in this process on the embedded bus (fakeredis) and SQLite, as `skyops up` wires them."""
    from deploy import platform as parts
    from deploy.factory import open_platform
    from deploy.runner import Runner
    from skyops.settings import Settings

    os.environ["SKYOPS_ALARMS_RULES_FILE"] = str(rules)
    start, anchor = night_clock(datetime.now(UTC))
    clock = AnchoredClock(start, anchor)
    settings = Settings(redis_url=None, sql_url=None, cassandra_hosts=None, var_dir=work / "var-embedded")
    platform = await open_platform(settings, clock=clock)
    asm = parts.Assembly.of(platform)
    stop = asyncio.Event()
    runner: asyncio.Task[None] | None = None
    try:
        emulator = await parts.add_p2_emulator(asm, state_dir=work / "p2-embedded")
        parts.add_alarms(asm, consumer="bench-alarms")
        await parts.add_planner(asm, consumer="bench-planner", sample_obs=SAMPLE_OBS_PATH)
        parts.add_ves_sync(asm, parts.emulator_ves_config(emulator, consumer="bench-ves-sync"))
        runner = asyncio.create_task(Runner("embedded", asm.parts).run(stop))
        task = runner

        def alive() -> None:
            if task.done():
                raise RuntimeError(f"the embedded services stopped: {task.exception() or 'returned'}")

        driver = Driver(platform.redis, clock, platform.engine, alive)
        print("… embedded: waiting for the first plan in P2 (start-up, not counted)", flush=True)
        if not await driver.first_plan_synced(240):
            raise RuntimeError("the first plan never reached P2 (embedded)")
        return await driver.cycles(cycles)
    finally:
        stop.set()
        if runner is not None:
            await runner
        await asm.aclose()
        await platform.close()


def latencies(transitions: list[Transition], stage: str, rising: bool | None = None) -> list[float]:
    return [v for t in transitions if rising is None or t.rising == rising
            if (v := t.latency_ms(stage)) is not None]


def between(transitions: list[Transition], first: str, last: str) -> list[float]:
    return [float(t.stage_ms[last] - t.stage_ms[first]) for t in transitions if {first, last} <= t.stage_ms.keys()]


def summarize(new: list[Transition], base: list[Transition], cycles: int) -> list[Result]:
    results: list[Result] = []
    labels = {"alarm": "sample → alarm event", "plan": "sample → re-plan on plan.events",
              "ves": "sample → VES verified in P2"}
    for stage in STAGES:
        values, baseline = latencies(new, stage), latencies(base, stage)
        for q, name in ((50, "p50"), (99, "p99"), (100, "max")):
            if not values:
                continue
            v = max(values) if q == 100 else p(values, q)
            b = (max(baseline) if q == 100 else p(baseline, q)) if baseline else None
            results.append(Result(f"{labels[stage]} {name} (distributed)", v, "ms",
                                  goal="< 2000" if stage == "ves" else None, baseline=b,
                                  ratio=ratio(v, b, higher_is_better=False) if b is not None else None))
        missing = 2 * cycles - len(values)
        if missing:
            results.append(Result(f"{labels[stage]}: transitions not seen in {STAGE_TIMEOUT_S:.0f} s",
                                  float(missing), "transitions", goal="0"))
    # Where the time goes: each service's share (the planner's re-plan, the VES sync's P2 round trips).
    for first, last, label, goal in (("alarm", "ves", "alarm event → VES verified", "< 2000"),
                                     ("alarm", "plan", "alarm event → re-plan (planner)", None),
                                     ("plan", "ves", "re-plan → VES verified (VES sync)", None)):
        chain, base_chain = between(new, first, last), between(base, first, last)
        for q in (50, 99):
            if not chain:
                continue
            b = p(base_chain, q) if base_chain else None
            results.append(Result(f"{label} p{q} (distributed)", p(chain, q), "ms", goal=goal if q == 99 else None,
                                  baseline=b, ratio=ratio(p(chain, q), b, higher_is_better=False) if b else None))
    for rising in (True, False):
        values = latencies(new, "ves", rising)
        if values:
            results.append(Result(f"sample → VES verified p50, {'rise' if rising else 'clear'} only (distributed)",
                                  p(values, 50), "ms"))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="3 rise/clear cycles instead of 10")
    ap.add_argument("--cycles", type=int, default=None)
    ap.add_argument("--sql-url", default=os.environ.get("SKYOPS_TEST_SQL_URL"),
                    help="PostgreSQL for the planner and VES sync (default SKYOPS_TEST_SQL_URL; else SQLite)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the embedded one-process baseline")
    args = ap.parse_args()
    cycles = args.cycles or (3 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="skyops-e2e-") as tmp:
        work = Path(tmp)
        rules = work / "alarms.yaml"
        shipped = wind_rules(rules)
        with contextlib.ExitStack() as stack:
            redis_url = stack.enter_context(private_redis(work))
            sql_url = (stack.enter_context(own_schema(args.sql_url, "bench")) if args.sql_url
                       else f"sqlite:///{work / 'opdb.sqlite'}")
            new = asyncio.run(distributed(work, redis_url, sql_url, rules, cycles))
        base = [] if args.no_baseline else asyncio.run(embedded(work, rules, cycles))
    results = summarize(new, base, cycles)
    print_table("alarm → verified VES, end to end", results)
    extra = {"setup": {"cycles": cycles, "processes": ["p2-emulator", "alarms", "planner", "ves-sync"],
                       "bus": "private redis-server", "opdb": "PostgreSQL" if args.sql_url else "SQLite",
                       "baseline": "the same services in one process on the embedded bus (fakeredis) and SQLite",
                       "sample_period_s": SAMPLE_PERIOD_S,
                       "shipped_rule_delays_s": shipped,
                       "note": "the rule's configured activation and clear delays are set to 0 for the bench; "
                               "in production they add to the chain as configured"}}
    print(f"shipped {WIND_ALARM} delays (not counted above): {shipped}")
    path = write_results("e2e_latency", results, extra)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
