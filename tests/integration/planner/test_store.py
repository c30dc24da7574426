"""The OB store and the Marshall operations, the same suite on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from planner.config import load_site
from planner.store import (
    AUTO_LIFETIME,
    AutoObCreate,
    FollowUpObCreate,
    NotObservableError,
    ObCreate,
    ObState,
    ObStore,
    ObType,
    TimeShare,
    auto_exposure_s,
)
from skyops.errors import ConflictError, NotFoundError
from skyops.opdb import make_sessionmaker, upgrade
from skyops.opdb.models import Base
from tests.support.opdb import BACKENDS, empty_engine

T0 = datetime(2025, 3, 14, 18, 30, tzinfo=UTC)

@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database (never migrated) of the requested backend."""
    with empty_engine(request, tmp_path) as e:
        yield e


@pytest.fixture
def store(engine: Engine) -> ObStore:
    upgrade(engine)
    return ObStore(make_sessionmaker(engine), site=load_site())


def auto(mid: int = 101, **changes: object) -> AutoObCreate:
    values: dict[str, object] = {
        "mid": mid,
        "target_name": "AT2025abc",
        "ra_deg": 150.25,
        "dec_deg": -35.5,
        "magnitude": 18.4,
        "mag_filter": "r",
    }
    return AutoObCreate.model_validate({**values, **changes})


def follow_up(mid: int = 101, **changes: object) -> FollowUpObCreate:
    values: dict[str, object] = {
        "mid": mid,
        "name": "FU_1",
        "target_name": "SN2025xyz",
        "ra_deg": 10.0,
        "dec_deg": -20.0,
        "exposure_s": 1200.0,
        "priority": 2,
        "constraints": {"max_airmass": 1.8, "twilight": "astronomical", "max_seeing_arcsec": 1.2},
        "setup": {"slit_width_arcsec": 1.0, "binning": "1x1"},
    }
    return FollowUpObCreate.model_validate({**values, **changes})


# --- schema ----------------------------------------------------------------------------------------


def test_migration_creates_the_planner_tables_as_the_models_say(engine: Engine) -> None:
    upgrade(engine)

    assert {"planner_obs", "planner_ob_history"} <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # Other services' tables may be migrated without their models imported here; ours must match exactly.
    ours = [d for d in diff if "planner_" in repr(d)]
    assert ours == []


def test_schema_refuses_an_unknown_state(store: ObStore, engine: Engine) -> None:
    ob = store.create_auto_ob(data=auto(), now=T0)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE planner_obs SET state = 'lost' WHERE id = :id"), {"id": ob.id})
    assert store.get(ob_id=ob.id).state is ObState.QUEUED


# --- createAutoOB ----------------------------------------------------------------------------------


def test_create_auto_ob_derives_exposure_expiry_and_records_history(store: ObStore) -> None:
    ob = store.create_auto_ob(data=auto(), now=T0)

    assert ob.ob_type is ObType.CTOB
    assert ob.mid == 101
    assert ob.exposure_s == 2071.0  # the SOXS List-of-OBs figure shows 2070 s for 18.4 mag
    assert ob.expires_at == T0 + AUTO_LIFETIME
    assert ob.time_share is TimeShare.GTO
    assert ob.state is ObState.QUEUED
    assert store.get(ob_id=ob.id) == ob
    assert ob.created_at.tzinfo is UTC
    [created] = store.history(ob_id=ob.id)
    assert created.action == "created"
    assert created.changes["magnitude"] == 18.4


@pytest.mark.parametrize(("magnitude", "exposure"), [(15.9, 207.0), (17.3, 752.0), (18.4, 2070.0), (11.5, 3.0)])
def test_auto_exposure_follows_the_soxs_rule(magnitude: float, exposure: float) -> None:
    assert auto_exposure_s(magnitude) == pytest.approx(exposure, abs=1.0)


def test_create_auto_ob_refuses_faint_transients(store: ObStore) -> None:
    with pytest.raises(ValueError, match=r"19\.5"):
        store.create_auto_ob(data=auto(magnitude=19.5), now=T0)
    assert store.list() == []


