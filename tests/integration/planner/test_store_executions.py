"""Executions and P2 links in the OB store, on SQLite and on a real PostgreSQL: each recorded once, links unique."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from planner.config import load_site
from planner.domain.execution import Outcome
from planner.store import AutoObCreate, ObState, ObStore
from skyops.opdb import make_sessionmaker, upgrade
from tests.support.opdb import BACKENDS, empty_engine

T0 = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObStore]:
    engine: Engine
    with empty_engine(request, tmp_path) as engine:
        upgrade(engine)
        yield ObStore(make_sessionmaker(engine), site=load_site())


def auto(store: ObStore, mid: int) -> int:
    data = AutoObCreate(mid=mid, target_name=f"AT{mid}", ra_deg=150.0, dec_deg=-30.0, magnitude=17.0)
    return store.create_auto_ob(data=data, now=T0 - timedelta(days=1)).id


def test_an_execution_reported_by_both_paths_is_recorded_once(store: ObStore) -> None:
    ob = auto(store, 1)
    store.mark_planned(ob_ids={ob}, now=T0)
    assert store.record_execution(ob_id=ob, outcome=Outcome.STARTED, now=T0, actor="p2") is None
    observed = store.record_execution(ob_id=ob, outcome=Outcome.OBSERVED, now=T0 + timedelta(minutes=12),
                                      actor="telescope")
    assert observed is not None and observed.state is ObState.OBSERVED
    for actor in ("p2", "telescope", "p2"):
        assert store.record_execution(ob_id=ob, outcome=Outcome.OBSERVED, now=T0 + timedelta(hours=1),
                                      actor=actor) is None
    [record] = store.report_records()
    assert record.observed_at == T0 + timedelta(minutes=12)
    assert [c.action for c in store.history(ob_id=ob)].count("execution_observed") == 1


def test_an_aborted_ob_is_queued_again_and_observed_later(store: ObStore) -> None:
    ob = auto(store, 1)
    store.mark_planned(ob_ids={ob}, now=T0)
    aborted = store.record_execution(ob_id=ob, outcome=Outcome.ABORTED, now=T0, actor="p2")
    assert aborted is not None and aborted.state is ObState.QUEUED
    assert store.record_execution(ob_id=ob, outcome=Outcome.ABORTED, now=T0, actor="p2") is None
    store.mark_planned(ob_ids={ob}, now=T0 + timedelta(minutes=1))
    assert store.record_execution(ob_id=ob, outcome=Outcome.OBSERVED, now=T0 + timedelta(hours=1),
                                  actor="p2") is not None
    expired = store.auto_clean(now=T0 + timedelta(weeks=4))
    assert expired == []  # observed: never a miss


def test_links_move_with_the_p2_ob(store: ObStore) -> None:
    a, b = auto(store, 1), auto(store, 2)
    assert store.record_p2_link(ob_id=a, p2_ob_id=2001, p2_version='"ob-2001-1"', now=T0, actor="ves_sync")
    assert store.record_p2_link(ob_id=a, p2_ob_id=2001, p2_version='"ob-2001-1"', now=T0, actor="ves_sync") is None
    store.record_p2_link(ob_id=b, p2_ob_id=2001, p2_version='"ob-2001-2"', now=T0, actor="ves_sync")
    store.record_p2_link(ob_id=a, p2_ob_id=2002, p2_version='"ob-2002-1"', now=T0, actor="ves_sync")
    assert store.p2_links() == {2001: b, 2002: a}
    assert store.get(ob_id=b).p2_version == '"ob-2001-2"'
