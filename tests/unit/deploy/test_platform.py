"""The parts `skyops up` and `skyops run` are made of: configuration for the simulators, servers that stop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from config_db.monitoring import load_monitoring
from deploy.factory import open_platform
from deploy.platform import Assembly, add_gcn, asgi_part, bind, monitoring_config
from skyops.settings import Settings
from skyops.timeutil import FakeClock


def test_sources_point_at_the_simulators_and_polls_follow_the_clock_speed() -> None:
    shipped = load_monitoring()
    config = monitoring_config(asm_url="http://127.0.0.1:9/asm/current", opcua_endpoint="opc.tcp://127.0.0.1:9/ntt/",
                               speed=60)
    assert [s.url for s in config.sources.asm] == ["http://127.0.0.1:9/asm/current"]
    assert [s.endpoint for s in config.sources.opcua] == ["opc.tcp://127.0.0.1:9/ntt/"]
    assert config.sources.asm[0].poll_period_s == pytest.approx(shipped.sources.asm[0].poll_period_s / 60, abs=0.05)
    assert config.points == shipped.points
    same = monitoring_config()
    assert same.sources == shipped.sources  # nothing named, nothing changed


def test_an_accelerated_poll_never_goes_below_the_floor() -> None:
    config = monitoring_config(speed=10_000)
    assert config.sources.asm[0].poll_period_s == 0.2


def test_a_simulator_process_has_no_backends() -> None:
    asm = Assembly(None, FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
    with pytest.raises(RuntimeError, match="without backends"):
        _ = asm.p


async def test_an_asgi_part_serves_until_stopped_and_frees_its_port() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    part = asgi_part("test", app, sock, lifespan="off")
    stop = asyncio.Event()
    task = asyncio.create_task(part.run(stop))
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if part.health()[0]:
                break
            await asyncio.sleep(0.01)  # uvicorn starting on a real socket
        assert (await client.get(f"http://127.0.0.1:{port}/ping")).json() == {"pong": "yes"}
    stop.set()
    await asyncio.wait_for(task, 10)
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/ping", timeout=2)


async def test_gcn_without_credentials_is_left_out_of_up_but_refused_by_run(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SKYOPS_GCN_CLIENT_ID", "SKYOPS_GCN_CLIENT_SECRET", "SKYOPS_GCN_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    platform = await open_platform(Settings(var_dir=tmp_path))
    asm = Assembly.of(platform)
    try:
        assert await add_gcn(asm, required=False) is False
        assert asm.parts == []
        with pytest.raises(ValueError, match="SKYOPS_GCN_CLIENT_ID"):
            await add_gcn(asm, required=True)
    finally:
        await asm.aclose()
        await platform.close()


async def test_a_dispatcher_archives_the_points_its_config_file_adds(tmp_path: Path) -> None:
    from config_db.monitoring import PointConfig
    from deploy.platform import add_monitoring

    shipped = monitoring_config()
    config = shipped.model_copy(update={"points": [*shipped.points, PointConfig(name="lab.test.extra")]})
    platform = await open_platform(Settings(var_dir=tmp_path))
    asm = Assembly.of(platform)
    try:
        assert "lab.test.extra" not in platform.archive.known_points()
        add_monitoring(asm, config, consumer="t", collect=False)
        assert platform.archive.known_points()["lab.test.extra"] == "standard"
    finally:
        await asm.aclose()
        await platform.close()
