"""The platform distributed: every service its own `skyops run` process on real Redis, Cassandra and PostgreSQL.

The loop the platform exists for, end to end: the ASM reports a wind rise → the pointing-restriction
alarm → a re-plan with no OB in the forbidden sector → the operator's VES rewritten in the P2
emulator → an HMI subscription sees the alarm and the plan change. All processes share one simulated
clock (SKYOPS_CLOCK_*) set in tonight's dark hours, so the scenario runs whatever the hour of the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import make_url

from config_db.monitoring import load_monitoring
from deploy.sample_obs import SAMPLE_OBS_PATH
from planner.config import load_site
from planner.ephemeris import compute_night
from planner.service import night_of
from skyops.archive.cassandra import CassandraArchive
from skyops.messages import ConsequenceKind, PlanEvent
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.streams import MON_SAMPLES
from tests.support.processes import SKYOPS, Processes, plan_events, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(600)]
WIND_ALARM = "WindPointing.NTT:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test's own: the stream names are fixed, so sharing one would mix tests."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
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


@pytest.fixture
def keyspace(cassandra_hosts: list[str]) -> Iterator[str]:
    """A keyspace of this test's own, created (with its tables) before the processes start, dropped after."""
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


@pytest.fixture
def sql_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema of this test's own, migrated once before the processes start, dropped after."""
    admin = make_engine(postgres_url)
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    text = url.render_as_string(hide_password=False)
    engine = make_engine(text)
    upgrade(engine)
    engine.dispose()
    try:
        yield text
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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


def graphql(base: str, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables},
                                      headers=headers, timeout=20).json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


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


def dark_hours(wall: datetime) -> tuple[date, datetime]:
    """The next night (local evening date) and a time two hours into its dark part."""
    site = load_site()
    night = night_of(site, wall) + timedelta(days=1)
    return night, datetime.fromtimestamp(compute_night(site, night).start_unix, UTC) + timedelta(hours=2)


def base_env(tmp_path: Path, redis_url: str, keyspace: str, sql_url: str, cassandra_hosts: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}
    env.update({"COLUMNS": "250", "SKYOPS_REDIS_URL": redis_url, "SKYOPS_CASSANDRA_HOSTS": ",".join(cassandra_hosts),
                "SKYOPS_CASSANDRA_KEYSPACE": keyspace, "SKYOPS_SQL_URL": sql_url,
                "SKYOPS_VAR_DIR": str(tmp_path / "var")})
    return env


def close_dome_events(redis_url: str) -> list[PlanEvent]:
    return [e for e in plan_events(redis_url)
            if e.trigger is not None and e.trigger.consequence is ConsequenceKind.CLOSE_DOME]