def test_create_auto_ob_refuses_targets_never_high_enough_at_la_silla(store: ObStore) -> None:
    with pytest.raises(NotObservableError, match="dec_deg 45"):
        store.create_auto_ob(data=auto(dec_deg=45.0), now=T0)
    assert store.list() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"ra_deg": 360.0}, "ra_deg"), ({"ra_deg": -0.1}, "ra_deg"), ({"dec_deg": -90.5}, "dec_deg"), ({"mid": 0}, "mid")],
)
def test_out_of_range_coordinates_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        auto(**changes)


def test_a_second_auto_ob_for_the_same_mid_is_a_conflict(store: ObStore) -> None:
    first = store.create_auto_ob(data=auto(), now=T0)

    with pytest.raises(ConflictError, match="MID 101"):
        store.create_auto_ob(data=auto(magnitude=17.0), now=T0 + timedelta(hours=1))

    assert store.list() == [first]


# --- autoCleanOBs ----------------------------------------------------------------------------------


def test_auto_clean_expires_only_unobserved_auto_obs_after_three_weeks(store: ObStore) -> None:
    stale = store.create_auto_ob(data=auto(101), now=T0)
    seen = store.create_auto_ob(data=auto(102), now=T0)
    fresh = store.create_auto_ob(data=auto(103), now=T0 + timedelta(days=2))
    fu = store.create_follow_up_ob(data=follow_up(104), now=T0)
    store.set_state(ob_id=seen.id, state=ObState.OBSERVED, now=T0 + timedelta(days=1), actor="tracker")

    assert store.auto_clean(now=T0 + AUTO_LIFETIME - timedelta(seconds=1)) == []
    expired = store.auto_clean(now=T0 + AUTO_LIFETIME)

    assert [ob.id for ob in expired] == [stale.id]
    assert store.get(ob_id=stale.id).state is ObState.EXPIRED
    assert store.get(ob_id=seen.id).state is ObState.OBSERVED
    assert store.get(ob_id=fresh.id).state is ObState.QUEUED
    assert store.get(ob_id=fu.id).state is ObState.QUEUED
    assert store.history(ob_id=stale.id)[-1].changes == {"state": ["queued", "expired"]}
    # Expired, the MID is free for a new auto OB.
    assert store.create_auto_ob(data=auto(101), now=T0 + AUTO_LIFETIME).mid == 101


# --- updateAutoOBMagnitude -------------------------------------------------------------------------


def test_update_magnitude_changes_magnitude_exposure_and_version(store: ObStore) -> None:
    ob = store.create_auto_ob(data=auto(), now=T0)

    updated = store.update_auto_ob_magnitude(mid=101, magnitude=17.3, now=T0 + timedelta(days=1))

    assert (updated.magnitude, updated.exposure_s, updated.version) == (17.3, 752.0, 2)
    assert updated.updated_at == T0 + timedelta(days=1)
    change = store.history(ob_id=ob.id)[-1]
    assert change.action == "magnitude_updated"
    assert change.changes == {"magnitude": [18.4, 17.3], "exposure_s": [2071.0, 752.0]}


def test_update_magnitude_of_an_unknown_mid_is_not_found(store: ObStore) -> None:
    store.create_auto_ob(data=auto(), now=T0)
    with pytest.raises(NotFoundError, match="MID 999"):
        store.update_auto_ob_magnitude(mid=999, magnitude=17.0, now=T0)
    with pytest.raises(ValueError, match="magnitude"):
        store.update_auto_ob_magnitude(mid=101, magnitude=float("nan"), now=T0)
    assert store.list()[0].magnitude == 18.4


# --- createFollowUpOB ------------------------------------------------------------------------------


