"""The platform distributed: every service its own `skyops run` process on real Redis, Cassandra and PostgreSQL.

The loop the platform exists for, end to end: the ASM reports a wind rise → the pointing-restriction
alarm → a re-plan with no OB in the forbidden sector → the operator's VES rewritten in the P2
emulator → an HMI subscription sees the alarm and the plan change. All processes share one simulated
clock (SKYOPS_CLOCK_*) set in tonight's dark hours, so the scenario runs whatever the hour of the test.

One platform serves every scenario of the module (starting a dozen processes costs more than most
scenarios): each scenario asserts only on what happened after it began, and leaves the weather calm
with no weather alarm up. The alarm rules are the shipped ones with no activation delay and short
clear delays, so a scenario waits seconds, not the shipped half hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from config_db.monitoring import retention_classes
from deploy.clocks import AnchoredClock
from deploy.sample_obs import SAMPLE_OBS_PATH
from planner.config import load_site
from planner.ephemeris import compute_night
from planner.service import night_of
from skyops import codec
from skyops.archive.cassandra import CassandraArchive
from skyops.messages import ConsequenceKind, PlanEvent
from skyops.opdb import make_engine, make_sessionmaker
from skyops.records import AlarmSeverity
from skyops.streams import ALARM_EVENTS, MON_SAMPLES
from tests.support.processes import (
    SKYOPS,
    Processes,
    fast_alarms,
    fast_monitoring,
    listening,
    p2_ves,
    plan_events,
    wait_for,
)
from tests.support.servers import free_port, own_schema

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]
WIND_ALARM = "WindPointing.NTT:1"
HUMIDITY_ALARM = "Humidity.ASM:1"
HUMIDITY_CLEAR_S = 120  # clock time; shipped: 30 minutes below 85 % before the dome may reopen
# The clock runs this much faster than the wall: the dome opens, the telescope slews and the alarm delays
# pass in a tenth of the time (every process keeps the clock's meaning: polls and delays scale with it).
SPEED = 10
# Calm and dry: no weather alarm. The weather model's own wind or humidity at this hour might raise one.
CALM = {"wind_speed": 4.0, "wind_gust": 6.0, "humidity": 40.0}


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this module's own: the stream names are fixed, so sharing one would mix suites."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)  # a real server starting
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def keyspace(cassandra_hosts: list[str]) -> Iterator[str]:
    """A keyspace of this module's own, created (with its tables) before the processes start, dropped after."""
    name = f"e2e_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        archive = CassandraArchive(cassandra_hosts, keyspace=name)
        await archive.open()  # one client creates the schema: concurrent DDL from many processes can disagree
        await archive.close()

    asyncio.run(create())
    try:
        yield name
    finally:
        from cassandra.cluster import Cluster

        cluster = Cluster(cassandra_hosts, protocol_version=5)
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
        finally:
            cluster.shutdown()


@pytest.fixture(scope="module")
def sql_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema of this module's own, migrated once before the processes start, dropped after."""
    with own_schema(postgres_url, "e2e") as url:
        yield url


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    """librdkafka's mock cluster: it listens on loopback for as long as its owner lives (the gcn process
    connects to it)."""
    import confluent_kafka

    owner = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    try:
        yield ",".join(f"{b.host}:{b.port}" for b in owner.list_topics(timeout=10).brokers.values())
    finally:
        owner.flush(5)
        del owner


def gcn_config(path: Path, bootstrap: str) -> Path:
    """The shipped GCN config reading only Swift/BAT-GUANO from the mock cluster, with a group of its own."""
    import yaml

    from config_db.gcn import KafkaConfig, load_gcn_config
    from tests.unit.planner.test_gcn_notices import GUANO_TOPIC

    shipped = load_gcn_config()
    config = shipped.model_copy(update={
        "topics": {GUANO_TOPIC: shipped.topics[GUANO_TOPIC]},
        "kafka": KafkaConfig(group_id=f"skyops-e2e-{uuid.uuid4().hex[:8]}", poll_timeout_s=0.5, retry_backoff_s=0.5,
                             properties={"bootstrap.servers": bootstrap, "security.protocol": "plaintext",
                                         "log_level": 3}),
    })
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def dark_hours(wall: datetime) -> tuple[date, datetime]:
    """The next night (local evening date) and a time two hours into its dark part."""
    site = load_site()
    night = night_of(site, wall) + timedelta(days=1)
    return night, datetime.fromtimestamp(compute_night(site, night).start_unix, UTC) + timedelta(hours=2)


