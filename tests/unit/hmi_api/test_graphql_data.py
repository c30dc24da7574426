"""GraphQL data queries over the archive: latest values, binned time series, logs, alarm history."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from skyops.archive.sqlite import SqliteArchive
from skyops.records import AlarmEvent, AlarmSeverity, LogRecord, Quality, Sample, SampleBatch
from skyops.timeutil import to_us
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import gql, login


@pytest.fixture
def data(hmi: Hmi, tmp_path: Path) -> Iterator[Hmi]:
    archive = SqliteArchive(tmp_path / "archive.sqlite3", points={
        "lasilla.asm.wind_speed": "standard", "ntt.tcs.state": "standard", "lasilla.asm.seeing": "standard"})
    t0 = hmi.clock.now() - timedelta(hours=1)
    n = 3600
    values = np.sin(np.arange(n) / 200.0) * 5 + 10
    values[100:200] = np.nan

    async def fill() -> None:
        await archive.open()
        await archive.write_samples(SampleBatch.from_floats(
            ["lasilla.asm.wind_speed"], np.zeros(n), to_us(t0) + np.arange(n) * 1_000_000, values))
        await archive.write_samples(SampleBatch.from_samples([
            Sample("ntt.tcs.state", t0, "TRACKING"), Sample("lasilla.asm.seeing", t0, None, Quality.BAD)]))
        await archive.write_logs([
            LogRecord(ts=t0 + timedelta(seconds=i), level=30 if i % 2 else 20, source="planner", message=f"m{i}",
                      attributes={"i": str(i)}) for i in range(30)])
        await archive.write_alarm_events([
            AlarmEvent(alarm_id="WindSpeed.ASM:1", ts=t0 + timedelta(minutes=i), seq=i, action="transition",
                       severity=AlarmSeverity.SERIOUS, reason="wind") for i in range(3)])

    asyncio.run(fill())
    hmi.services.archive = archive
    yield hmi
    asyncio.run(archive.close())


def test_latest_values_with_nan_as_null_and_bad_quality(data: Hmi) -> None:
    with TestClient(data.app()) as client:
        out = gql(client, "{ latest { point value quality } }", login(client, "otto"))["data"]["latest"]
    by = {x["point"]: x for x in out}
    assert by["ntt.tcs.state"]["value"] == "TRACKING"
    assert by["lasilla.asm.seeing"] == {"point": "lasilla.asm.seeing", "value": None, "quality": "BAD"}
    assert math.isfinite(by["lasilla.asm.wind_speed"]["value"])


def test_time_series_is_binned_on_the_server_with_gaps(data: Hmi) -> None:
    q = """query($s: DateTime!, $e: DateTime!) { timeSeries(points: ["lasilla.asm.wind_speed"], start: $s, end: $e,
           maxPoints: 60) { point resolution binSeconds times count badCount mean min max } }"""
    end = data.clock.now()
    with TestClient(data.app()) as client:
        out = gql(client, q, login(client, "sam"), s=(end - timedelta(hours=1)).isoformat(), e=end.isoformat())
    (series,) = out["data"]["timeSeries"]
    assert series["resolution"] == "1m"
    assert len(series["times"]) <= 60
    assert sum(series["count"]) == 3500
    assert sum(series["badCount"]) == 100
    assert None not in series["mean"][:1]
    # Samples 100–199 are NaN: minute 1 keeps 40 good samples, minute 2 is a gap (null mean), minute 3 has 40.
    assert series["count"][1:4] == [40, 0, 40]
    assert series["mean"][2] is None


def test_time_series_refuses_bad_arguments(data: Hmi) -> None:
    end = data.clock.now()
    q = """query($p: [String!]!, $n: Int!, $s: DateTime!, $e: DateTime!) {
           timeSeries(points: $p, start: $s, end: $e, maxPoints: $n) { point } }"""
    with TestClient(data.app()) as client:
        token = login(client, "otto")
        cases = [
            ({"p": ["lasilla.asm.wind_speed"], "n": 0, "s": end.isoformat(), "e": end.isoformat()}, "maxPoints"),
            ({"p": ["no.such.point"], "n": 10, "s": (end - timedelta(hours=1)).isoformat(), "e": end.isoformat()},
             "unknown monitoring point"),
            ({"p": ["lasilla.asm.wind_speed"], "n": 10, "s": end.isoformat(),
              "e": (end - timedelta(hours=1)).isoformat()}, "not after"),
            ({"p": ["lasilla.asm.wind_speed"], "n": 10, "s": "2026-11-22T00:00:00", "e": end.isoformat()},
             "no timezone"),
        ]
        for variables, message in cases:
            out = gql(client, q, token, **variables)
            assert message in out["errors"][0]["message"], out


def test_logs_filter_and_page(data: Hmi) -> None:
    end = data.clock.now()
    q = """query($f: LogFilter!, $c: String) { logs(filter: $f, limit: 4, cursor: $c) {
           entries { message level attributes } nextCursor } }"""
    f = {"start": (end - timedelta(hours=2)).isoformat(), "end": end.isoformat(), "minLevel": "warning",
         "sources": ["planner"]}
    seen: list[str] = []
    with TestClient(data.app()) as client:
        token = login(client, "otto")
        cursor = None
        while True:
            page = gql(client, q, token, f=f, c=cursor)["data"]["logs"]
            seen += [e["message"] for e in page["entries"]]
            assert all(e["level"] == "WARNING" for e in page["entries"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        bad = gql(client, q, token, f={**f, "minLevel": "LOUD"})
        assert "unknown log level" in bad["errors"][0]["message"]
    assert seen == [f"m{i}" for i in range(29, 0, -2)]


def test_alarm_history(data: Hmi) -> None:
    end = data.clock.now()
    q = """query($s: DateTime!, $e: DateTime!) { alarmHistory(start: $s, end: $e, alarmId: "WindSpeed.ASM:1") {
           alarmId seq severity } }"""
    with TestClient(data.app()) as client:
        out = gql(client, q, login(client, "otto"), s=(end - timedelta(hours=2)).isoformat(), e=end.isoformat())
    assert [x["seq"] for x in out["data"]["alarmHistory"]] == [2, 1, 0]
    assert out["data"]["alarmHistory"][0]["severity"] == "SERIOUS"


def test_data_queries_need_a_login(data: Hmi) -> None:
    with TestClient(data.app()) as client:
        assert gql(client, "{ latest { point } }")["errors"][0]["message"] == "log in first"
