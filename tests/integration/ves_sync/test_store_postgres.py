"""`VesSyncStore` on the real PostgreSQL server (distributed mode), in a schema of its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from skyops.opdb import make_sessionmaker, upgrade
from tests.support.opdb import postgres_schema_engine
from tests.unit.ves_sync.builders import DUSK, block, plan, wind_trigger
from ves_sync.domain.execution import Execution, Outcome
from ves_sync.domain.ves import change_for
from ves_sync.store import VesSyncStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url: str) -> Iterator[VesSyncStore]:
    with postgres_schema_engine(postgres_url) as engine:
        upgrade(engine)
        yield VesSyncStore(make_sessionmaker(engine))


def test_links_nights_and_history_round_trip(store: VesSyncStore) -> None:
    store.save_link(ob_id="a", p2_ob_id=11, container_id=3, content_digest="d" * 64, p2_ob={"obStatus": "+"},
                    p2_etag='"ob-11-4"', now=DUSK)
    store.set_statuses(statuses={"a": "X"}, now=DUSK + timedelta(minutes=1))
    assert store.statuses() == {"a": "X"}
    link = store.link("a")
    assert link is not None
    assert link.updated_at == DUSK + timedelta(minutes=1)

    store.mark_synced(night="2026-11-21", plan_id="p", plan_created=DUSK, now=DUSK)
    assert store.synced_plan_created(night="2026-11-21") == DUSK

    event = plan([block(1)], plan_id="p", trigger=wind_trigger(DUSK))
    store.record_change(change_for(event, ts=DUSK, instrument="SOXS", written_by="ves_sync", before=[], after=[11]))
    (change,) = store.history()
    assert (change.ts, change.alarm_id, change.after) == (DUSK, "WindPointing.asm:1", (11,))


def test_the_execution_outbox_round_trips_exact_utc_times(store: VesSyncStore) -> None:
    started = Execution(11, "2026-11-21", DUSK + timedelta(microseconds=17), Outcome.STARTED)
    store.queue_execution(started, now=DUSK)
    ended = started.finished(Outcome.EXECUTED, DUSK + timedelta(minutes=18, microseconds=3))
    store.queue_execution(ended, now=DUSK)
    assert store.queued_executions() == [ended]
    assert store.execution_sent(started) is False
    assert store.execution_sent(ended) is True
    assert store.queued_executions() == []