@dataclass
class Platform:
    """The running processes, where they listen, and the clock they share."""

    procs: Processes
    env: dict[str, str]
    redis_url: str
    sql_url: str
    cassandra_hosts: list[str]
    keyspace: str
    ports: dict[str, int]
    night: date
    clock: AnchoredClock
    kafka_bootstrap: str
    token: str = ""

    @property
    def hmi(self) -> str:
        return f"http://127.0.0.1:{self.ports['hmi']}"

    @property
    def asm(self) -> str:
        return f"http://127.0.0.1:{self.ports['asm']}"

    @property
    def p2(self) -> str:
        return f"http://127.0.0.1:{self.ports['p2']}"

    def now(self) -> datetime:
        return self.clock.now()


def graphql(base: str, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables},
                                      headers=headers, timeout=20).json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


@pytest.fixture(scope="module")
def platform(own_redis: str, keyspace: str, sql_url: str, cassandra_hosts: list[str], kafka_bootstrap: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Every service and simulator as its own `skyops run` process: the simulators, then the rest at once."""
    tmp = tmp_path_factory.mktemp("e2e")
    ports = {name: free_port() for name in ("hmi", "asm", "p2", "telescope")}
    wall = datetime.now(UTC)
    night, night_time = dark_hours(wall)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}
    env.update({
        "COLUMNS": "250", "SKYOPS_REDIS_URL": own_redis, "SKYOPS_CASSANDRA_HOSTS": ",".join(cassandra_hosts),
        "SKYOPS_CASSANDRA_KEYSPACE": keyspace, "SKYOPS_SQL_URL": sql_url, "SKYOPS_VAR_DIR": str(tmp / "var"),
        "SKYOPS_VES_ENVIRONMENT": "local",
        "SKYOPS_VES_API_URL": f"http://127.0.0.1:{ports['p2']}/api/v1",
        "SKYOPS_VES_LOGIN_URL": f"http://127.0.0.1:{ports['p2']}/api/login",
        "SKYOPS_VES_HEALTH_INTERVAL_S": "2",
        "SKYOPS_CLOCK_START": night_time.isoformat(), "SKYOPS_CLOCK_ANCHOR": wall.isoformat(),
        "SKYOPS_CLOCK_SPEED": str(SPEED),
        "SKYOPS_ALARMS_RULES_FILE": str(fast_alarms(tmp / "alarms.yaml", clear_s={"Humidity": HUMIDITY_CLEAR_S})),
        "SKYOPS_GCN_CONFIG_FILE": str(gcn_config(tmp / "gcn.yaml", kafka_bootstrap)),
    })
    monitoring = str(fast_monitoring(tmp / "monitoring.yaml"))
    telescope = f"opc.tcp://127.0.0.1:{ports['telescope']}/ntt/"
    procs = Processes(env, tmp / "logs", {
        "asm": ["asm-simulator", "--port", str(ports["asm"])],
        "telescope": ["telescope-simulator", "--port", str(ports["telescope"])],
        "p2": ["p2-emulator", "--port", str(ports["p2"]), "--state-dir", str(tmp / "p2")],
        "collectors": ["collectors", "--config", monitoring, "--asm-url", f"http://127.0.0.1:{ports['asm']}/asm/current",
                       "--opcua-endpoint", telescope],
        "dispatcher": ["dispatcher", "--config", monitoring],
        "logging": ["logging", "--syslog-port", "0"],
        "alarms": ["alarms"],
        "planner": ["planner", "--sample-obs", str(SAMPLE_OBS_PATH)],
        "ves-sync": ["ves-sync"],
        "executor": ["ves-executor", "--opcua-endpoint", telescope, "--open-dome"],
        "hmi": ["hmi", "--port", str(ports["hmi"])],
        "gcn": ["gcn"],
    })
    p = Platform(procs, env, own_redis, sql_url, cassandra_hosts, keyspace, ports, night,
                 AnchoredClock(night_time, wall, SPEED), kafka_bootstrap)
    simulators = ("asm", "telescope", "p2")  # process names, and the names of their ports
    try:
        # The simulators first: clients that find them down back off for up to tens of seconds.
        for name in simulators:
            procs.start(name)
        for name in simulators:
            wait_for(f"the {name} simulator listening", functools.partial(listening, ports[name]), procs, 120,
                     period_s=0.2)
        for name in procs.commands.keys() - set(simulators):  # at once: each spends seconds importing
            procs.start(name)
        wait_for("the HMI's health", lambda: httpx.get(f"{p.hmi}/health", timeout=5).json()["status"] == "ok" or None,
                 procs, 180)
        password = wait_for("the admin password", lambda: re.search(r"password (\S+) \(shown once",
                                                                    procs.log("hmi")), procs, 30).group(1)
        p.token = graphql(p.hmi, "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                          u="admin", p=password)["login"]["token"]
        yield p
    finally:
        codes = procs.stop()
    assert codes == dict.fromkeys(procs.procs, 0), {n: procs.log(n)[-1500:] for n, c in codes.items() if c}


def set_weather(p: Platform, name: str, **fields: float) -> None:
    """Hold the ASM's `fields` (the rest of CALM too) for two hours of clock time."""
    steps = [{"at_s": 0, "duration_s": 7200, "field": f, "set": v} for f, v in {**CALM, **fields}.items()]
    r = httpx.post(f"{p.asm}/asm/scenario", timeout=10, json={"name": name, "steps": steps})
    assert r.status_code == 200, r.text


def alarm_severity(redis_url: str, alarm_id: str) -> AlarmSeverity | None:
    """The alarm's severity in its newest event (None before its first)."""
    client = redis.Redis.from_url(redis_url)
    try:
        events = [e for _, f in client.xrange(ALARM_EVENTS) for e in codec.decode_alarm_events(f[b"d"])
                  if e.alarm_id == alarm_id]
    finally:
        client.close()
    return events[-1].severity if events else None


@pytest.fixture(autouse=True)
def calm_weather(platform: Platform) -> Iterator[None]:
    """Each scenario starts calm and leaves the platform calm, with no weather alarm up."""
    set_weather(platform, "e2e_calm")
    yield
    set_weather(platform, "e2e_calm")

    def quiet() -> bool | None:
        return True if all(alarm_severity(platform.redis_url, a) in (None, AlarmSeverity.NONE)
                           for a in (WIND_ALARM, HUMIDITY_ALARM)) else None

    wait_for("the wind and humidity alarms to clear", quiet, platform.procs, 90, period_s=0.5)


class Subscriptions:
    """One graphql-transport-ws connection to the HMI with the alarm and plan subscriptions, read on a thread."""

    def __init__(self, url: str, token: str) -> None:
        from websockets.sync.client import connect

        self.messages: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, subprotocols=["graphql-transport-ws"]))  # type: ignore[list-item]
        self.ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(self.ws.recv(timeout=10))["type"] == "connection_ack"
        for op, query in (("alarms", "subscription { alarmEvents { seq event { alarmId action severity } } }"),
                          ("plans", "subscription { planChanges { planId reason triggerAlarm blocks { obId } } }")):
            self.ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query}}))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the connection closes at the end of the test
            for raw in self.ws:
                self.messages.append(json.loads(raw))

    def payloads(self, op: str) -> list[dict[str, Any]]:
        return [m["payload"]["data"] for m in list(self.messages) if m.get("id") == op and m["type"] == "next"]

    def close(self) -> None:
        self._stack.close()
        self._thread.join(timeout=10)


