"""The platform as `skyops run` processes, and the ledgers that prove a fault lost and duplicated nothing."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from config_db.logging import load_logging_config
from config_db.monitoring import retention_classes
from deploy.sample_obs import SAMPLE_OBS_PATH
from logging_svc.handler import install_bus_logging, uninstall_bus_logging
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import LogQuery
from skyops.bus import Bus, open_redis
from skyops.messages import PlanEvent, PlanTrigger
from skyops.records import AlarmEvent
from skyops.streams import ALARM_EVENTS, LOG_RECORDS, MON_SAMPLES, PLAN_EVENTS, PLAN_TRIGGERS
from skyops.timeutil import SystemClock, from_us, to_us
from tests.support.processes import p2_ves, plan_events
from tests.support.servers import free_port

LOG_SOURCE = "faultsuite"
# The consumers of the scenario, with the stream and group whose backlog must drain after a fault.
CONSUMER_GROUPS = {
    "dispatcher": (MON_SAMPLES, "archive"),
    "logging": (LOG_RECORDS, "archive"),
    "alarms": (ALARM_EVENTS, "alarm-dispatch"),
    "planner": (PLAN_TRIGGERS, "planner"),
    "ves-sync": (PLAN_EVENTS, "ves_sync"),
}

SIMULATORS = ("asm", "telescope", "p2")  # the names of their processes and of their ports in `Scenario.ports`


@dataclass
class Scenario:
    """The platform's addresses and settings, shared by every process and by the checks."""

    env: dict[str, str]
    redis_url: str
    cassandra_hosts: list[str]
    cassandra_port: int
    keyspace: str
    sql_url: str
    ports: dict[str, int]

    @property
    def asm(self) -> str:
        return f"http://127.0.0.1:{self.ports['asm']}"

    @property
    def p2(self) -> str:
        return f"http://127.0.0.1:{self.ports['p2']}"


def platform_env(*, redis_url: str, cassandra_hosts: list[str], cassandra_port: int, keyspace: str, sql_url: str,
                 var_dir: Path, clock_start: datetime, clock_anchor: datetime) -> Scenario:
    ports = {name: free_port() for name in ("asm", "p2", "telescope")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}
    env.update({
        "COLUMNS": "250",
        "SKYOPS_REDIS_URL": redis_url, "SKYOPS_CASSANDRA_HOSTS": ",".join(cassandra_hosts),
        "SKYOPS_CASSANDRA_PORT": str(cassandra_port), "SKYOPS_CASSANDRA_KEYSPACE": keyspace,
        "SKYOPS_SQL_URL": sql_url, "SKYOPS_VAR_DIR": str(var_dir),
        "SKYOPS_VES_ENVIRONMENT": "local",
        "SKYOPS_VES_API_URL": f"http://127.0.0.1:{ports['p2']}/api/v1",
        "SKYOPS_VES_LOGIN_URL": f"http://127.0.0.1:{ports['p2']}/api/login",
        "SKYOPS_VES_HEALTH_INTERVAL_S": "2",
        # P2 down must fail a sync quickly enough that the VES-sync alarm's failure count rises in the test.
        "SKYOPS_VES_RETRY_ATTEMPTS": "1",
        "SKYOPS_CLOCK_START": clock_start.isoformat(), "SKYOPS_CLOCK_ANCHOR": clock_anchor.isoformat(),
    })
    return Scenario(env=env, redis_url=redis_url, cassandra_hosts=cassandra_hosts, cassandra_port=cassandra_port,
                    keyspace=keyspace, sql_url=sql_url, ports=ports)


