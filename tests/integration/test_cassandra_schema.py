"""The Cassandra archive's schema creation on a real node: concurrent processes, and no DDL when it exists."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Callable
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
from cassandra.cluster import Cluster

from skyops.archive.cassandra import CassandraArchive
from tests.support.races import at_once

pytestmark = pytest.mark.integration

PROCESSES = 2
DEADLINE_S = 180  # a fresh keyspace is a dozen tables and an index: seconds each on a busy node


def _open_archive(hosts: list[str], keyspace: str, barrier: Barrier, results: multiprocessing.Queue[str]) -> None:
    """One process of the race: wait for the other, then open (and so create the schema)."""

    async def run() -> None:
        archive = CassandraArchive(hosts, keyspace=keyspace)
        try:
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait, DEADLINE_S)
            await archive.open()
            await archive.ping()
        finally:
            await archive.close()

    try:
        asyncio.run(run())
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")


class RecordingArchive(CassandraArchive):
    """The real adapter, noting every CREATE it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.creates: list[str] = []

    def _connect(self) -> Any:
        session = super()._connect()
        execute: Callable[..., Any] = session.execute

        def recording(query: Any, *args: Any, **kwargs: Any) -> Any:
            cql = str(getattr(query, "query_string", query))
            if cql.lstrip().upper().startswith("CREATE"):
                self.creates.append(cql)
            return execute(query, *args, **kwargs)

        session.execute = recording
        return session


@pytest.fixture
async def keyspace(cassandra_hosts: list[str]) -> AsyncIterator[str]:
    name = f"t_schema_{uuid.uuid4().hex[:12]}"
    yield name

    def drop() -> None:
        cluster = Cluster(cassandra_hosts, protocol_version=5)
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {name}")
        finally:
            cluster.shutdown()

    await asyncio.get_running_loop().run_in_executor(None, drop)


async def _tables(archive: CassandraArchive) -> set[str]:
    rows = await archive._run(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (archive.keyspace,))
    return {r.table_name for r in rows}


@pytest.mark.timeout(DEADLINE_S + 60)
async def test_two_processes_creating_one_fresh_keyspace_at_once_both_succeed(
    cassandra_hosts: list[str], keyspace: str
) -> None:
    outcomes = await asyncio.to_thread(at_once, _open_archive, (cassandra_hosts, keyspace), processes=PROCESSES,
                                       deadline_s=DEADLINE_S)

    assert outcomes == ["ok"] * PROCESSES
    after = RecordingArchive(cassandra_hosts, keyspace=keyspace)
    try:
        await after.open()
        assert after.creates == [], "the schema both processes made is complete"
        assert {"logs", "latest_points", "agg_1m", "alarm_history_by_day"} <= await _tables(after)
        cluster = after._cluster
        assert cluster is not None
        assert cluster.control_connection.wait_for_schema_agreement(wait_time=10)
    finally:
        await after.close()


@pytest.mark.timeout(DEADLINE_S)
async def test_an_existing_schema_is_left_alone_and_only_what_is_missing_is_created(
    cassandra_hosts: list[str], keyspace: str
) -> None:
    first = RecordingArchive(cassandra_hosts, keyspace=keyspace)
    try:
        await first.open()
        assert first.creates, "a fresh keyspace is created"
        await first._run(f"DROP TABLE {keyspace}.log_hours", ())
    finally:
        await first.close()

    second = RecordingArchive(cassandra_hosts, keyspace=keyspace)
    try:
        await second.open()
        assert len(second.creates) == 1 and f"{keyspace}.log_hours" in second.creates[0]
        assert "log_hours" in await _tables(second)
    finally:
        await second.close()

    third = RecordingArchive(cassandra_hosts, keyspace=keyspace)
    try:
        await third.open()
        assert third.creates == [], "a complete schema sends no DDL"
    finally:
        await third.close()
