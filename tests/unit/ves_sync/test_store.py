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
from ves_sync.domain.ves import change_for
from ves_sync.store import LinkUpdate, VesSyncStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VesSyncStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    assert {"ves_sync_obs", "ves_sync_nights", "ves_sync_changes"} <= set(inspect(engine).get_table_names())
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
