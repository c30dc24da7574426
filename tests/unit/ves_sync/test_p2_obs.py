"""The VES sync tells the planner on p2.obs which P2 OB holds each of its OBs and how their P2 statuses move."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from skyops.bus import Bus, StreamRetention
from skyops.messages import P2ObLinked, P2ObStatus, P2ObUpdate, decode_p2_ob_update
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.streams import P2_OBS
from skyops.timeutil import FakeClock
from tests.support.bus import embedded_bus, fake_server
from tests.unit.ves_sync.builders import DUSK
from ves_sync.consumer import VesSyncConsumer
from ves_sync.p2 import P2Account, P2Client
from ves_sync.service import ObStatusChange, VesSyncService, status_changes
from ves_sync.store import LinkUpdate, VesSyncStore

CONTAINER = 5
RETENTION = StreamRetention(max_len=1000, max_age=timedelta(days=1))


class SummaryOnly(P2Client):
    """The owner's P2 as far as a status refresh sees it: one container summary, statuses set by the test."""

    def __init__(self) -> None:
        super().__init__(P2Account("unused", "soxs", "unused"))
        self.statuses: dict[int, str] = {}

    def get_ob_summary(self, container_id: int) -> tuple[Any, str | None]:
        assert container_id == CONTAINER
        return [{"obId": i, "name": f"ob{i}", "obStatus": s} for i, s in self.statuses.items()], None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VesSyncStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    yield VesSyncStore(make_sessionmaker(engine))
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DUSK)


@pytest.fixture
async def bus(clock: FakeClock) -> AsyncIterator[Bus]:
    async with embedded_bus(fake_server(), clock) as b:
        yield b


@pytest.fixture
def owner(store: VesSyncStore) -> SummaryOnly:
    p2 = SummaryOnly()
    store.save_links([LinkUpdate(ob_id=str(n), p2_ob_id=100 + n, container_id=CONTAINER, content_digest="d",
                                 p2_ob={"obId": 100 + n, "obStatus": "+"}, p2_etag=f'"ob-{n}-1"')
                      for n in (1, 2, 3)], now=DUSK)
    p2.statuses = {101: "+", 102: "+", 103: "+"}
    return p2


@pytest.fixture
def consumer(bus: Bus, store: VesSyncStore, owner: SummaryOnly, clock: FakeClock) -> VesSyncConsumer:
    service = VesSyncService(owner=owner, operator=owner, store=store, container_id=CONTAINER, instrument="SOXS",
                             clock=clock)
    return VesSyncConsumer(bus=bus, service=service, clock=clock, samples_retention=RETENTION)


async def published(bus: Bus) -> list[P2ObUpdate]:
    return [decode_p2_ob_update(e.payload) for e in await bus.range_after(P2_OBS, "0", count=1000)]


def test_status_changes_skip_unchanged_and_deleted_obs(store: VesSyncStore) -> None:
    store.save_links([LinkUpdate(ob_id=o, p2_ob_id=p, container_id=1, content_digest="d",
                                 p2_ob={"obId": p, "obStatus": "+"}, p2_etag="e")
                      for o, p in (("a", 1), ("b", 2), ("c", 3))], now=DUSK)
    changes = status_changes(store.links().values(), {1: "X", 2: "+"})
    assert changes == [ObStatusChange("a", 1, "+", "X")]


async def test_refresh_publishes_changes_once(consumer: VesSyncConsumer, owner: SummaryOnly, bus: Bus,
                                              clock: FakeClock) -> None:
    owner.statuses.update({101: "S", 102: "A"})
    clock.advance(60)
    assert len(await consumer.refresh_statuses()) == 2
    assert await consumer.refresh_statuses() == []  # remembered: not published again
    owner.statuses[101] = "X"
    await consumer.refresh_statuses()
    assert await published(bus) == [
        P2ObStatus(ob_id="1", p2_ob_id=101, status="S", previous="+", ts=DUSK + timedelta(seconds=60)),
        P2ObStatus(ob_id="2", p2_ob_id=102, status="A", previous="+", ts=DUSK + timedelta(seconds=60)),
        P2ObStatus(ob_id="1", p2_ob_id=101, status="X", previous="S", ts=DUSK + timedelta(seconds=60)),
    ]


async def test_a_change_the_bus_did_not_take_is_published_next_time(
    consumer: VesSyncConsumer, owner: SummaryOnly, bus: Bus, store: VesSyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner.statuses[103] = "X"

    async def refused(stream: str, payloads: Sequence[bytes], *, retention: StreamRetention) -> list[str]:
        raise ConnectionError("bus down")

    monkeypatch.setattr(bus, "publish_many", refused)
    assert await consumer.refresh_statuses() == []
    assert store.statuses()["3"] == "+"  # not remembered, so not forgotten
    monkeypatch.undo()
    assert [c.after for c in await consumer.refresh_statuses()] == ["X"]
    assert [u.status for u in await published(bus) if isinstance(u, P2ObStatus)] == ["X"]


async def test_announce_publishes_every_link_and_the_executions(
    consumer: VesSyncConsumer, owner: SummaryOnly, bus: Bus
) -> None:
    owner.statuses.update({101: "X", 102: "A"})
    await consumer.refresh_statuses()
    before = len(await published(bus))
    assert await consumer.announce() == 4
    announced = (await published(bus))[before:]
    assert [(u.ob_id, u.p2_ob_id) for u in announced if isinstance(u, P2ObLinked)] == [
        ("1", 101), ("2", 102), ("3", 103)
    ]
    assert {u.p2_version for u in announced if isinstance(u, P2ObLinked)} == {'"ob-1-1"', '"ob-2-1"', '"ob-3-1"'}
    # Only executions: an old abort announced again would send back to the queue an OB planned since.
    assert [(u.ob_id, u.status) for u in announced if isinstance(u, P2ObStatus)] == [("1", "X")]


def test_a_status_carries_the_execution_end_in_utc_or_none() -> None:
    seen = DUSK + timedelta(minutes=30)
    status = P2ObStatus(ob_id="1", p2_ob_id=101, status="X", previous="S", ts=seen,
                        execution_end=DUSK + timedelta(minutes=18))
    assert decode_p2_ob_update(status.encode()) == status
    older = b'{"kind": "status", "ob_id": "1", "p2_ob_id": 101, "status": "X", "ts": "2026-11-22T01:00:00Z"}'
    decoded = decode_p2_ob_update(older)  # a message written before the field existed
    assert isinstance(decoded, P2ObStatus) and decoded.execution_end is None
    with pytest.raises(ValueError, match="execution_end"):
        P2ObStatus(ob_id="1", p2_ob_id=101, status="X", ts=seen, execution_end=seen.replace(tzinfo=None))