def commands(s: Scenario, *, config: Path, p2_state: Path) -> dict[str, list[str]]:
    """`skyops run` arguments of every process of the scenario."""
    tel = f"opc.tcp://127.0.0.1:{s.ports['telescope']}/ntt/"
    return {
        "asm": ["asm-simulator", "--port", str(s.ports["asm"])],
        "telescope": ["telescope-simulator", "--port", str(s.ports["telescope"])],
        "p2": ["p2-emulator", "--port", str(s.ports["p2"]), "--state-dir", str(p2_state)],
        "collectors": ["collectors", "--config", str(config), "--asm-url", f"{s.asm}/asm/current",
                       "--opcua-endpoint", tel],
        "dispatcher": ["dispatcher", "--config", str(config)],
        "logging": ["logging", "--no-syslog"],
        "alarms": ["alarms"],
        "planner": ["planner", "--sample-obs", str(SAMPLE_OBS_PATH)],
        "ves-sync": ["ves-sync"],
    }


# --- what the scenario does --------------------------------------------------------------------------

def set_wind(s: Scenario, speed: float) -> None:
    """Hold the wind (and its gusts) at `speed`: above the pointing restriction it raises the alarm."""
    r = httpx.post(f"{s.asm}/asm/scenario", timeout=10, json={
        "name": f"faults_wind_{speed}", "steps": [
            {"at_s": 0, "duration_s": 7200, "field": "wind_speed", "set": speed},
            {"at_s": 0, "duration_s": 7200, "field": "wind_gust", "set": speed + 2.0}]})
    r.raise_for_status()


def request_replan(s: Scenario, reason: str) -> None:
    """What the HMI's re-plan button publishes: a manual trigger."""
    now = clock_now(s)
    trigger = PlanTrigger(kind="manual", ts=now, reason=reason, user="faultsuite")
    client = redis.Redis.from_url(s.redis_url)
    try:
        client.xadd(PLAN_TRIGGERS, {b"t": str(to_us(now)).encode(), b"d": trigger.encode()})
    finally:
        client.close()


