"""HTTP intake: authentication per source, partial acceptance, limits, and a bus that is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fakeredis import FakeServer
from pydantic import SecretStr

from config_db.logging import HttpIntakeConfig
from logging_svc.http_intake import HttpIntake, make_app
from skyops import streams
from skyops.bus import Bus, StreamRetention
from skyops.records import LogRecord
from skyops.timeutil import FakeClock
from tests.unit.logging_svc.conftest import stream_records

RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))
MIXED = Path(__file__).parents[2] / "data" / "logging_svc" / "mixed_batch.jsonl"
HMI_KEY = "hmi-key-0123456789abcdef"
DEPLOY_KEY = "deploy-key-0123456789abcdef"


@pytest.fixture
def intake(bus: Bus, clock: FakeClock) -> HttpIntake:
    config = HttpIntakeConfig(keys={"hmi": SecretStr(HMI_KEY), "deploy": SecretStr(DEPLOY_KEY)},
                              max_line_bytes=66_560, max_body_bytes=400_000, records_per_entry=2)
    return HttpIntake(bus, config, retention=RETENTION, clock=clock)


@pytest.fixture
async def client(intake: HttpIntake) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(intake))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as c:
        yield c


async def on_bus(bus: Bus) -> list[LogRecord]:
    return [r for batch in await stream_records(bus.redis) for r in batch]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_mixed_batch_is_partly_accepted_with_a_reason_per_line(
    client: httpx.AsyncClient, intake: HttpIntake, bus: Bus
) -> None:
    resp = await client.post("/logs", content=MIXED.read_bytes(), headers=auth(HMI_KEY))
    assert resp.status_code == 200
    body = resp.json()
    assert body["accepted"] == 4 and body["rejected"] == 8
    assert {e["line"]: e["kind"] for e in body["errors"]} == {
        3: "malformed_json", 5: "invalid_utf8", 6: "unknown_level", 7: "source_mismatch", 8: "invalid_field",
        9: "invalid_field", 11: "oversize", 13: "invalid_field",
    }
    assert all(e["reason"] for e in body["errors"])
    records = await on_bus(bus)
    assert len(records) == 4 and {r.source for r in records} == {"hmi"}
    assert await bus.length(streams.LOG_RECORDS) == 2  # two records per entry
    assert intake.stats.accepted == 4
    assert intake.stats.rejected_total == 8 and intake.stats.rejected["invalid_field"] == 3  # type: ignore[index]


async def test_the_key_decides_the_source(client: httpx.AsyncClient, bus: Bus) -> None:
    resp = await client.post("/logs", content=b'{"message": "deployed"}\n', headers=auth(DEPLOY_KEY))
    assert resp.json()["accepted"] == 1
    assert [r.source for r in await on_bus(bus)] == ["deploy"]


@pytest.mark.parametrize("headers", [{}, auth("wrong-key-0123456789"), {"Authorization": "Basic eDp5"}])
async def test_requests_without_a_valid_key_are_refused(
    client: httpx.AsyncClient, bus: Bus, headers: dict[str, str]
) -> None:
    resp = await client.post("/logs", content=b'{"message": "x"}\n', headers=headers)
    assert resp.status_code == 401
    assert resp.json()["detail"]
    assert await on_bus(bus) == []


async def test_a_batch_of_only_bad_lines_is_a_client_error(client: httpx.AsyncClient) -> None:
    resp = await client.post("/logs", content=b"{oops\n\xff\n", headers=auth(HMI_KEY))
    assert resp.status_code == 422
    assert [e["kind"] for e in resp.json()["errors"]] == ["malformed_json", "invalid_utf8"]


async def test_an_oversize_body_is_refused_whole(client: httpx.AsyncClient, bus: Bus) -> None:
    body = b'{"message": "x"}\n' * 30_000
    resp = await client.post("/logs", content=body, headers=auth(HMI_KEY))
    assert resp.status_code == 413
    assert "limit" in resp.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(30):
            yield b'{"message": "x"}\n' * 1000

    resp = await client.post("/logs", content=chunks(), headers=auth(HMI_KEY))
    assert resp.status_code == 413
    assert await on_bus(bus) == []


async def test_a_down_bus_answers_503_and_counts_nothing(
    client: httpx.AsyncClient, intake: HttpIntake, server: FakeServer
) -> None:
    server.connected = False
    resp = await client.post("/logs", content=b'{"message": "x"}\n', headers=auth(HMI_KEY))
    assert resp.status_code == 503
    assert "retry" in resp.json()["detail"]
    assert intake.stats.accepted == 0


def test_keys_must_be_long_and_distinct() -> None:
    with pytest.raises(ValueError, match="shorter than 16"):
        HttpIntakeConfig(keys={"hmi": SecretStr("short")})
    with pytest.raises(ValueError, match="share one key"):
        HttpIntakeConfig(keys={"hmi": SecretStr(HMI_KEY), "deploy": SecretStr(HMI_KEY)})


async def test_a_large_batch_is_parsed_off_the_event_loop_with_the_same_result(
    client: httpx.AsyncClient, bus: Bus
) -> None:
    good = b'{"message": "' + b"y" * 100 + b'"}\n'
    body = good * 1500 + b"{broken\n" + good * 900  # about 280 KB: above the inline-parse size
    resp = await client.post("/logs", content=body, headers=auth(HMI_KEY))
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 2400
    assert [(e["line"], e["kind"]) for e in resp.json()["errors"]] == [(1501, "malformed_json")]
    assert len(await on_bus(bus)) == 2400