def azimuths(block_times: list[datetime], ra: list[float], dec: list[float]) -> list[float]:
    """Azimuths (deg, from north through east) at La Silla by astropy, independently of the planner's numpy."""
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time

    from planner.ephemeris import configure_offline_astropy

    configure_offline_astropy()
    site = load_site()
    where = EarthLocation(lat=site.latitude_deg * u.deg, lon=site.longitude_deg * u.deg, height=site.elevation_m * u.m)
    coords = SkyCoord(ra=ra * u.deg, dec=dec * u.deg)
    frame = AltAz(obstime=Time(block_times), location=where)
    return [float(a) for a in coords.transform_to(frame).az.deg]


def close_dome_events(redis_url: str, since: datetime) -> list[PlanEvent]:
    return [e for e in plan_events(redis_url) if e.trigger is not None and e.trigger.ts >= since
            and e.trigger.consequence is ConsequenceKind.CLOSE_DOME and e.trigger.alarm_id == HUMIDITY_ALARM]


def test_tonight_is_planned_and_skyops_status_says_every_component_is_healthy(platform: Platform) -> None:
    p = platform
    first = wait_for("tonight's plan", lambda: next(iter(plan_events(p.redis_url)), None), p.procs, 180, period_s=0.5)
    assert first.night == p.night.isoformat() and len(first.blocks) >= 5
    plan = graphql(p.hmi, "{ plan { planId night blocks { obId } } }", p.token)["plan"]
    assert plan is not None and plan["night"] == p.night.isoformat() and len(plan["blocks"]) >= 5

    def healthy() -> dict[str, Any] | None:
        r = subprocess.run([SKYOPS, "status", "--json"], env=p.env, capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout) if r.returncode == 0 else None

    status = wait_for("`skyops status` to say healthy", healthy, p.procs, 120, period_s=0.5)
    parts = {r["name"] for r in status["rows"] if r["kind"] == "part"}
    assert {"collectors", "dispatcher", "logging", "alarm-supervisor", "alarm-dispatcher", "planner",
            "ves-sync", "ves-executor", "hmi", "asm-simulator", "telescope-simulator", "p2-emulator"} <= parts


