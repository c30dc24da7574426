"""`skyops status`: heartbeats, consumer-group lags and health points make one report, unhealthy if any part is."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from typer.testing import CliRunner

from config_db.monitoring import PointConfig, load_monitoring
from deploy.cli import app
from deploy.factory import open_platform
from deploy.runner import HEARTBEATS_KEY, Heartbeat
from deploy.status import StatusReport, gather_status, group_rows, health_points, heartbeat_rows, point_rows, render
from skyops.bus import Bus, StreamRetention
from skyops.records import Quality, Sample
from skyops.settings import Settings
from skyops.streams import MON_SAMPLES, PLAN_EVENTS

NOW = datetime(2026, 3, 21, 2, 0, tzinfo=UTC)
RETENTION = StreamRetention(max_len=1000, max_age=timedelta(days=1))


def beat(part: str, *, age_s: float = 1, healthy: bool = True, state: str = "running", detail: str = "") -> bytes:
    return Heartbeat(part=part, ts=NOW - timedelta(seconds=age_s), healthy=healthy, detail=detail, state=state,
                     process="skyops-run", host="ntt-ops1", pid=4242).encode().encode()


def test_heartbeats_are_healthy_only_when_running_recent_and_well() -> None:
    raw = {b"planner": beat("planner"), b"alarms": beat("alarms", age_s=60),
           b"ves-sync": beat("ves-sync", healthy=False, detail="P2 unreachable"),
           b"hmi": beat("hmi", state="stopped"), b"junk": b"{"}
    rows = {r.name: r for r in heartbeat_rows(raw, now=NOW, stale_after_s=15)}
    assert rows["planner"].healthy and rows["planner"].age_s == 1
    assert "ntt-ops1" in rows["planner"].detail
    assert not rows["alarms"].healthy and "silent for 60 s" in rows["alarms"].detail
    assert not rows["ves-sync"].healthy and "P2 unreachable" in rows["ves-sync"].detail
    assert not rows["hmi"].healthy and "stopped" in rows["hmi"].detail
    assert not rows["junk"].healthy and "malformed" in rows["junk"].detail


async def test_a_group_behind_by_more_than_the_limit_is_unhealthy() -> None:
    bus = Bus(FakeRedis(server=FakeServer(), decode_responses=False))
    await bus.ensure_group(MON_SAMPLES, "archive")
    await bus.ensure_group(MON_SAMPLES, "live")
    await bus.publish_many(MON_SAMPLES, [b"x"] * 5, retention=RETENTION)
    await bus.read(MON_SAMPLES, "live", "live-1", count=10, block_ms=None)
    await bus.ack(MON_SAMPLES, "live", [e.id for e in await bus.range_after(MON_SAMPLES, "0", count=10)])
    rows = {r.name: r for r in await group_rows(bus, max_lag=3)}
    assert not rows["mon.samples/archive"].healthy
    assert rows["mon.samples/archive"].detail.startswith("lag 5")
    assert rows["mon.samples/live"].healthy
    assert PLAN_EVENTS + "/ves_sync" not in rows  # a stream nobody produced to yet is no problem
    await bus.redis.aclose()


def test_health_points_down_or_stale_are_unhealthy() -> None:
    points = [PointConfig(name="skyops.collectors.asm.up", kind="bool"),
              PointConfig(name="skyops.ves_sync.lag_s", unit="s"),
              PointConfig(name="skyops.collectors.opcua.up", kind="bool"),
              PointConfig(name="skyops.collectors.dispatcher.up", kind="bool")]
    latest = {"skyops.collectors.asm.up": Sample("skyops.collectors.asm.up", NOW - timedelta(seconds=5), False),
              "skyops.ves_sync.lag_s": Sample("skyops.ves_sync.lag_s", NOW - timedelta(seconds=900), 1.5),
              "skyops.collectors.opcua.up": Sample("skyops.collectors.opcua.up", NOW, True, Quality.GOOD)}
    rows = {r.name: r for r in point_rows(points, latest, now=NOW, stale_after_s=300)}
    assert not rows["skyops.collectors.asm.up"].healthy and "down" in rows["skyops.collectors.asm.up"].detail
    assert not rows["skyops.ves_sync.lag_s"].healthy and "not updated for 900 s" in rows["skyops.ves_sync.lag_s"].detail
    assert rows["skyops.collectors.opcua.up"].healthy
    assert rows["skyops.collectors.dispatcher.up"].healthy and rows["skyops.collectors.dispatcher.up"].detail == (
        "no value yet")


def test_health_points_are_the_skyops_points_of_the_config() -> None:
    names = {p.name for p in health_points(load_monitoring())}
    assert "skyops.ves_sync.alive" in names and "skyops.collectors.asm.up" in names
    assert not any(n.startswith("lasilla.") for n in names)


async def test_the_report_of_an_embedded_platform_with_a_dead_process(tmp_path: Path) -> None:
    platform = await open_platform(Settings(var_dir=tmp_path))
    try:
        await platform.bus.ensure_group("e2e.custom", "readers")
        await platform.redis.hset(HEARTBEATS_KEY, mapping={"planner": beat("planner", age_s=2),
                                                           "dispatcher": beat("dispatcher", age_s=120)})
        report = await gather_status(platform, load_monitoring(), wall_now=NOW)
        rows = {(r.kind, r.name): r for r in report.rows}
        assert rows["backend", "archive"].healthy
        assert rows["part", "planner"].healthy
        assert ("group", "e2e.custom/readers") in rows  # a stream no kernel constant names is shown too
        assert not rows["part", "dispatcher"].healthy
        assert not report.healthy
        again = StatusReport.from_dict(report.as_dict())
        assert again == report
        assert render(report).row_count == len(report.rows)
    finally:
        await platform.redis.delete(HEARTBEATS_KEY, "e2e.custom")
        await platform.close()


def test_a_report_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a status report"):
        StatusReport.from_dict({"rows": [{"kind": "part"}]})


def test_status_of_an_unreachable_platform_exits_2_with_the_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = CliRunner().invoke(app, ["status", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert "status unavailable" in result.output
