"""The Marshall REST API: key authentication, SOXS replies, and bad input answered with the fields at fault."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from hmi_api.app import create_app
from hmi_api.marshall import KEY_HEADER, marshall_router
from planner.config import load_site
from planner.marshall import MarshallApi
from planner.store import ObStore
from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade
from skyops.timeutil import FakeClock

KEY = "marshall-key-0123456789"
AUTO = {"magnitude_list": [["r", 18.4], ["g", 18.9]], "right_ascension": 50.0, "declination": -30.0,
        "target_name": "SN 2026abc", "transientBucketID": 1001}


@pytest.fixture
def changes() -> list[tuple[int, str]]:
    return []


@pytest.fixture
def client(tmp_path: Path, changes: list[tuple[int, str]]) -> Iterator[TestClient]:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    api = MarshallApi(ObStore(make_sessionmaker(engine), site=load_site()),
                      FakeClock(datetime(2026, 11, 22, 1, 0, tzinfo=UTC)))

    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    async def on_change(ob_id: int, reason: str) -> None:
        changes.append((ob_id, reason))

    router = marshall_router(api, [SecretStr(KEY)], on_change=on_change)
    with TestClient(create_app(health=health, marshall=router)) as c:
        c.headers[KEY_HEADER] = KEY
        yield c
    engine.dispose()


def test_deletes_and_magnitude_updates_are_reported_so_the_plan_can_follow(
    client: TestClient, changes: list[tuple[int, str]]
) -> None:
    ob_id = client.post("/marshall/v1/createAutoOB", json=AUTO).json()["data"]["payload"][0]["OB_ID"]
    assert changes == []  # a new OB waits for the next re-plan
    client.post("/marshall/v1/updateAutoOBMagnitude",
                json={"transientBucketID": 1001, "magnitude_list": [["r", 17.0]]}).raise_for_status()
    client.post("/marshall/v1/deleteOB", json={"OB_ID": ob_id}).raise_for_status()
    assert client.post("/marshall/v1/deleteOB", json={"OB_ID": ob_id}).status_code == 404  # refused: not reported
    assert changes == [(ob_id, f"OB {ob_id} magnitude updated through the Marshall API"),
                       (ob_id, f"OB {ob_id} deleted through the Marshall API")]


def test_calls_without_the_key_are_refused(client: TestClient) -> None:
    for headers in ({KEY_HEADER: "wrong"}, {KEY_HEADER: ""}):
        r = client.post("/marshall/v1/createAutoOB", json=AUTO, headers=headers)
        assert r.status_code == 401
        assert KEY_HEADER in r.json()["detail"]
    del client.headers[KEY_HEADER]
    assert client.get("/marshall/v1/obMarshallShort").status_code == 401


def test_create_update_list_delete(client: TestClient) -> None:
    r = client.post("/marshall/v1/createAutoOB", json=AUTO)
    assert r.status_code == 201, r.text
    ob_id = r.json()["data"]["payload"][0]["OB_ID"]
    assert r.json()["status"] == 1
    dup = client.post("/marshall/v1/createAutoOB", json=AUTO)
    assert dup.status_code == 409
    assert dup.json()["status"] == 0
    upd = client.post("/marshall/v1/updateAutoOBMagnitude",
                      json={"transientBucketID": 1001, "magnitude_list": [["r", 17.0]]})
    assert upd.status_code == 200
    assert upd.json()["data"]["payload"][0]["magnitude"] == 17.0
    short = client.get("/marshall/v1/obMarshallShort").json()["data"]["payload"]
    assert [o["OB_ID"] for o in short] == [ob_id]
    assert client.post("/marshall/v1/deleteOB", json={"OB_ID": ob_id}).status_code == 200
    assert client.post("/marshall/v1/deleteOB", json={"OB_ID": 999_999}).status_code == 404
    assert client.post("/marshall/v1/autoCleanOBs").status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({**AUTO, "right_ascension": 400.0}, "right_ascension"),
    ({**AUTO, "declination": -95.0}, "declination"),
    ({k: v for k, v in AUTO.items() if k != "target_name"}, "target_name"),
    ({**AUTO, "magnitude_list": []}, "magnitude_list"),
    ({**AUTO, "transientBucketID": "abc"}, "transientBucketID"),
])
def test_bad_auto_obs_name_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/marshall/v1/createAutoOB", json=body)
    assert r.status_code == 422
    assert r.json()["status"] == 0
    assert field in r.json()["data"]["message"]


def test_unknown_mid_and_malformed_json(client: TestClient) -> None:
    r = client.post("/marshall/v1/updateAutoOBMagnitude", json={"transientBucketID": 5, "magnitude_list": [["r", 18]]})
    assert r.status_code == 404
    bad = client.post("/marshall/v1/deleteOB", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422
    assert bad.json()["status"] == 0


def test_openapi_documents_every_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for op in ("createAutoOB", "updateAutoOBMagnitude", "createFollowUpOB", "deleteOB", "autoCleanOBs",
               "obMarshallShort"):
        assert f"/marshall/v1/{op}" in paths


@pytest.mark.parametrize(("patch", "field"), [
    ({"exposure_time": 1e308}, "exposure_time"), ({"exposure_time": 0}, "exposure_time"),
    ({"priority": 2**70}, "priority"), ({"transientBucketID": 2**64}, "transientBucketID"),
])
def test_absurd_follow_up_values_are_refused(client: TestClient, patch: dict[str, Any], field: str) -> None:
    body = {"transientBucketID": 7, "ob_name": "fu", "target_name": "SN", "right_ascension": 50.0,
            "declination": -30.0, "exposure_time": 600, **patch}
    r = client.post("/marshall/v1/createFollowUpOB", json=body)
    assert r.status_code == 422
    assert field in r.json()["data"]["message"]