def test_wind_rise_alarm_replans_out_of_the_sector_and_rewrites_the_ves(platform: Platform) -> None:
    p = platform
    wait_for("tonight's plan in P2's VES", lambda: p2_ves(p.p2) or None, p.procs, 180, period_s=0.5)

    def exposing() -> int | None:
        latest = {v["point"]: v["value"] for v in graphql(
            p.hmi, '{ latest(points: ["ntt.exposure.state", "ntt.exposure.ob_id"]) { point value } }',
            p.token)["latest"]}
        ob = latest.get("ntt.exposure.ob_id")
        return int(ob) if latest.get("ntt.exposure.state") == "EXPOSING" and ob else None

    # The telescope executes the VES: the executor slews it and exposes the first observable OB.
    def exposing_an_ob_of_the_ves() -> bool | None:
        ob = exposing()
        return True if ob is not None and ob in p2_ves(p.p2) else None

    wait_for("the telescope exposing an OB of the VES", exposing_an_ob_of_the_ves, p.procs, 180, period_s=0.5)

    subs = Subscriptions(f"ws://127.0.0.1:{p.ports['hmi']}/graphql", p.token)
    try:
        since = p.now()
        # Above the pointing restriction (12 m/s), below the dome-closing wind (15-20) and gusts (25).
        set_weather(p, "e2e_wind", wind_speed=13.5, wind_gust=16.0)

        def replanned() -> PlanEvent | None:
            for event in reversed(plan_events(p.redis_url)):
                t = event.trigger
                if (t is not None and t.ts >= since and t.consequence is ConsequenceKind.POINTING_RESTRICTION
                        and t.active):
                    return event
            return None

        event = wait_for("the re-plan on the pointing restriction", replanned, p.procs, 240, period_s=0.5)
        trigger = event.trigger
        assert trigger is not None and trigger.alarm_id == WIND_ALARM and trigger.sector is not None
        later = [b for b in event.blocks if b.start >= trigger.ts]
        assert later, "the re-plan left the rest of the night empty"
        inner = trigger.sector.model_copy(update={"start_deg": (trigger.sector.start_deg + 0.5) % 360,
                                                  "end_deg": (trigger.sector.end_deg - 0.5) % 360})
        for b in later:
            az = azimuths([b.start, b.end], [b.ra_deg] * 2, [b.dec_deg] * 2)
            assert not any(inner.contains(a) for a in az), f"{b.ob_id} points into the wind at {az}"

        def ves_history() -> list[Any]:
            from ves_sync.store import VesSyncStore

            engine = make_engine(p.sql_url)
            try:
                return VesSyncStore(make_sessionmaker(engine)).history(limit=20)
            finally:
                engine.dispose()

        change = wait_for("the VES rewritten for the re-plan",
                          lambda: next((c for c in ves_history() if c.plan_id == event.plan_id), None), p.procs, 60,
                          period_s=0.5)
        assert change.alarm_id == WIND_ALARM
        # What P2 holds is the newest sequence the sync wrote (this one, or a later re-plan's once it is written).
        wait_for("P2's VES to be the newest sequence written",
                 lambda: True if p2_ves(p.p2) == [int(i) for i in ves_history()[0].after] else None, p.procs, 30,
                 period_s=0.5)

        def seen() -> bool | None:
            alarms = [m["alarmEvents"]["event"] for m in subs.payloads("alarms")]
            plans = [m["planChanges"] for m in subs.payloads("plans")]
            return True if any(a["alarmId"] == WIND_ALARM for a in alarms) and any(
                m["planId"] == event.plan_id and m["triggerAlarm"] == WIND_ALARM for m in plans) else None

        wait_for("the HMI subscription to see the alarm and the re-plan", seen, p.procs, 60, period_s=0.5)
    finally:
        subs.close()


