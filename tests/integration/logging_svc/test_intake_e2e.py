"""Every intake path end to end: HTTP and syslog (UDP, TCP) on loopback → real Redis → consumer → real Cassandra."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from config_db.logging import HttpIntakeConfig, LogFilters, SyslogConfig
from logging_svc.consumer import LogConsumer
from logging_svc.http_intake import HttpIntake, make_app
from logging_svc.syslog_intake import SyslogIntake
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import LogQuery
from skyops.bus import Bus, StreamRetention
from skyops.records import LogRecord

pytestmark = pytest.mark.integration
RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))
MIXED = Path(__file__).parents[2] / "data" / "logging_svc" / "mixed_batch.jsonl"
KEY = "hmi-key-0123456789abcdef"


async def drain(consumer: LogConsumer) -> None:
    while await consumer.run_once():
        pass


async def archived(archive: CassandraArchive, **filters: object) -> list[LogRecord]:
    q = LogQuery(start=datetime(2020, 1, 1, tzinfo=UTC), end=datetime.now(UTC) + timedelta(days=1),
                 newest_first=False, limit=10_000, **filters)  # type: ignore[arg-type]
    return (await archive.query_logs(q)).records


async def wait_until(condition: Callable[[], bool]) -> None:
    """A tiny bounded wait for loopback I/O to arrive."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("loopback I/O did not arrive within 5 s")


@pytest.fixture
async def http_server(real_bus: Bus, names: dict[str, str]) -> AsyncIterator[tuple[str, HttpIntake]]:
    intake = HttpIntake(real_bus, HttpIntakeConfig(keys={"hmi": SecretStr(KEY)}), retention=RETENTION,
                        stream=names["stream"])
    server = uvicorn.Server(uvicorn.Config(make_app(intake), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", intake
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_http_batch_end_to_end_keeps_good_lines(
    http_server: tuple[str, HttpIntake], real_bus: Bus, cassandra: CassandraArchive, names: dict[str, str]
) -> None:
    url, intake = http_server
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        resp = await client.post("/logs", content=MIXED.read_bytes(), headers={"Authorization": f"Bearer {KEY}"})
        assert resp.status_code == 200
        assert resp.json()["accepted"] == 4 and resp.json()["rejected"] == 8
        denied = await client.post("/logs", content=b'{"message": "x"}\n', headers={"Authorization": "Bearer no"})
        assert denied.status_code == 401
    assert intake.stats.rejected_total == 8 and intake.auth_failures == 1
    consumer = LogConsumer(real_bus, cassandra, consumer="c1", stream=names["stream"], live_channel=names["live"],
                           block_ms=50)
    await drain(consumer)
    got = await archived(cassandra, sources=("hmi",))
    assert sorted(r.message for r in got) == sorted(
        ["user anna logged in", "slow page", "epoch seconds, numeric level", "offset converted to UTC"])


async def test_syslog_udp_and_tcp_end_to_end_with_garbage_refused(
    real_bus: Bus, cassandra: CassandraArchive, names: dict[str, str]
) -> None:
    config = SyslogConfig(udp_port=0, tcp_port=0, hosts={"dome-plc": "dome"}, max_message_bytes=2000)
    intake = SyslogIntake(real_bus, config, retention=RETENTION, stream=names["stream"])
    await intake.start()
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in range(20):
                udp.sendto(f"<13>Nov 22 03:14:{i:02d} dome-plc shutterd[881]: udp {i}".encode(), intake.udp_address)
            udp.sendto(b"not syslog at all", intake.udp_address)
            udp.sendto(b"<13>" + b"x" * 3000, intake.udp_address)
        finally:
            udp.close()
        _, writer = await asyncio.open_connection(*intake.tcp_address)
        msg = b"<165>1 2026-11-22T03:14:15Z ups1 upsd - - [ups@1 load=\"42\"] on battery"
        writer.write(b"%d %s" % (len(msg), msg) + b"<11>Nov 22 03:15:00 ccd ccdtemp: too warm\n<bad>\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: intake.received >= 25)
    finally:
        await intake.stop()
    assert intake.stats.accepted == 22
    assert intake.stats.rejected == {"syslog_garbage": 2, "oversize": 1}
    consumer = LogConsumer(real_bus, cassandra, consumer="c1", stream=names["stream"], live_channel=names["live"],
                           filters=LogFilters(), block_ms=50)
    await drain(consumer)
    dome = await archived(cassandra, sources=("dome",))
    assert sorted(r.message for r in dome) == sorted(f"udp {i}" for i in range(20))
    devices = await archived(cassandra, sources=("devices",))
    assert {(r.host, r.component, r.message) for r in devices} == {
        ("ups1", "upsd", "on battery"), ("ccd", "ccdtemp", "too warm")}
    ups = next(r for r in devices if r.host == "ups1")
    assert ups.attributes["ups@1.load"] == "42" and ups.level == 20