def test_humidity_closes_the_dome_nothing_is_scheduled_until_clear_then_planning_resumes(
    tmp_path: Path, own_redis: str, keyspace: str, sql_url: str, cassandra_hosts: list[str],
) -> None:
    speed = 20  # the 30-minute clear delay of the humidity alarm lasts 90 s
    ports = {name: free_port() for name in ("asm", "telescope")}
    wall = datetime.now(UTC)
    night, night_time = dark_hours(wall)
    env = base_env(tmp_path, own_redis, keyspace, sql_url, cassandra_hosts)
    env.update({"SKYOPS_CLOCK_START": night_time.isoformat(), "SKYOPS_CLOCK_ANCHOR": wall.isoformat(),
                "SKYOPS_CLOCK_SPEED": str(speed)})
    procs = Processes(env, tmp_path / "logs")
    try:
        procs.start("asm", "asm-simulator", "--port", str(ports["asm"]))
        procs.start("telescope", "telescope-simulator", "--port", str(ports["telescope"]))
        procs.start("collectors", "collectors", "--asm-url", f"http://127.0.0.1:{ports['asm']}/asm/current",
                    "--opcua-endpoint", f"opc.tcp://127.0.0.1:{ports['telescope']}/ntt/")
        procs.start("alarms", "alarms")
        procs.start("planner", "planner", "--sample-obs", str(SAMPLE_OBS_PATH))

        first = wait_for("tonight's plan", lambda: next(iter(plan_events(own_redis)), None), procs, 180)
        assert first.night == night.isoformat() and len(first.blocks) >= 5
        samples = redis.Redis.from_url(own_redis)
        try:
            wait_for("weather samples on the bus", lambda: samples.xlen(MON_SAMPLES) > 10 or None, procs, 120)
        finally:
            samples.close()
        # 20 minutes (clock) of fog, then the humidity the weather model gives (well below 85 %).
        r = httpx.post(f"http://127.0.0.1:{ports['asm']}/asm/scenario", timeout=10, json={
            "name": "e2e_fog", "steps": [{"at_s": 0, "duration_s": 1200, "field": "humidity", "set": 96.0}]})
        assert r.status_code == 200, r.text

        def closed() -> PlanEvent | None:
            return next((e for e in close_dome_events(own_redis)
                         if e.trigger and e.trigger.active and e.trigger.alarm_id == "Humidity.ASM:1"), None)

        close = wait_for("the dome-closing re-plan", closed, procs, 180)
        assert close.trigger is not None and close.trigger.alarm_id == "Humidity.ASM:1"
        assert [b for b in close.blocks if b.end > close.trigger.ts] == []  # nothing while the dome is closed

        def cleared() -> PlanEvent | None:
            return next((e for e in close_dome_events(own_redis)
                         if e.trigger and not e.trigger.active and e.trigger.alarm_id == "Humidity.ASM:1"), None)

        reopen = wait_for("planning to resume once the humidity alarm cleared", cleared, procs, 300)
        assert reopen.trigger is not None
        assert reopen.trigger.ts - close.trigger.ts >= timedelta(minutes=30)  # the clear delay, in clock time
        assert [b for b in reopen.blocks if b.start >= reopen.trigger.ts], "planning did not resume"
    finally:
        codes = procs.stop()
    assert codes == dict.fromkeys(procs.procs, 0), {n: procs.log(n)[-1500:] for n, c in codes.items() if c}


