"""/metrics: plans published by cause, re-plan durations from plan.events, and the VES sync's status."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi.testclient import TestClient

from hmi_api.metrics import Metrics
from skyops.messages import ConsequenceKind, PlanTrigger
from skyops.streams import PLAN_EVENTS
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql_planning import RET, bus
from tests.unit.hmi_api.test_graphql_ves import synced
from tests.unit.hmi_api.test_planops import plan


def test_replan_durations_are_observed_from_plan_events_once(planning: Hmi) -> None:
    metrics, b, now = Metrics(), bus(planning), planning.clock.now()
    alarm = PlanTrigger(kind="consequence", ts=now - timedelta(seconds=1.5), reason="wind", alarm_id="Wind.ASM:1",
                        consequence=ConsequenceKind.CLOSE_DOME)
    manual = PlanTrigger(kind="manual", ts=now - timedelta(seconds=4), reason="clouds", user="otto")

    async def run() -> tuple[int, int, int]:
        await b.publish(PLAN_EVENTS, plan(plan_id="old").encode(), retention=RET)
        first = await metrics.observe_plans(b)  # notes where the stream ends: "old" is never counted
        for trigger in (None, alarm, manual):
            event = plan(trigger=trigger).model_copy(update={"created": now})
            await b.publish(PLAN_EVENTS, event.encode(), retention=RET)
        await b.publish(PLAN_EVENTS, b"not a plan", retention=RET)
        return first, await metrics.observe_plans(b), await metrics.observe_plans(b)

    assert asyncio.run(run()) == (0, 4, 0)
    value = metrics.registry.get_sample_value
    assert value("skyops_plans_published_total", {"cause": "scheduled"}) == 1
    assert value("skyops_plans_published_total", {"cause": "consequence"}) == 1
    assert value("skyops_replan_duration_seconds_sum", {"cause": "consequence"}) == 1.5
    assert value("skyops_replan_duration_seconds_sum", {"cause": "manual"}) == 4.0
    assert value("skyops_replan_duration_seconds_bucket", {"cause": "manual", "le": "2.0"}) == 0
    assert value("skyops_replan_duration_seconds_bucket", {"cause": "manual", "le": "5.0"}) == 1


def test_metrics_endpoint_shows_the_last_ves_change_and_plan_counts(planning: Hmi) -> None:
    synced(planning, plan())
    with TestClient(planning.app()) as client:
        client.portal.call(planning.services.metrics.refresh, planning.services)
        text = client.get("/metrics").text
    registry = planning.services.metrics.registry
    assert registry.get_sample_value("skyops_ves_last_change_timestamp_seconds") == planning.clock.now().timestamp()
    assert "skyops_ves_last_change_timestamp_seconds 1.7953164e+09" in text
    assert "skyops_replan_duration_seconds" in text
