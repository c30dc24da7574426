"""The planner wired as `deploy` builds it: SQLite OB store, in-process bus, jobs; a trigger becomes a plan."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from planner.factory import build
from planner.store import AutoObCreate
from skyops.bus import PAYLOAD_FIELD, Bus
from skyops.messages import ConsequenceKind, PlanTrigger, decode_plan_event
from skyops.settings import Settings
from skyops.streams import PLAN_EVENTS, PLAN_TRIGGERS
from skyops.timeutil import FakeClock

EVENING = datetime(2025, 3, 21, 1, 0, tzinfo=UTC)  # 22:00 in Chile


async def test_build_wires_store_service_and_jobs(tmp_path: Path) -> None:
    bus = Bus(FakeRedis(server=FakeServer(), decode_responses=False))
    planner = build(Settings(var_dir=tmp_path), bus=bus, clock=FakeClock(EVENING))
    try:
        for mid in range(1, 8):
            planner.store.create_auto_ob(
                data=AutoObCreate(mid=mid, target_name=f"AT{mid}", ra_deg=mid * 25.0, dec_deg=-40.0, magnitude=17.5),
                now=EVENING - timedelta(days=1),
            )
        trigger = PlanTrigger(
            kind="consequence",
            ts=EVENING,
            reason="seeing 1.6 arcsec",
            alarm_id="Seeing.ASM:1",
            consequence=ConsequenceKind.SEEING_LIMIT,
            seeing_limit_arcsec=1.6,
        )
        await bus.redis.xadd(PLAN_TRIGGERS, {PAYLOAD_FIELD: trigger.encode()})

        assert await planner.service.consumer(block_ms=10).run_once() == 1

        plans = [decode_plan_event(f[PAYLOAD_FIELD]) for _, f in await bus.redis.xrange(PLAN_EVENTS)]
        # The first trigger of a night plans it, then re-plans it for the trigger.
        assert [p.plan_id for p in plans] == ["2025-03-20#1", "2025-03-20#2"]
        assert plans[1].trigger == trigger
        assert (tmp_path / "skyops.sqlite3").exists()
        assert {job.id for job in planner.jobs.get_jobs()} == {"afternoon-plan", "auto-clean-obs", "morning-report"}

        stop = asyncio.Event()
        stop.set()
        await planner.run(stop)  # starts and stops the jobs cleanly when asked to stop at once
    finally:
        planner.close()
