"""`VesSyncStore` on a migrated SQLite operational DB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from skyops.errors import NaiveDatetimeError
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from tests.unit.ves_sync.builders import DUSK, block, plan, wind_trigger
from ves_sync.domain.execution import Execution, Outcome
from ves_sync.domain.ves import change_for
from ves_sync.store import LinkUpdate, VesSyncStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VesSyncStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    assert {"ves_sync_obs", "ves_sync_nights", "ves_sync_changes",
            "ves_sync_execution_outbox"} <= set(inspect(engine).get_table_names())
    yield VesSyncStore(make_sessionmaker(engine))
    engine.dispose()


def test_links_round_trip_and_a_p2_ob_has_one_owner(store: VesSyncStore) -> None:
    ob = {"obId": 7, "obStatus": "+", "target": {"name": "é"}}
    store.save_link(ob_id="a", p2_ob_id=7, container_id=1, content_digest="d", p2_ob=ob, p2_etag='"e"', now=DUSK)
    link = store.link("a")
    assert link is not None
    assert (link.p2_ob_id, link.p2_ob, link.p2_etag, link.p2_status, link.updated_at) == (7, ob, '"e"', "+", DUSK)
    # The same P2 OB claimed by another of our ids: the stale link goes.
    store.save_link(ob_id="b", p2_ob_id=7, container_id=1, content_digest="d", p2_ob=ob, p2_etag='"e"', now=DUSK)
    assert set(store.links()) == {"b"}
    store.forget_link(ob_id="b")
    assert store.link("b") is None


def test_naive_times_are_refused(store: VesSyncStore) -> None:
    with pytest.raises(NaiveDatetimeError):
        store.save_link(ob_id="a", p2_ob_id=1, container_id=1, content_digest="", p2_ob={}, p2_etag="",
                        now=DUSK.replace(tzinfo=None))


def test_synced_night_keeps_the_newest_plan_and_its_change(store: VesSyncStore) -> None:
    assert store.synced_plan_created(night="2026-11-21") is None
    store.mark_synced(night="2026-11-21", plan_id="p1", plan_created=DUSK, now=DUSK)
    change = change_for(plan([block(1)], plan_id="p2"), ts=DUSK, instrument="SOXS", written_by="ves_sync",
                        before=[], after=[3])
    store.mark_synced(night="2026-11-21", plan_id="p2", plan_created=DUSK + timedelta(minutes=1), now=DUSK,
                      change=change)
    assert store.synced_plan_created(night="2026-11-21") == DUSK + timedelta(minutes=1)
    assert store.history() == [change]


def test_several_links_are_saved_together(store: VesSyncStore) -> None:
    updates = [LinkUpdate(ob_id=f"ob{n}", p2_ob_id=100 + n, container_id=1, content_digest="d",
                          p2_ob={"obStatus": "+"}, p2_etag=f'"{n}"', template={"templateId": n}, template_etag="t")
               for n in range(3)]
    store.save_links(updates, now=DUSK)
    store.save_links([], now=DUSK)
    links = store.links()
    assert sorted(links) == ["ob0", "ob1", "ob2"]
    assert links["ob2"].template == {"templateId": 2}
    assert links["ob2"].template_etag == "t"


def test_history_says_who_when_and_why_newest_first(store: VesSyncStore) -> None:
    first = plan([block(1)], plan_id="p1")
    second = plan([block(1)], plan_id="p2", reason="re-plan: wind", trigger=wind_trigger(DUSK))
    store.record_change(change_for(first, ts=DUSK, instrument="SOXS", written_by="ves_sync", before=[], after=[5]))
    store.record_change(change_for(second, ts=DUSK + timedelta(minutes=3), instrument="SOXS", written_by="ves_sync",
                                   before=[5], after=[6, 5]))
    history = store.history(night="2026-11-21")
    assert [c.plan_id for c in history] == ["p2", "p1"]
    assert history[0].alarm_id == "WindPointing.asm:1"
    assert history[0].trigger_kind == "consequence"
    assert history[0].before == (5,)
    assert history[0].after == (6, 5)
    assert history[0].ts == DUSK + timedelta(minutes=3)
    assert store.history(night="2026-11-22") == []
    with pytest.raises(ValueError, match="limit"):
        store.history(limit=0)


def test_queued_execution_reports_are_kept_in_order_and_an_end_replaces_its_start(store: VesSyncStore) -> None:
    first = Execution(7, "2026-11-21", DUSK, Outcome.STARTED)
    second = Execution(8, "2026-11-21", DUSK + timedelta(minutes=20), Outcome.STARTED)
    store.queue_execution(first, now=DUSK)
    store.queue_execution(second, now=DUSK)
    ended = first.finished(Outcome.EXECUTED, DUSK + timedelta(minutes=18, microseconds=250))
    store.queue_execution(ended, now=DUSK)
    # The newest report of each execution, in the order they were queued; times come back exact and UTC.
    assert store.queued_executions() == [second, ended]
    # A reply to the start, arriving after the end was queued, must not drop the end.
    assert store.execution_sent(first) is False
    assert store.execution_sent(ended) is True
    assert store.queued_executions() == [second]
    assert store.execution_sent(ended) is False  # sent twice: nothing left to forget


def test_a_queued_report_outlives_its_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opdb.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    report = Execution(7, "2026-11-21", DUSK, Outcome.ABORTED, DUSK + timedelta(minutes=3))
    VesSyncStore(make_sessionmaker(engine)).queue_execution(report, now=DUSK)
    engine.dispose()

    reopened = make_engine(url)
    upgrade(reopened)
    assert VesSyncStore(make_sessionmaker(reopened)).queued_executions() == [report]
    reopened.dispose()


def test_a_report_queued_at_a_naive_time_is_refused(store: VesSyncStore) -> None:
    with pytest.raises(NaiveDatetimeError):
        store.queue_execution(Execution(7, "2026-11-21", DUSK, Outcome.STARTED), now=DUSK.replace(tzinfo=None))
    assert store.queued_executions() == []


def test_recent_nights_are_the_synced_ones_newest_first(store: VesSyncStore) -> None:
    assert store.recent_nights() == []
    for night in ("2026-11-19", "2026-11-21", "2026-11-20"):
        store.mark_synced(night=night, plan_id="p", plan_created=DUSK, now=DUSK)
    assert store.recent_nights() == ["2026-11-21", "2026-11-20"]
    assert store.recent_nights(limit=3) == ["2026-11-21", "2026-11-20", "2026-11-19"]
    with pytest.raises(ValueError, match="limit"):
        store.recent_nights(limit=0)


def test_an_unreachable_operational_db_is_told_as_such_to_the_executor() -> None:
    from skyops.errors import BackendUnavailableError

    engine = make_engine("postgresql://skyops@127.0.0.1:1/skyops?connect_timeout=2")  # nothing listens on port 1
    store = VesSyncStore(make_sessionmaker(engine))
    report = Execution(7, "2026-11-21", DUSK, Outcome.STARTED)
    with pytest.raises(BackendUnavailableError, match="operational DB cannot be reached"):
        store.queue_execution(report, now=DUSK)
    with pytest.raises(BackendUnavailableError):
        store.queued_executions()
    with pytest.raises(BackendUnavailableError):
        store.execution_sent(report)
    engine.dispose()