def test_wind_rise_alarm_replans_out_of_the_sector_and_rewrites_the_ves(
    tmp_path: Path, own_redis: str, keyspace: str, sql_url: str, cassandra_hosts: list[str],
) -> None:
    ports = {name: free_port() for name in ("hmi", "asm", "p2", "telescope")}
    wall = datetime.now(UTC)
    night, night_time = dark_hours(wall)
    env = base_env(tmp_path, own_redis, keyspace, sql_url, cassandra_hosts)
    env.update({
        "SKYOPS_VES_ENVIRONMENT": "local",
        "SKYOPS_VES_API_URL": f"http://127.0.0.1:{ports['p2']}/api/v1",
        "SKYOPS_VES_LOGIN_URL": f"http://127.0.0.1:{ports['p2']}/api/login",
        "SKYOPS_VES_HEALTH_INTERVAL_S": "5",
        "SKYOPS_CLOCK_START": night_time.isoformat(), "SKYOPS_CLOCK_ANCHOR": wall.isoformat(),
    })
    procs = Processes(env, tmp_path / "logs")
    subs: Subscriptions | None = None
    try:
        procs.start("asm", "asm-simulator", "--port", str(ports["asm"]))
        procs.start("telescope", "telescope-simulator", "--port", str(ports["telescope"]))
        procs.start("p2", "p2-emulator", "--port", str(ports["p2"]), "--state-dir", str(tmp_path / "p2"))
        procs.start("collectors", "collectors", "--asm-url", f"http://127.0.0.1:{ports['asm']}/asm/current",
                    "--opcua-endpoint", f"opc.tcp://127.0.0.1:{ports['telescope']}/ntt/")
        procs.start("dispatcher", "dispatcher")
        procs.start("logging", "logging", "--syslog-port", "0")
        procs.start("alarms", "alarms")
        procs.start("planner", "planner", "--sample-obs", str(SAMPLE_OBS_PATH))
        procs.start("ves-sync", "ves-sync")
        procs.start("executor", "ves-executor", "--opcua-endpoint", f"opc.tcp://127.0.0.1:{ports['telescope']}/ntt/",
                    "--open-dome")
        procs.start("hmi", "hmi", "--port", str(ports["hmi"]))
        base = f"http://127.0.0.1:{ports['hmi']}"

        wait_for("the HMI's health", lambda: httpx.get(f"{base}/health", timeout=5).json()["status"] == "ok" or None,
                 procs, 180)
        password = wait_for("the admin password", lambda: re.search(r"password (\S+) \(shown once",
                                                                    procs.log("hmi")), procs, 30).group(1)
        token = graphql(base, "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                        u="admin", p=password)["login"]["token"]

        def planned() -> dict[str, Any] | None:
            plan = graphql(base, "{ plan { planId night blocks { obId } } }", token)["plan"]
            return plan if plan and len(plan["blocks"]) >= 5 else None

        first = wait_for("tonight's plan", planned, procs, 120)
        assert first["night"] == night.isoformat()

        def healthy() -> bool | None:
            r = subprocess.run([SKYOPS, "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
            return True if r.returncode == 0 else None

        wait_for("`skyops status` to say healthy", healthy, procs, 120)
        status = json.loads(subprocess.run([SKYOPS, "status", "--json"], env=env, capture_output=True, text=True,
                                           timeout=60).stdout)
        parts = {r["name"] for r in status["rows"] if r["kind"] == "part"}
        assert {"collectors", "dispatcher", "logging", "alarm-supervisor", "alarm-dispatcher", "planner",
                "ves-sync", "ves-executor", "hmi", "asm-simulator", "telescope-simulator", "p2-emulator"} <= parts

        p2 = f"http://127.0.0.1:{ports['p2']}"

        def ves_ids() -> list[int]:
            login = httpx.post(f"{p2}/api/login", data={"username": "operator", "password": "p2-emulator"},
                               timeout=10)
            ves = httpx.get(f"{p2}/api/v1/executionSequences/SOXS", timeout=10,
                            headers={"Authorization": f"Bearer {login.json()['access_token']}"}).json()
            return [int(e["obId"]) for e in ves]

        def exposing() -> int | None:
            latest = {v["point"]: v["value"] for v in graphql(
                base, '{ latest(points: ["ntt.exposure.state", "ntt.exposure.ob_id"]) { point value } }',
                token)["latest"]}
            ob = latest.get("ntt.exposure.ob_id")
            return int(ob) if latest.get("ntt.exposure.state") == "EXPOSING" and ob else None

        # The telescope executes the VES: the executor slews it and exposes the first observable OB.
        assert wait_for("the telescope exposing an OB of the VES", exposing, procs, 180) in ves_ids()

        subs = Subscriptions(f"ws://127.0.0.1:{ports['hmi']}/graphql", token)
        r = httpx.post(f"http://127.0.0.1:{ports['asm']}/asm/scenario", timeout=10, json={
            # Above the pointing restriction (12 m/s), below the dome-closing wind (15-20) and gusts (25).
            "name": "e2e_wind", "steps": [{"at_s": 0, "duration_s": 7200, "field": "wind_speed", "set": 13.5},
                                          {"at_s": 0, "duration_s": 7200, "field": "wind_gust", "set": 16.0}]})
        assert r.status_code == 200, r.text

        def replanned() -> PlanEvent | None:
            for event in reversed(plan_events(own_redis)):
                t = event.trigger
                if t is not None and t.consequence is ConsequenceKind.POINTING_RESTRICTION and t.active:
                    return event
            return None

        event = wait_for("the re-plan on the pointing restriction", replanned, procs, 240)
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

            engine = make_engine(sql_url)
            try:
                return VesSyncStore(make_sessionmaker(engine)).history(limit=20)
            finally:
                engine.dispose()

        change = wait_for("the VES rewritten for the re-plan",
                          lambda: next((c for c in ves_history() if c.plan_id == event.plan_id), None), procs, 60)
        assert change.alarm_id == WIND_ALARM
        # What P2 holds is the newest sequence the sync wrote (this one, or a later re-plan's).
        assert ves_ids() == [int(i) for i in ves_history()[0].after]

        def seen() -> bool | None:
            alarms = [p["alarmEvents"]["event"] for p in subs.payloads("alarms")]
            plans = [p["planChanges"] for p in subs.payloads("plans")]
            return True if any(a["alarmId"] == WIND_ALARM for a in alarms) and any(
                p["planId"] == event.plan_id and p["triggerAlarm"] == WIND_ALARM for p in plans) else None

        wait_for("the HMI subscription to see the alarm and the re-plan", seen, procs, 60)
    finally:
        if subs is not None:
            subs.close()
        codes = procs.stop()
    assert codes == dict.fromkeys(procs.procs, 0), {n: procs.log(n)[-1500:] for n, c in codes.items() if c}


def test_a_gcn_notice_becomes_a_too_observed_first(
    tmp_path: Path, own_redis: str, keyspace: str, sql_url: str, cassandra_hosts: list[str],
) -> None:
    import confluent_kafka
    import gcn_kafka
    import yaml
    from astropy import units as u
    from astropy.time import Time

    from config_db.gcn import KafkaConfig, load_gcn_config
    from planner.ephemeris import configure_offline_astropy
    from tests.unit.planner.test_gcn_notices import GUANO_TOPIC, redated

    wall = datetime.now(UTC)
    _, night_time = dark_hours(wall)
    # A Swift/BAT-GUANO burst right overhead (RA = local sidereal time, Dec = the site's latitude), just now.
    configure_offline_astropy()
    site = load_site()
    lst = Time(night_time).sidereal_time("mean", longitude=site.longitude_deg * u.deg).deg
    notice = redated("swift_bat_guano.loc_arcmin.json", night_time, ra=round(float(lst), 3),
                     dec=round(site.latitude_deg, 3), id=[int(wall.timestamp())])

    # librdkafka's mock cluster listens on loopback for as long as its owner lives: the gcn process connects to it.
    owner = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in owner.list_topics(timeout=10).brokers.values())
    shipped = load_gcn_config()
    config = shipped.model_copy(update={
        "topics": {GUANO_TOPIC: shipped.topics[GUANO_TOPIC]},
        "kafka": KafkaConfig(group_id=f"skyops-e2e-{uuid.uuid4().hex[:8]}", poll_timeout_s=0.5, retry_backoff_s=0.5,
                             properties={"bootstrap.servers": bootstrap, "security.protocol": "plaintext",
                                         "log_level": 3}),
    })
    config_file = tmp_path / "gcn.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = base_env(tmp_path, own_redis, keyspace, sql_url, cassandra_hosts)
    env.update({"SKYOPS_CLOCK_START": night_time.isoformat(), "SKYOPS_CLOCK_ANCHOR": wall.isoformat(),
                "SKYOPS_GCN_CONFIG_FILE": str(config_file)})
    procs = Processes(env, tmp_path / "logs")
    try:
        procs.start("planner", "planner", "--sample-obs", str(SAMPLE_OBS_PATH))
        procs.start("gcn", "gcn")
        wait_for("tonight's plan", lambda: next(iter(plan_events(own_redis)), None), procs, 180)

        producer = gcn_kafka.Producer({"bootstrap.servers": bootstrap, "security.protocol": "plaintext"})
        producer.produce(GUANO_TOPIC, notice, partition=0)
        assert producer.flush(10) == 0

        def too_plan() -> PlanEvent | None:
            return next((e for e in plan_events(own_redis) if e.trigger is not None and e.trigger.kind == "too"), None)

        event = wait_for("the re-plan for the ToO", too_plan, procs, 180)
        assert event.trigger is not None
        upcoming = sorted((b for b in event.blocks if b.end > event.trigger.ts), key=lambda b: b.start)
        assert upcoming and upcoming[0].ob_id == event.trigger.ob_id, "the ToO is not the next OB observed"
        assert upcoming[0].ob_type == "ToO"
        assert upcoming[0].start - event.trigger.ts < timedelta(minutes=15)  # at once, not at its best time
    finally:
        codes = procs.stop()
        owner.flush(5)
        del owner
    assert codes == dict.fromkeys(procs.procs, 0), {n: procs.log(n)[-1500:] for n, c in codes.items() if c}


def test_a_dispatcher_killed_and_restarted_loses_no_sample(tmp_path: Path, own_redis: str) -> None:
    """kill -9 of the archive writer: what it had read stays pending under its consumer name, and its restart
    writes it. The processes share real Redis and the SQLite archive file (the consumer-group semantics under
    test are the bus's; the Cassandra adapter passes the same contract tests)."""
    from skyops.archive.sqlite import SqliteArchive
    from skyops.codec import decode_samples
    from skyops.settings import Settings

    ports = {name: free_port() for name in ("asm", "telescope")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}
    env.update({"COLUMNS": "250", "SKYOPS_REDIS_URL": own_redis, "SKYOPS_VAR_DIR": str(tmp_path / "var")})
    settings = Settings(var_dir=tmp_path / "var")
    settings.var_dir.mkdir()
    engine = make_engine(settings.effective_sql_url)
    upgrade(engine)  # once, before the processes start: SQLite has no migration lock between processes
    engine.dispose()

    async def create_archive() -> None:
        archive = SqliteArchive(settings.archive_path, points=load_monitoring().retention_classes())
        await archive.open()
        await archive.close()

    asyncio.run(create_archive())
    procs = Processes(env, tmp_path / "logs")
    bus = redis.Redis.from_url(own_redis)

    def archive_backlog() -> int:
        group = next(g for g in bus.xinfo_groups(MON_SAMPLES) if g["name"] == b"archive")
        return int(group["pending"]) + int(group.get("lag") or 0)

    try:
        procs.start("asm", "asm-simulator", "--port", str(ports["asm"]))
        procs.start("telescope", "telescope-simulator", "--port", str(ports["telescope"]))
        procs.start("collectors", "collectors", "--asm-url", f"http://127.0.0.1:{ports['asm']}/asm/current",
                    "--opcua-endpoint", f"opc.tcp://127.0.0.1:{ports['telescope']}/ntt/")
        procs.start("dispatcher", "dispatcher")
        # Samples flow all the time: a dispatcher keeping up leaves a backlog of a few entries at most.
        wait_for("the dispatcher keeping up", lambda: (bus.xlen(MON_SAMPLES) > 10 and archive_backlog() < 5) or None,
                 procs, 180)

        killed = procs.procs.pop("dispatcher")
        killed.kill()  # kill -9: whatever it read and had not acknowledged stays pending under its name
        killed.wait(timeout=10)
        before = bus.xlen(MON_SAMPLES)
        wait_for("a backlog behind the dead dispatcher", lambda: bus.xlen(MON_SAMPLES) >= before + 20 or None,
                 procs, 120)
        procs.start("dispatcher-restarted", "dispatcher")  # same host and instance: the same consumer name
        procs.procs["collectors"].send_signal(signal.SIGTERM)  # no more weather or telescope samples
        assert procs.procs.pop("collectors").wait(timeout=60) == 0
        # The dispatcher's own status points keep coming, and it acknowledges an entry once the block holding
        # it is written: wait until everything up to the collectors' last entry is written and acknowledged.
        cutoff = bus.xinfo_stream(MON_SAMPLES)["last-generated-id"].decode()

        def key(entry_id: str) -> tuple[int, int]:
            ms, seq = entry_id.split("-")
            return int(ms), int(seq)

        def drained() -> bool | None:
            group = next(g for g in bus.xinfo_groups(MON_SAMPLES) if g["name"] == b"archive")
            if key(group["last-delivered-id"].decode()) < key(cutoff):
                return None
            return True if not bus.xpending_range(MON_SAMPLES, "archive", min="-", max=cutoff, count=1) else None

        wait_for("the backlog written and acknowledged", drained, procs, 180)

        expected: dict[str, set[int]] = {}
        for _, fields in bus.xrange(MON_SAMPLES, max=cutoff):
            batch = decode_samples(fields[b"d"])
            for i, p in enumerate(batch.points):
                expected.setdefault(p, set()).update(int(t) for t in batch.ts_us[batch.point_idx == i])

        async def archived() -> dict[str, set[int]]:
            from skyops.timeutil import from_us

            archive = SqliteArchive(settings.archive_path, points=load_monitoring().retention_classes())
            await archive.open()
            try:
                out = {}
                for point, ts in expected.items():
                    got = await archive.raw(point, from_us(min(ts)), from_us(max(ts) + 1))
                    out[point] = {int(t) for t in got.ts_us}
                return out
            finally:
                await archive.close()

        found = asyncio.run(archived())
        assert sum(len(ts) for ts in expected.values()) > 50
        missing = {p: len(ts - found[p]) for p, ts in expected.items() if ts - found[p]}
        assert missing == {}, f"samples lost: {missing}"
    finally:
        bus.close()
        codes = procs.stop()
    assert codes == dict.fromkeys(procs.procs, 0), {n: procs.log(n)[-1500:] for n, c in codes.items() if c}