def test_humidity_closes_the_dome_nothing_is_scheduled_until_clear_then_planning_resumes(platform: Platform) -> None:
    p = platform
    wait_for("tonight's plan", lambda: next(iter(plan_events(p.redis_url)), None), p.procs, 180, period_s=0.5)
    since = p.now()
    set_weather(p, "e2e_fog", humidity=96.0)

    def closed() -> PlanEvent | None:
        return next((e for e in close_dome_events(p.redis_url, since) if e.trigger and e.trigger.active), None)

    close = wait_for("the dome-closing re-plan", closed, p.procs, 180, period_s=0.5)
    assert close.trigger is not None and close.trigger.alarm_id == HUMIDITY_ALARM
    assert [b for b in close.blocks if b.end > close.trigger.ts] == []  # nothing while the dome is closed

    # Back to well below 85 %: the alarm clears once the clear delay has passed, and only then.
    set_weather(p, "e2e_dry")

    def cleared() -> PlanEvent | None:
        return next((e for e in close_dome_events(p.redis_url, since) if e.trigger and not e.trigger.active), None)

    reopen = wait_for("planning to resume once the humidity alarm cleared", cleared, p.procs, 180, period_s=0.5)
    assert reopen.trigger is not None
    assert reopen.trigger.ts - close.trigger.ts >= timedelta(seconds=HUMIDITY_CLEAR_S)  # the clear delay
    assert [b for b in reopen.blocks if b.start >= reopen.trigger.ts], "planning did not resume"


def test_a_gcn_notice_becomes_a_too_observed_first(platform: Platform) -> None:
    import gcn_kafka
    from astropy import units as u
    from astropy.time import Time

    from planner.ephemeris import configure_offline_astropy
    from tests.unit.planner.test_gcn_notices import GUANO_TOPIC, redated

    p = platform
    wait_for("tonight's plan", lambda: next(iter(plan_events(p.redis_url)), None), p.procs, 180, period_s=0.5)
    # A Swift/BAT-GUANO burst right overhead (RA = local sidereal time, Dec = the site's latitude), just now.
    now = p.now()
    configure_offline_astropy()
    site = load_site()
    lst = Time(now).sidereal_time("mean", longitude=site.longitude_deg * u.deg).deg
    notice = redated("swift_bat_guano.loc_arcmin.json", now, ra=round(float(lst), 3),
                     dec=round(site.latitude_deg, 3), id=[int(time.time())])

    producer = gcn_kafka.Producer({"bootstrap.servers": p.kafka_bootstrap, "security.protocol": "plaintext"})
    producer.produce(GUANO_TOPIC, notice, partition=0)
    assert producer.flush(10) == 0

    def too_plan() -> PlanEvent | None:
        return next((e for e in plan_events(p.redis_url) if e.trigger is not None and e.trigger.kind == "too"), None)

    event = wait_for("the re-plan for the ToO", too_plan, p.procs, 180, period_s=0.5)
    assert event.trigger is not None
    upcoming = sorted((b for b in event.blocks if b.end > event.trigger.ts), key=lambda b: b.start)
    assert upcoming and upcoming[0].ob_id == event.trigger.ob_id, "the ToO is not the next OB observed"
    assert upcoming[0].ob_type == "ToO"
    assert upcoming[0].start - event.trigger.ts < timedelta(minutes=15)  # at once, not at its best time


