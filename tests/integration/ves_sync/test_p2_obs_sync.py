"""The VES sync announces on p2.obs every OB of a plan it put in P2, and the P2 statuses it saw move (real p2api)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from skyops.bus import Bus, StreamRetention
from skyops.messages import P2ObLinked, P2ObStatus, P2ObUpdate, PlannedBlock, decode_p2_ob_update
from skyops.streams import P2_OBS, PLAN_EVENTS
from skyops.timeutil import FakeClock
from tests.integration.ves_sync.conftest import Sleeps, client, make_service
from tests.support.bus import embedded_bus, fake_server
from tests.unit.ves_sync.builders import DUSK, NIGHT, night, plan
from ves_sync.consumer import GROUP, VesSyncConsumer
from ves_sync.p2 import P2CallError
from ves_sync.store import VesSyncStore

pytestmark = pytest.mark.integration
RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=1))


@pytest.fixture
async def bus(clock: FakeClock) -> AsyncIterator[Bus]:
    async with embedded_bus(fake_server(), clock) as b:
        yield b


@pytest.fixture
def consumer(bus: Bus, environment: str, sessions: sessionmaker[Session], clock: FakeClock,
             sleeps: Sleeps) -> VesSyncConsumer:
    return VesSyncConsumer(bus=bus, service=make_service(environment, sessions, clock, sleeps), clock=clock,
                           samples_retention=RETENTION, block_ms=10)


async def updates(bus: Bus) -> list[P2ObUpdate]:
    return [decode_p2_ob_update(e.payload) for e in await bus.range_after(P2_OBS, "0", count=10_000)]


async def synced(bus: Bus, consumer: VesSyncConsumer, sessions: sessionmaker[Session],
                 blocks: list[PlannedBlock]) -> list[int]:
    """`blocks` published as the night's plan and put in P2 by the VES sync; their P2 OB ids."""
    await bus.publish(PLAN_EVENTS, plan(blocks).encode(), retention=RETENTION)
    await consumer.run_once()
    links = VesSyncStore(sessions).links()
    return [links[b.ob_id].p2_ob_id for b in blocks]


def record(environment: str, p2_id: int, start: datetime, end: datetime | None, status: str = "executed") -> None:
    """The telescope's report of one execution, as the executor sends it to P2."""
    body: dict[str, object] = {"obId": p2_id, "night": NIGHT, "from": start.isoformat(), "status": status}
    if end is not None:
        body["to"] = end.isoformat()
    client(environment, "operator").record_execution("SOXS", body)


async def test_every_synced_ob_is_announced_with_its_p2_id_and_version(
    bus: Bus, consumer: VesSyncConsumer, sessions: sessionmaker[Session]
) -> None:
    blocks = night(5)
    await bus.publish(PLAN_EVENTS, plan(blocks).encode(), retention=RETENTION)
    await consumer.run_once()
    links = VesSyncStore(sessions).links()
    announced = [u for u in await updates(bus) if isinstance(u, P2ObLinked)]
    assert [(u.ob_id, u.p2_ob_id, u.p2_version) for u in announced] == [
        (b.ob_id, links[b.ob_id].p2_ob_id, links[b.ob_id].p2_etag) for b in blocks
    ]
    assert all(u.p2_version for u in announced)
    # The same plan again: nothing changes in P2, the links are announced again (a planner may have missed them).
    await bus.publish(PLAN_EVENTS, plan(blocks, plan_id="plan-1b", created=DUSK).encode(), retention=RETENTION)
    await consumer.run_once()
    assert len([u for u in await updates(bus) if isinstance(u, P2ObLinked)]) == 2 * len(blocks)


async def test_an_execution_seen_by_a_sync_is_published_once(
    bus: Bus, consumer: VesSyncConsumer, environment: str, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    blocks = night(3)
    p2_id = (await synced(bus, consumer, sessions, blocks))[0]
    start = DUSK + timedelta(minutes=1)
    record(environment, p2_id, start, start + timedelta(minutes=15))
    clock.advance(1200)
    # A re-plan reaches the VES sync before its next status refresh: the sync reports what it saw.
    await bus.publish(PLAN_EVENTS, plan(blocks[1:], plan_id="plan-2", created=DUSK + timedelta(minutes=20)).encode(),
                      retention=RETENTION)
    await consumer.run_once()
    assert await consumer.refresh_statuses() == []
    statuses = [u for u in await updates(bus) if isinstance(u, P2ObStatus)]
    assert [(u.ob_id, u.p2_ob_id, u.previous, u.status) for u in statuses] == [(blocks[0].ob_id, p2_id, "+", "X")]
    assert statuses[0].ts == DUSK + timedelta(seconds=1200)
    assert statuses[0].execution_end == start + timedelta(minutes=15)  # when it was observed, not when seen


async def test_a_status_refresh_carries_the_end_of_the_execution_behind_each_change(
    bus: Bus, consumer: VesSyncConsumer, environment: str, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    first, second, third = await synced(bus, consumer, sessions, night(3))
    for p2_id, start_min, end_min, status in [(first, 0, 7, "aborted"),  # the dome closed; executed at the 2nd try
                                              (first, 30, 48, "executed"), (second, 50, 58, "aborted"),
                                              (third, 60, None, "started")]:
        end = None if end_min is None else DUSK + timedelta(minutes=end_min)
        record(environment, p2_id, DUSK + timedelta(minutes=start_min), end, status)
    clock.advance(4000)

    changes = await consumer.refresh_statuses()

    statuses = {u.p2_ob_id: u for u in await updates(bus) if isinstance(u, P2ObStatus)}
    assert {c.p2_ob_id: c.execution_end for c in changes} == {
        first: DUSK + timedelta(minutes=48), second: DUSK + timedelta(minutes=58), third: None}
    assert {p2_id: (u.status, u.execution_end) for p2_id, u in statuses.items()} == {
        first: ("X", DUSK + timedelta(minutes=48)), second: ("A", DUSK + timedelta(minutes=58)), third: ("S", None)}
    assert {u.ts for u in statuses.values()} == {clock.now()}


async def test_status_changes_go_without_times_when_p2_will_not_show_its_executions(
    bus: Bus, consumer: VesSyncConsumer, environment: str, sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    (p2_id,) = await synced(bus, consumer, sessions, night(1))
    record(environment, p2_id, DUSK, DUSK + timedelta(minutes=18))

    def refused(instrument: str, night: str) -> None:
        raise P2CallError(403, "GET", f"/executions/{instrument}", "not yours")

    monkeypatch.setattr(consumer.service.owner, "get_night_executions", refused)
    (change,) = await consumer.refresh_statuses()

    assert (change.after, change.execution_end) == ("X", None)  # the status still reaches the planner
    assert [(u.status, u.execution_end) for u in await updates(bus) if isinstance(u, P2ObStatus)] == [("X", None)]


async def test_a_bus_that_refuses_the_announcement_leaves_the_plan_pending(
    bus: Bus, consumer: VesSyncConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = night(2)
    await bus.publish(PLAN_EVENTS, plan(blocks).encode(), retention=RETENTION)

    async def refused(stream: str, payloads: Sequence[bytes], *, retention: StreamRetention) -> list[str]:
        raise ConnectionError("bus down")

    monkeypatch.setattr(bus, "publish_many", refused)
    assert await consumer.run_once() == 0
    assert await bus.pending_count(PLAN_EVENTS, GROUP) == 1
    monkeypatch.undo()
    assert await consumer.run_once() == 1
    assert [u.ob_id for u in await updates(bus)] == [b.ob_id for b in blocks]
