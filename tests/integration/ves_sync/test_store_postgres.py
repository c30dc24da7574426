"""`VesSyncStore` on the real PostgreSQL server (distributed mode), in a schema of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import make_url

from skyops.opdb import make_engine, make_sessionmaker, upgrade
from tests.unit.ves_sync.builders import DUSK, block, plan, wind_trigger
from ves_sync.domain.ves import change_for
from ves_sync.store import VesSyncStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url: str) -> Iterator[VesSyncStore]:
    admin = make_engine(postgres_url)
    schema = f"t_ves_{uuid.uuid4().hex[:16]}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    # A session TimeZone far from UTC proves times come back as the same instant.
    url = make_url(admin.url.render_as_string(hide_password=False)).update_query_dict(
        {"options": f"-csearch_path={schema} -cTimeZone=America/Santiago"}
    )
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        yield VesSyncStore(make_sessionmaker(engine))
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


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
