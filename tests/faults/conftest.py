"""The fault suite's own servers (killable: never the shared ones) and the platform running on them."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import make_url

from planner.config import load_site
from planner.ephemeris import compute_night
from planner.service import night_of
from skyops.archive.cassandra import CassandraArchive
from skyops.opdb import make_engine, upgrade
from tests.faults import harness
from tests.support.processes import Processes, fast_alarms, fast_monitoring, listening, p2_ves, wait_for
from tests.support.servers import OwnCassandra, OwnRedis


@dataclass
class FaultServers:
    redis: OwnRedis
    cassandra: OwnCassandra


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[FaultServers]:
    """A Redis and a Cassandra of the fault suite's own, on free ports, stopped and removed at the end."""
    servers = FaultServers(OwnRedis(), OwnCassandra())
    try:
        servers.redis.start()
        servers.cassandra.start()
        yield servers
    finally:
        servers.redis.remove()
        servers.cassandra.remove()


@dataclass
class RunningPlatform:
    scenario: harness.Scenario
    procs: Processes


@pytest.fixture(scope="module")
def platform(fault_servers: FaultServers, postgres_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """Simulators, collectors, dispatcher, logging, alarms, planner and VES sync as `skyops run` processes."""
    tmp = tmp_path_factory.mktemp("faults")
    keyspace = f"faults_{uuid.uuid4().hex[:10]}"
    cassandra = fault_servers.cassandra

    async def create_keyspace() -> None:
        archive = CassandraArchive(cassandra.hosts, port=cassandra.port, keyspace=keyspace)
        await archive.open()  # one client creates the schema: concurrent DDL from many processes can disagree
        await archive.close()

    asyncio.run(create_keyspace())
    admin = make_engine(postgres_url)
    schema = f"faults_{uuid.uuid4().hex[:10]}"
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sql_url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    engine = make_engine(sql_url)
    upgrade(engine)
    engine.dispose()

    wall = datetime.now(UTC)
    site = load_site()
    night = night_of(site, wall) + timedelta(days=1)
    night_time = datetime.fromtimestamp(compute_night(site, night).start_unix, UTC) + timedelta(hours=2)
    s = harness.platform_env(redis_url=fault_servers.redis.url, cassandra_hosts=cassandra.hosts,
                             cassandra_port=cassandra.port, keyspace=keyspace, sql_url=sql_url,
                             var_dir=tmp / "var", clock_start=night_time, clock_anchor=wall)
    # No activation delay and 5 s clear delays, so transitions happen within a test.
    s.env["SKYOPS_ALARMS_RULES_FILE"] = str(fast_alarms(tmp / "alarms.yaml"))
    procs = Processes(s.env, tmp / "logs", harness.commands(s, config=fast_monitoring(tmp / "mon.yaml"),
                                                            p2_state=tmp / "p2"))
    try:
        # The simulators first: clients that find them down back off for up to tens of seconds.
        for name in harness.SIMULATORS:
            procs.start(name)
        for name in harness.SIMULATORS:
            wait_for(f"the {name} simulator listening", functools.partial(listening, s.ports[name]), procs, 120,
                     period_s=0.2)
        for name in procs.commands.keys() - set(harness.SIMULATORS):  # at once: each spends seconds importing
            procs.start(name)
        wait_for("tonight's plan in P2's VES", lambda: True if p2_ves(s.p2) else None, procs, 240,
                 period_s=0.5)
        for name, (stream, group) in harness.CONSUMER_GROUPS.items():
            wait_for(f"{name}'s group {group} on {stream}", harness.lag_of(s, stream, group), procs, 120,
                     period_s=0.5)
        yield RunningPlatform(s, procs)
    finally:
        codes = procs.stop()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
    bad = {n: c for n, c in codes.items() if c != 0}
    assert not bad, f"processes did not stop cleanly: {bad}"
