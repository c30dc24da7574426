"""Alarm operations through GraphQL, answered by the real alarm supervisor over the bus."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from alarms.config import AlarmsConfig
from alarms.factory import AlarmSettings, build_service, build_supervisor
from alarms.supervisor import AlarmSupervisor
from skyops import codec, streams
from skyops.bus import Bus, StreamRetention
from skyops.records import Sample, SampleBatch
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import gql, login

RET = StreamRetention(max_len=1000, max_age=timedelta(days=1))
CONFIG = AlarmsConfig.model_validate({"rules": [
    {"kind": "threshold", "name": "Humidity", "instance": "ASM:1", "guidance": "close the dome above 90 %",
     "point": "lasilla.asm.humidity", "threshold": {"levels": {"warning": 80, "critical": 90}},
     "max_age_s": 600, "consequence": {"kind": "close_dome", "min_severity": "CRITICAL"}},
]})
ALARM_FIELDS = "alarmId status severity latched acked guidance consequence shelvedUntil"


class Running:
    def __init__(self, client: TestClient, bus: Bus, supervisor: AlarmSupervisor, hmi: Hmi) -> None:
        self.client, self.bus, self.supervisor, self.hmi = client, bus, supervisor, hmi

    def humidity(self, value: float, after_s: float) -> None:
        batch = SampleBatch.from_samples([Sample("lasilla.asm.humidity", self.hmi.clock.now()
                                                 + timedelta(seconds=after_s), value)])
        self.client.portal.call(functools.partial(
            self.bus.publish, streams.MON_SAMPLES, codec.encode_samples(batch), retention=RET))
        self.client.portal.call(self.supervisor.samples.run_once)


@pytest.fixture
def running(hmi: Hmi, tmp_path: Path) -> Iterator[Running]:
    bus = Bus(fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()), clock=hmi.clock)
    supervisor = build_supervisor(bus, hmi.clock, config=CONFIG,
                                  settings=AlarmSettings(state_file=tmp_path / "alarms.json"))
    hmi.services.alarms = build_service(bus, None, hmi.clock, timeout_s=5)
    with TestClient(hmi.app()) as client:
        stop = asyncio.Event()
        client.portal.call(supervisor.start)
        client.portal.start_task_soon(supervisor.commands.run, stop)
        try:
            yield Running(client, bus, supervisor, hmi)
        finally:
            client.portal.call(stop.set)


def q(r: Running, query: str, user: str, **variables: Any) -> dict[str, Any]:
    return gql(r.client, query, login(r.client, user), **variables)


def test_operator_acks_shelves_and_comments(running: Running) -> None:
    running.humidity(85.0, 1)
    running.humidity(95.0, 2)
    (a,) = q(running, f"{{ alarms {{ {ALARM_FIELDS} }} }}", "otto")["data"]["alarms"]
    assert (a["alarmId"], a["severity"], a["acked"]) == ("Humidity.ASM:1", "CRITICAL", False)
    assert a["guidance"] == "close the dome above 90 %"
    assert a["consequence"] == "close_dome"

    ack = f'mutation($s: String) {{ ackAlarm(alarmId: "Humidity.ASM:1", comment: "closing", seenSeverity: $s) ' \
          f"{{ {ALARM_FIELDS} }} }}"
    refused = q(running, ack, "otto", s="WARNING")
    assert "rose to CRITICAL since WARNING" in refused["errors"][0]["message"]
    acked = q(running, ack, "otto", s="CRITICAL")["data"]["ackAlarm"]
    assert acked["acked"] is True

    shelved = q(running, 'mutation { shelveAlarm(alarmId: "Humidity.ASM:1", comment: "sensor wet", hours: 2) '
                         "{ shelvedUntil } }", "otto")["data"]["shelveAlarm"]
    assert shelved["shelvedUntil"] is not None
    assert q(running, 'mutation { shelveAlarm(alarmId: "Humidity.ASM:1", comment: "x", hours: 0) { status } }',
             "otto")["errors"][0]["message"].startswith("hours must be")
    q(running, 'mutation { unshelveAlarm(alarmId: "Humidity.ASM:1", comment: "dry") { status } }', "otto")
    q(running, 'mutation { commentAlarm(alarmId: "Humidity.ASM:1", comment: "dome closed 03:01") { status } }',
      "sam")
    shelve_audit = [details for _, action, details in running.hmi.audited if action == "alarm.shelve"]
    assert shelve_audit[0]["until"] == shelved["shelvedUntil"].replace("Z", "+00:00")
    actions = [(user, action) for user, action, _ in running.hmi.audited if action.startswith("alarm.")]
    assert actions == [("otto", "alarm.ack"), ("otto", "alarm.shelve"), ("otto", "alarm.unshelve"),
                       ("sam", "alarm.comment")]


@pytest.mark.parametrize("mutation", [
    'mutation { ackAlarm(alarmId: "Humidity.ASM:1", comment: "x") { status } }',
    'mutation { shelveAlarm(alarmId: "Humidity.ASM:1", comment: "x", hours: 1) { status } }',
    'mutation { unshelveAlarm(alarmId: "Humidity.ASM:1", comment: "x") { status } }',
])
def test_science_users_may_not_act_on_alarms(running: Running, mutation: str) -> None:
    running.humidity(95.0, 1)
    assert "may not" in q(running, mutation, "sam")["errors"][0]["message"]
    assert gql(running.client, mutation)["errors"][0]["message"] == "log in first"


def test_unknown_alarm_is_reported(running: Running) -> None:
    out = q(running, 'mutation { ackAlarm(alarmId: "Nope.X:1", comment: "x") { status } }', "otto")
    assert "no alarm named" in out["errors"][0]["message"]


def test_metrics_report_streams_lags_subscriptions_and_alarms(running: Running) -> None:
    from hmi_api.live import LiveFeeds

    running.hmi.services.live = LiveFeeds.on(running.bus, block_ms=50)
    running.humidity(95.0, 1)
    metrics = running.hmi.services.metrics
    running.client.portal.call(metrics.refresh, running.hmi.services)
    text = running.client.get("/metrics").text
    assert 'skyops_stream_length{stream="mon.samples"} 1.0' in text
    assert 'skyops_stream_lag{group="alarms",stream="mon.samples"} 0.0' in text
    assert 'skyops_alarms_active{severity="CRITICAL"} 1.0' in text
    assert 'skyops_hmi_live_subscriptions{feed="alarms"} 0.0' in text