class LogEmitter:
    """Log records with unique ids, sent through the real logging handler (the producer every process uses)."""

    def __init__(self, s: Scenario, *, rate_hz: float = 20.0) -> None:
        config = load_logging_config()
        self.run_id = uuid.uuid4().hex[:10]
        self.logger = logging.getLogger(f"faultsuite.{self.run_id}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        url = s.redis_url
        self.thread = install_bus_logging(source=LOG_SOURCE, bus_factory=lambda: Bus(open_redis(url)),
                                          config=config.handler, filters=config.filters,
                                          retention=config.retention, logger=self.logger)
        self.sent: list[str] = []
        self.rate_hz = rate_hz
        self._stop = threading.Event()
        self._emitter = threading.Thread(target=self._run, daemon=True)
        self._emitter.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(1 / self.rate_hz):
            rid = f"{self.run_id}-{n:06d}"
            self.logger.info("fault-log %s", rid)
            self.sent.append(rid)
            n += 1

    def close(self) -> list[str]:
        """Stop emitting, ship what is queued; returns every id sent."""
        self._stop.set()
        self._emitter.join(timeout=10)
        uninstall_bus_logging(self.thread, self.logger, timeout=30)
        return list(self.sent)


# --- ledgers -----------------------------------------------------------------------------------------

@dataclass
class Ledger:
    """What a check found: problems (empty when nothing was lost or duplicated) and what it counted."""

    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def stream_entries(redis_url: str, stream: str) -> Iterator[tuple[str, bytes]]:
    client = redis.Redis.from_url(redis_url)
    try:
        after = "-"
        while True:
            items: Any = client.xrange(stream, min=after, max="+", count=2000)
            for entry_id, fields in items:
                yield entry_id.decode(), fields.get(b"d", b"")
            if len(items) < 2000:
                return
            after = "(" + items[-1][0].decode()
    finally:
        client.close()


def emitted_samples(redis_url: str, points: set[str], start_us: int, end_us: int) -> dict[str, set[int]]:
    """(point → timestamps) published on `mon.samples` in [start, end): what the archive must hold."""
    out: dict[str, set[int]] = {p: set() for p in points}
    for _, payload in stream_entries(redis_url, MON_SAMPLES):
        batch = codec.decode_samples(payload)
        names = np.array(batch.points, dtype=object)
        if not len(batch):
            continue
        in_window = (batch.ts_us >= start_us) & (batch.ts_us < end_us)
        for name, ts in zip(names[batch.point_idx[in_window]], batch.ts_us[in_window], strict=True):
            if name in out:
                out[name].add(int(ts))
    return out


def max_gap_s(redis_url: str, point: str, start_us: int, end_us: int) -> float:
    """The longest silence of `point` on `mon.samples` in the window (a producer that lost samples leaves one)."""
    ts = sorted(emitted_samples(redis_url, {point}, start_us, end_us)[point])
    edges = [start_us, *ts, end_us] if ts else [start_us, end_us]
    return max(b - a for a, b in itertools.pairwise(edges)) / 1e6


def open_archive(s: Scenario) -> CassandraArchive:
    return CassandraArchive(s.cassandra_hosts, port=s.cassandra_port, keyspace=s.keyspace,
                            points=retention_classes())


async def sample_ledger(s: Scenario, points: set[str], start: datetime, end: datetime) -> Ledger:
    """Every sample published for `points` in the window is archived, exactly once."""
    ledger = Ledger()
    expected = emitted_samples(s.redis_url, points, to_us(start), to_us(end))
    async with open_archive(s) as archive:
        got = await archive.raw_many(sorted(points), start, end)
    for point in sorted(points):
        ts = [int(t) for t in got[point].ts_us] if point in got else []
        dup = len(ts) - len(set(ts))
        missing = expected[point] - set(ts)
        extra = set(ts) - expected[point]
        ledger.counts[point] = len(ts)
        if dup:
            ledger.problems.append(f"{point}: {dup} samples archived twice")
        if missing:
            ledger.problems.append(f"{point}: {len(missing)} of {len(expected[point])} published samples not "
                                   f"archived, e.g. {from_us(min(missing)).isoformat()}")
        if extra:
            ledger.problems.append(f"{point}: {len(extra)} archived samples never published")
    ledger.counts["samples"] = sum(len(v) for v in expected.values())
    return ledger


def _alarm_key(e: AlarmEvent) -> tuple[str, int, int, str]:
    return e.alarm_id, to_us(e.ts), e.seq, e.action


async def alarm_ledger(s: Scenario, start: datetime, end: datetime) -> Ledger:
    """Every alarm transition the supervisor published in the window is in the archive's history, once."""
    ledger = Ledger()
    events = [e for e in alarm_events(s.redis_url) if start <= e.ts < end]
    published = {_alarm_key(e) for e in events}
    # A supervisor restarted mid-batch may publish a transition again (same alarm, time and sequence), which
    # the archive absorbs; the same sequence number at another time or action would be a second transition.
    by_seq = Counter((e.alarm_id, e.seq) for e in {_alarm_key(e): e for e in events}.values())
    if twice := sorted(k for k, n in by_seq.items() if n > 1):
        ledger.problems.append(f"{len(twice)} alarm transitions published twice as different events: {twice[:5]}")
    async with open_archive(s) as archive:
        history = await archive.alarm_history(start=start, end=end, limit=100_000)
    archived = [_alarm_key(e) for e in history]
    dup = len(archived) - len(set(archived))
    if dup:
        ledger.problems.append(f"{dup} alarm events archived twice")
    if missing := published - set(archived):
        ledger.problems.append(f"{len(missing)} published alarm events not archived: {sorted(missing)[:5]}")
    if extra := set(archived) - published:
        ledger.problems.append(f"{len(extra)} archived alarm events never published: {sorted(extra)[:5]}")
    ledger.counts["alarm_events"] = len(published)
    return ledger


async def log_ledger(s: Scenario, sent: list[str], start: datetime, end: datetime) -> Ledger:
    """Every log record the emitter sent is archived, once."""
    ledger = Ledger()
    found: list[str] = []
    cursor: str | None = None
    async with open_archive(s) as archive:
        while True:
            page = await archive.query_logs(LogQuery(start=start, end=end, sources=(LOG_SOURCE,), text="fault-log",
                                                     limit=10_000, cursor=cursor))
            found += [r.message.split()[-1] for r in page.records]
            cursor = page.next_cursor
            if cursor is None:
                break
    mine = [f for f in found if f.split("-")[0] == (sent[0].split("-")[0] if sent else "")]
    dup = len(mine) - len(set(mine))
    if dup:
        ledger.problems.append(f"{dup} log records archived twice")
    if missing := set(sent) - set(mine):
        ledger.problems.append(f"{len(missing)} of {len(sent)} log records not archived, e.g. {sorted(missing)[:3]}")
    ledger.counts["log_records"] = len(sent)
    return ledger


def group_lag(redis_url: str, stream: str, group: str) -> int | None:
    """Entries of `stream` not yet handled by `group` (None: the group does not exist yet)."""

    async def lag() -> int | None:
        client = open_redis(redis_url)
        try:
            return await Bus(client).lag(stream, group)
        except LookupError:
            return None
        finally:
            await client.aclose()

    return asyncio.run(lag())


def reused_plan_ids(redis_url: str) -> list[str]:
    """Plan ids published more than once with different plans (a plan id names one plan)."""
    seen: dict[str, PlanEvent] = {}
    reused = []
    for event in plan_events(redis_url):
        first = seen.setdefault(event.plan_id, event)
        if first is not event and first != event:
            reused.append(event.plan_id)
    return reused


def lag_of(s: Scenario, stream: str, group: str) -> Callable[[], int | None]:
    return lambda: group_lag(s.redis_url, stream, group)


def caught_up(s: Scenario, stream: str, group: str) -> Callable[[], bool | None]:
    return lambda: True if group_lag(s.redis_url, stream, group) == 0 else None


def ves_ledger(s: Scenario) -> Ledger:
    """The newest plan reached P2: the sync recorded it, and P2's VES is the sequence it wrote."""
    from skyops.opdb import make_engine, make_sessionmaker
    from ves_sync.store import VesSyncStore

    ledger = Ledger()
    events = plan_events(s.redis_url)
    engine = make_engine(s.sql_url)
    try:
        history = VesSyncStore(make_sessionmaker(engine)).history(limit=50)
    finally:
        engine.dispose()
    if not events or not history:
        ledger.problems.append(f"{len(events)} plan events, {len(history)} VES changes")
        return ledger
    if [int(i) for i in history[0].after] != p2_ves(s.p2):
        ledger.problems.append(f"P2's VES {p2_ves(s.p2)} is not the last one written {history[0].after}")
    ledger.counts["plan_events"] = len(events)
    ledger.counts["ves_changes"] = len(history)
    return ledger


def wall_now() -> datetime:
    return datetime.now(UTC)


def alarm_events(redis_url: str) -> list[AlarmEvent]:
    """Every alarm event the supervisor published, in order."""
    return [e for _, p in stream_entries(redis_url, ALARM_EVENTS) for e in codec.decode_alarm_events(p)]


def on_platform_clock(s: Scenario, wall: datetime) -> datetime:
    """What the platform's clock read at wall time `wall`."""
    return clock_now(s) - (wall_now() - wall)


def clock_now(s: Scenario) -> datetime:
    """The platform's (anchored) clock, read the way every process reads it."""
    from deploy.clocks import AnchoredClock

    start = datetime.fromisoformat(s.env["SKYOPS_CLOCK_START"])
    anchor = datetime.fromisoformat(s.env["SKYOPS_CLOCK_ANCHOR"])
    return AnchoredClock(start, anchor, wall=SystemClock()).now()


def window_end(s: Scenario, margin_s: float = 0.0) -> datetime:
    return clock_now(s) - timedelta(seconds=margin_s)
