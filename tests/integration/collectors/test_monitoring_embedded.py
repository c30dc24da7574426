"""The monitoring subsystem as `deploy` builds it, embedded: ASM simulator → poller → bus → dispatcher → SQLite."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.factory import build_monitoring
from collectors.manager import ComponentState
from collectors.simulators.asm import serve
from config_db.monitoring import MonitoringConfig, load_monitoring
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_built_subsystem_archives_weather_and_its_own_state(tmp_path: Path) -> None:
    base = load_monitoring().model_dump()
    async with serve(seed=5) as (url, _):
        base["sources"]["asm"][0].update(url=url, poll_period_s=0.1)
        base["sources"]["opcua"] = []  # the telescope is covered by its own test
        base["dispatcher"].update(block_ms=20, flush_aggregates_every_s=0.5)
        config = MonitoringConfig.model_validate(base)
        client = FakeRedis(server=FakeServer(version=(7, 0)))
        archive = SqliteArchive(tmp_path / "a.sqlite3", points=config.retention_classes())
        await archive.open()
        mon = build_monitoring(Bus(client), archive, config, consumer_prefix="test")
        mon.manager.status_period_s = 0.2
        try:
            await mon.manager.start()
            async with asyncio.timeout(20):
                while "lasilla.asm.seeing" not in await archive.latest() or \
                        "skyops.collectors.dispatcher.up" not in await archive.latest():  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            states = {s.name: s.state for s in mon.manager.status()}
            assert states["asm.asm"] is ComponentState.RUNNING
            assert states["dispatcher.0"] is ComponentState.RUNNING
        finally:
            await mon.close()
        latest = await archive.latest()
        assert latest["skyops.collectors.asm.up"].value is True
        assert latest["skyops.collectors.dispatcher.up"].value is True
        seeing = latest["lasilla.asm.seeing"]
        history = await archive.raw("lasilla.asm.seeing", seeing.ts - timedelta(minutes=5),
                                    seeing.ts + timedelta(seconds=1))
        assert len(history) >= 1
        await archive.close()
        await client.aclose()
