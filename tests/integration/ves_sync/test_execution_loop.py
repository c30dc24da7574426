"""The loop closed: plan → VES sync → the telescope executes the VES → P2 → p2.obs → the planner's store and report.

Real p2api against the emulator, the real executor on the OPC-UA telescope simulator in accelerated time, and
the bus on a real Redis (and on the embedded bus); the planner's OB store on SQLite.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from asyncua.client.client import Client
from sqlalchemy.orm import Session, sessionmaker

from collectors.domain.telescope import Shutter, Telescope
from collectors.simulators.telescope import serve
from planner.config import SchedulerConfig, load_site
from planner.domain.execution import OB_POINT, STATE_POINT
from planner.domain.reports import period_report
from planner.service import PlannerService
from planner.store import LIVE_STATES, AutoObCreate, ObCreate, ObPublic, ObState, ObStore, ObType, TimeShare
from skyops.bus import Bus, StreamRetention, open_redis
from skyops.codec import encode_samples
from skyops.messages import P2ObStatus, decode_p2_ob_update
from skyops.records import Sample, SampleBatch
from skyops.timeutil import FakeClock
from tests.integration.ves_sync.conftest import Sleeps, client, make_service
from tests.support.bus import fake_server
from tests.unit.ves_sync.builders import DUSK, block, plan
from ves_sync.consumer import VesSyncConsumer
from ves_sync.domain.execution import Outcome
from ves_sync.executor import ClockDrive, ExecutorSettings, VesExecutor
from ves_sync.store import VesSyncStore
from ves_sync.telescope import TelescopeClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(days=1))
REFRESH_S = 600.0  # clock seconds between two status refreshes of the VES sync (its health interval)


@dataclass(frozen=True)
class Streams:
    plans: str
    p2_obs: str
    samples: str
    health: str


@pytest.fixture(params=["embedded", "redis"])
async def bus(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[tuple[Bus, Streams]]:
    suffix = uuid.uuid4().hex[:10]
    streams = Streams(f"test.plan.events.{suffix}", f"test.p2.obs.{suffix}", f"test.mon.samples.{suffix}",
                      f"test.ves.health.{suffix}")
    if request.param == "redis":
        redis = open_redis(request.getfixturevalue("redis_url"))
    else:
        from fakeredis.aioredis import FakeRedis

        redis = FakeRedis(server=fake_server(), decode_responses=False)
    try:
        yield Bus(redis, clock=clock), streams
    finally:
        await redis.delete(*vars(streams).values())
        await redis.aclose()


def planner_obs(store: ObStore) -> list[ObPublic]:
    """Two transients (CTOB) and an ESO proposal's OB, where the VES-sync test night has its targets up."""
    created = []
    for n in (0, 1):
        target = block(n)
        created.append(store.create_auto_ob(
            data=AutoObCreate(mid=100 + n, target_name=target.target_name, ra_deg=target.ra_deg,
                              dec_deg=target.dec_deg, magnitude=16.5),
            now=DUSK - timedelta(days=1)))
    target = block(2)
    created.append(store.create_ob(
        data=ObCreate(ob_type=ObType.ESO, name="P116 standard", target_name=target.target_name,
                      ra_deg=target.ra_deg, dec_deg=target.dec_deg, exposure_s=600, priority=2,
                      programme="116.B-0001", time_share=TimeShare.ESO),
        now=DUSK - timedelta(days=1), actor="science"))
    return created