def test_follow_up_ob_keeps_its_fine_grained_setup(store: ObStore) -> None:
    ob = store.create_follow_up_ob(data=follow_up(), now=T0)

    fetched = store.get(ob_id=ob.id)
    assert fetched.ob_type is ObType.FUOB
    assert fetched.setup == {"slit_width_arcsec": 1.0, "binning": "1x1"}
    assert (fetched.exposure_s, fetched.max_airmass, fetched.max_seeing_arcsec) == (1200.0, 1.8, 1.2)
    request = fetched.to_request()
    assert request.ob_id == str(ob.id)
    assert request.constraints.twilight.max_sun_altitude_deg == -18.0


@pytest.mark.parametrize(("changes", "field"), [({"exposure_s": 0}, "exposure_s"), ({"exposure_s": -5}, "exposure_s")])
def test_follow_up_needs_a_positive_exposure(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        follow_up(**changes)


def test_follow_up_with_the_same_name_for_the_same_mid_is_a_conflict(store: ObStore) -> None:
    store.create_follow_up_ob(data=follow_up(), now=T0)
    second = store.create_follow_up_ob(data=follow_up(name="FU_2"), now=T0)

    with pytest.raises(ConflictError, match="FU_1"):
        store.create_follow_up_ob(data=follow_up(), now=T0)
    assert [ob.name for ob in store.list()] == ["FU_1", second.name]


# --- deleteOB and the rest -------------------------------------------------------------------------


def test_delete_ob_keeps_it_with_its_history(store: ObStore) -> None:
    ob = store.create_auto_ob(data=auto(), now=T0)

    deleted = store.delete_ob(ob_id=ob.id, now=T0 + timedelta(hours=2))

    assert deleted.state is ObState.DELETED
    assert store.list(states=(ObState.QUEUED, ObState.SCHEDULED)) == []
    assert [c.action for c in store.history(ob_id=ob.id)] == ["created", "deleted"]
    with pytest.raises(NotFoundError, match="already deleted"):
        store.delete_ob(ob_id=ob.id, now=T0 + timedelta(hours=3))
    with pytest.raises(NotFoundError, match="unknown OB 424242"):
        store.delete_ob(ob_id=424242, now=T0)


def test_eso_and_too_obs_carry_programme_and_time_share(store: ObStore) -> None:
    data = ObCreate(
        ob_type=ObType.ESO,
        name="P115.X-0001 OB3",
        target_name="NGC 1365",
        ra_deg=53.40,
        dec_deg=-36.14,
        exposure_s=1800.0,
        priority=2,
        programme="115.X-0001",
        time_share=TimeShare.ESO,
    )
    ob = store.create_ob(data=data, now=T0, actor="science")
    synced = store.set_p2(ob_id=ob.id, p2_ob_id=2001, p2_version='"etag-1"', now=T0, actor="ves_sync")

    assert (synced.programme, synced.time_share, synced.p2_ob_id, synced.p2_version) == (
        "115.X-0001",
        TimeShare.ESO,
        2001,
        '"etag-1"',
    )
    assert store.history(ob_id=ob.id)[-1].changes == {"p2_ob_id": [None, 2001], "p2_version": [None, '"etag-1"']}


def test_mark_planned_schedules_and_requeues_in_one_go(store: ObStore) -> None:
    a = store.create_auto_ob(data=auto(1), now=T0)
    b = store.create_auto_ob(data=auto(2), now=T0)
    c = store.create_auto_ob(data=auto(3), now=T0)
    store.set_state(ob_id=c.id, state=ObState.OBSERVED, now=T0, actor="tracker")

    assert store.mark_planned(ob_ids={a.id, c.id}, now=T0 + timedelta(hours=1)) == 1
    assert store.mark_planned(ob_ids={b.id}, now=T0 + timedelta(hours=2)) == 2

    assert [store.get(ob_id=i).state for i in (a.id, b.id, c.id)] == [
        ObState.QUEUED,
        ObState.SCHEDULED,
        ObState.OBSERVED,
    ]
    assert [h.changes["state"] for h in store.history(ob_id=a.id)[1:]] == [
        ["queued", "scheduled"],
        ["scheduled", "queued"],
    ]