def test_a_dispatcher_killed_and_restarted_loses_no_sample(platform: Platform) -> None:
    """kill -9 of the archive writer: what it had read stays pending under its consumer name, and its restart
    writes it: every sample of every configured point published up to then is in the archive."""
    from skyops.timeutil import from_us

    p = platform
    bus = redis.Redis.from_url(p.redis_url)

    def archive_backlog() -> int:
        group = next(g for g in bus.xinfo_groups(MON_SAMPLES) if g["name"] == b"archive")
        return int(group["pending"]) + int(group.get("lag") or 0)

    def key(entry_id: str) -> tuple[int, int]:
        ms, seq = entry_id.split("-")
        return int(ms), int(seq)

    try:
        # Samples flow all the time: a dispatcher keeping up leaves a backlog of a few entries at most.
        wait_for("the dispatcher keeping up", lambda: (bus.xlen(MON_SAMPLES) > 10 and archive_backlog() < 5) or None,
                 p.procs, 180, period_s=0.5)
        p.procs.kill("dispatcher")  # kill -9: whatever it read and had not acknowledged stays pending under its name
        before = bus.xlen(MON_SAMPLES)
        wait_for("a backlog behind the dead dispatcher", lambda: bus.xlen(MON_SAMPLES) >= before + 20 or None,
                 p.procs, 120, period_s=0.5, check_alive=False)
        p.procs.start("dispatcher")  # same host and instance: the same consumer name
        # Samples keep coming, and the dispatcher acknowledges an entry once the block holding it is written:
        # wait until everything up to the newest entry of now is written and acknowledged.
        cutoff = bus.xinfo_stream(MON_SAMPLES)["last-generated-id"].decode()

        def drained() -> bool | None:
            group = next(g for g in bus.xinfo_groups(MON_SAMPLES) if g["name"] == b"archive")
            if key(group["last-delivered-id"].decode()) < key(cutoff):
                return None
            return True if not bus.xpending_range(MON_SAMPLES, "archive", min="-", max=cutoff, count=1) else None

        wait_for("the backlog written and acknowledged", drained, p.procs, 180, period_s=0.5)

        configured = retention_classes()
        expected: dict[str, set[int]] = {}
        for _, fields in bus.xrange(MON_SAMPLES, max=cutoff):
            batch = codec.decode_samples(fields[b"d"])
            for i, point in enumerate(batch.points):
                if point in configured:  # what the archive keeps
                    expected.setdefault(point, set()).update(int(t) for t in batch.ts_us[batch.point_idx == i])
    finally:
        bus.close()

    async def archived() -> dict[str, set[int]]:
        async with CassandraArchive(p.cassandra_hosts, keyspace=p.keyspace, points=configured) as archive:
            got = await archive.raw_many(sorted(expected), from_us(min(min(ts) for ts in expected.values())),
                                         from_us(max(max(ts) for ts in expected.values()) + 1))
        return {point: {int(t) for t in got[point].ts_us} if point in got else set() for point in expected}

    found = asyncio.run(archived())
    assert sum(len(ts) for ts in expected.values()) > 50
    missing = {point: len(ts - found[point]) for point, ts in expected.items() if ts - found[point]}
    assert missing == {}, f"samples lost: {missing}"