async def test_what_the_telescope_executed_is_counted_once(
    bus: tuple[Bus, Streams], environment: str, sessions: sessionmaker[Session], clock: FakeClock, sleeps: Sleeps
) -> None:
    the_bus, streams = bus
    site = load_site()
    store = ObStore(sessions, site=site)
    obs = planner_obs(store)
    ves = VesSyncConsumer(bus=the_bus, service=make_service(environment, sessions, clock, sleeps), clock=clock,
                          samples_retention=RETENTION, block_ms=10, plan_events_stream=streams.plans,
                          p2_obs_stream=streams.p2_obs, samples_stream=streams.health)
    planner = PlannerService(bus=the_bus, site=site, config=SchedulerConfig(), clock=clock,
                             obs=lambda: [ob.to_request() for ob in store.list(states=LIVE_STATES)], store=store,
                             p2_stream=streams.p2_obs, samples_stream=streams.samples)
    p2_consumer = planner.p2_consumer()

    # The planner's plan reaches P2; the VES sync tells the planner where each OB went.
    blocks = [block(n, ob_id=str(ob.id), exposure_s=ob.exposure_s) for n, ob in enumerate(obs)]
    store.mark_planned(ob_ids={ob.id for ob in obs}, now=clock.now())
    await the_bus.publish(streams.plans, plan(blocks).encode(), retention=RETENTION)
    assert await ves.run_once() == 1
    assert await p2_consumer.run_once() == len(obs)
    links = VesSyncStore(sessions).links()
    p2_of = {ob.id: links[str(ob.id)].p2_ob_id for ob in obs}
    assert store.p2_links() == {p2: ob for ob, p2 in p2_of.items()}

    # The operator's BOB executes the VES; the VES sync looks at P2 every REFRESH_S; the nodes are recorded.
    async with serve(clock=clock, telescope=Telescope(shutter=Shutter.OPEN), tick_s=None) as sim, \
            Client(sim.endpoint, timeout=5) as watcher:
        nodes = [watcher.get_node(f"ns={sim.ns};s=NTT.Exposure.{n}") for n in ("ObId", "State")]
        samples: list[Sample] = []
        last_refresh = clock.now()
        stop = asyncio.Event()

        async def step() -> None:
            nonlocal last_refresh
            await sim.tick()
            ob_id, state = await watcher.read_values(nodes)
            samples.extend([Sample(point=OB_POINT, ts=clock.now(), value=int(ob_id)),
                            Sample(point=STATE_POINT, ts=clock.now(), value=str(state))])
            if (clock.now() - last_refresh).total_seconds() >= REFRESH_S:
                last_refresh = clock.now()
                await ves.refresh_statuses()
            if executor.report.waiting_for == "nothing left in the VES to execute" or clock.now() - DUSK > \
                    timedelta(hours=10):
                stop.set()

        executor = VesExecutor(p2=client(environment, "operator"), telescope=TelescopeClient(sim.endpoint),
                               outbox=VesSyncStore(sessions), clock=clock, pace=ClockDrive(clock, step),
                               settings=ExecutorSettings())
        async with asyncio.timeout(120):  # real time: only loopback network I/O is waited for
            await executor.run(stop)
    assert [e.p2_ob_id for e in executor.report.executions] == [p2_of[ob.id] for ob in obs]

    # The planner reads the telescope's points (P2 ids on the node) and P2's statuses, in either order.
    await the_bus.publish(streams.samples, encode_samples(SampleBatch.from_samples(samples)), retention=RETENTION)
    await planner.samples_consumer().run_once()
    await ves.refresh_statuses()
    while await p2_consumer.run_once():
        pass
    assert {ob.id: store.get(ob_id=ob.id).state for ob in obs} == dict.fromkeys(p2_of, ObState.OBSERVED)
    # Each execution reached p2.obs with the time the telescope finished it, not the time the sync looked.
    ends = {e.p2_ob_id: e.end for e in executor.report.executions if e.outcome is Outcome.EXECUTED}

    async def executions_on_p2_obs() -> list[tuple[int, datetime | None]]:
        updates = map(decode_p2_ob_update, [e.payload for e in await the_bus.range_after(streams.p2_obs, "0",
                                                                                           count=1000)])
        return sorted((u.p2_ob_id, u.execution_end) for u in updates if isinstance(u, P2ObStatus) and u.status == "X")

    assert await executions_on_p2_obs() == sorted(ends.items())

    # Everything again: the points replayed, the VES sync restarted (it announces links and executions).
    await the_bus.publish(streams.samples, encode_samples(SampleBatch.from_samples(samples)), retention=RETENTION)
    await planner.samples_consumer().run_once()
    assert await ves.announce() == 2 * len(obs)
    assert await executions_on_p2_obs() == sorted(2 * list(ends.items()))  # announced again, with the same ends
    while await p2_consumer.run_once():
        pass
    assert await the_bus.lag(streams.p2_obs, "planner-p2") == 0

    for ob in obs:
        executions = [c for c in store.history(ob_id=ob.id) if c.action == "execution_observed"]
        assert len(executions) == 1
        assert executions[0].actor == "p2"  # P2 is the source of truth for an OB it holds
    night_start = DUSK - timedelta(hours=6)
    report = period_report(store.report_records(), start=night_start, end=night_start + timedelta(days=1),
                           dark_hours=10.0)
    assert report.science_hours == pytest.approx(sum(ob.exposure_s for ob in obs) / 3600)
    assert (report.transient_hits, report.transient_misses) == (2, 0)
    assert report.completed_proposals_fraction == 1.0
    observed_at = [r.observed_at for r in store.report_records()]
    assert all(isinstance(t, datetime) and DUSK <= t <= clock.now() for t in observed_at)
