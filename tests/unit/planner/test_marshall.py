"""The Marshall operations with the SOXS request and reply shapes, good and bad bodies alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from planner.config import load_site
from planner.marshall import MarshallApi
from planner.store import ObState, ObStore
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.timeutil import FakeClock

T0 = datetime(2025, 3, 20, 15, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store() -> Iterator[ObStore]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield ObStore(make_sessionmaker(engine), site=load_site())
    engine.dispose()


@pytest.fixture
def api(store: ObStore, clock: FakeClock) -> MarshallApi:
    return MarshallApi(store, clock)


def auto_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "magnitude_list": [["g", 18.9], ["r", 18.4]],
        "declination": -35.5,
        "target_name": "AT2025abc",
        "transientBucketID": 4242,
        "right_ascension": 150.25,
    }
    return {**body, **changes}


def test_create_auto_ob_replies_201_with_the_ob_id(api: MarshallApi, store: ObStore) -> None:
    reply = api.create_auto_ob(auto_body())

    assert reply.status == 1
    assert reply.http_status == 201
    [payload] = reply.data["payload"]
    ob = store.get(ob_id=payload["OB_ID"])
    assert (ob.mid, ob.magnitude, ob.mag_filter) == (4242, 18.4, "r")  # the brightest band counts


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"right_ascension": 361.0}, 422, "right_ascension"),
        ({"declination": -91.0}, 422, "declination"),
        ({"declination": 60.0}, 422, "never rises"),
        ({"magnitude_list": [["r", 19.7]]}, 422, "19.5"),
        ({"magnitude_list": []}, 422, "magnitude_list"),
        ({"transientBucketID": "x"}, 422, "transientBucketID"),
        ({"colour": "red"}, 422, "colour"),
    ],
)
def test_bad_create_auto_ob_bodies_get_a_clear_4xx(
    api: MarshallApi, store: ObStore, changes: dict[str, Any], code: int, words: str
) -> None:
    reply = api.create_auto_ob(auto_body(**changes))

    assert (reply.status, reply.http_status) == (0, code)
    assert words in reply.data["message"]
    assert store.list() == []


def test_duplicate_mid_is_409_and_the_first_ob_stays(api: MarshallApi, store: ObStore) -> None:
    api.create_auto_ob(auto_body())

    reply = api.create_auto_ob(auto_body(magnitude_list=[["r", 17.0]]))

    assert reply.http_status == 409
    assert [ob.magnitude for ob in store.list()] == [18.4]


def test_update_magnitude_and_unknown_mid(api: MarshallApi) -> None:
    api.create_auto_ob(auto_body())

    reply = api.update_auto_ob_magnitude({"transientBucketID": 4242, "magnitude_list": [["r", 17.3]]})
    missing = api.update_auto_ob_magnitude({"transientBucketID": 1, "magnitude_list": [["r", 17.3]]})

    assert reply.http_status == 200
    assert reply.data["payload"][0]["exposure_time"] == 752.0
    assert (missing.status, missing.http_status) == (0, 404)
    assert "MID 1" in missing.data["message"]


def test_follow_up_needs_a_positive_exposure_time(api: MarshallApi) -> None:
    body = {
        "transientBucketID": 4242,
        "ob_name": "FU_1",
        "target_name": "SN2025x",
        "right_ascension": 20.0,
        "declination": -20.0,
        "exposure_time": 0,
        "setup": {"slit_width_arcsec": 1.5},
    }

    bad = api.create_follow_up_ob(body)
    good = api.create_follow_up_ob({**body, "exposure_time": 1500})

    assert bad.http_status == 422
    assert "exposure_time" in bad.data["message"]
    assert good.http_status == 201


def test_delete_clean_and_short_listing(api: MarshallApi, store: ObStore, clock: FakeClock) -> None:
    first = api.create_auto_ob(auto_body()).data["payload"][0]["OB_ID"]
    second = api.create_auto_ob(auto_body(transientBucketID=7)).data["payload"][0]["OB_ID"]

    assert api.delete_ob({"OB_ID": first}).http_status == 200
    assert api.delete_ob({"OB_ID": first}).http_status == 404
    assert api.delete_ob({"OB_ID": 999}).http_status == 404
    clock.advance(timedelta(weeks=3))
    cleaned = api.auto_clean_obs()

    assert cleaned.data["payload"] == [{"OB_ID": second, "transientBucketID": 7}]
    short = {row["OB_ID"]: row["ESO_OB_Status"] for row in api.ob_marshall_short().data["payload"]}
    assert short == {first: "D", second: "X"}
    assert store.get(ob_id=second).state is ObState.EXPIRED
