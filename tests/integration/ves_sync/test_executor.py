"""The telescope simulator executes the VES: real p2api against the emulator, real OPC-UA, accelerated time."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from asyncua.client.client import Client
from sqlalchemy.orm import Session, sessionmaker

from collectors.domain.telescope import Shutter, Telescope
from collectors.simulators.telescope import TelescopeSimulator, free_port, serve
from skyops.errors import BackendUnavailableError
from skyops.messages import PlannedBlock
from skyops.timeutil import FakeClock
from tests.integration.ves_sync.conftest import client
from tests.unit.ves_sync.builders import DUSK, NIGHT, block, night, plan
from ves_sync.domain.execution import Execution, Outcome
from ves_sync.emulator import EmulatorServer
from ves_sync.executor import ClockDrive, ExecutionOutbox, ExecutorSettings, VesExecutor
from ves_sync.service import VesSyncService
from ves_sync.store import VesSyncStore
from ves_sync.telescope import TelescopeClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOTHING_LEFT = "nothing left in the VES to execute"
MAX_NIGHT = timedelta(hours=14)


@dataclass
class Seen:
    """The exposure nodes as an outside OPC-UA client read them after each step of the clock."""

    ob_id: int
    state: str
    remaining: float


@dataclass
class Night:
    """A night at the simulated NTT: P2 (the emulator, reached with p2api), the sync that fills the VES, and the
    telescope on a clock that only moves when the executor waits; `hooks` run at every step of the clock."""

    sim: TelescopeSimulator
    clock: FakeClock
    environment: str
    service: VesSyncService
    sessions: sessionmaker[Session]
    watcher: Client | None = None
    seen: list[Seen] = field(default_factory=list)
    hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def advance(self) -> None:
        await self.sim.tick()
        if self.watcher is not None:
            values = await self.watcher.read_values([self.watcher.get_node(f"ns={self.sim.ns};s=NTT.Exposure.{n}")
                                                     for n in ("ObId", "State", "Remaining")])
            self.seen.append(Seen(int(values[0]), str(values[1]), float(values[2])))
        for hook in list(self.hooks):
            await hook()

    def planned(self, blocks: list[PlannedBlock]) -> list[int]:
        """Sync `blocks` as the night's plan into P2 (the Operator's VES); their P2 OB ids in plan order."""
        self.service.sync(plan(blocks))
        return self.p2_ids(blocks)

    def p2_ids(self, blocks: list[PlannedBlock]) -> list[int]:
        links = VesSyncStore(self.sessions).links()
        return [links[b.ob_id].p2_ob_id for b in blocks]

    def executor(self, outbox: ExecutionOutbox | None = None, **settings: Any) -> VesExecutor:
        return VesExecutor(p2=client(self.environment, "operator"), telescope=TelescopeClient(self.sim.endpoint),
                           outbox=outbox or VesSyncStore(self.sessions), clock=self.clock,
                           pace=ClockDrive(self.clock, self.advance), settings=ExecutorSettings(**settings))

    async def run(self, executor: VesExecutor, until: Callable[[], bool] | None = None) -> None:
        """Run the executor until `until()` holds (default: the VES is done), checked at every step of the clock,
        or the night is over."""
        stop = asyncio.Event()
        done = until or (lambda: executor.report.waiting_for == NOTHING_LEFT)

        async def check() -> None:
            if done() or self.clock.now() - DUSK > MAX_NIGHT:
                stop.set()

        self.hooks.append(check)
        async with asyncio.timeout(90):  # real time: only network I/O on loopback is waited for
            await executor.run(stop)
        self.hooks.remove(check)
        assert self.clock.now() - DUSK <= MAX_NIGHT, f"still waiting for: {executor.report.waiting_for}"

    async def crash(self, executor: VesExecutor, when: Callable[[], bool]) -> None:
        """Run the executor until `when()` holds, then kill it mid-step: no stop event, no last report."""
        task = asyncio.create_task(executor.run(asyncio.Event()))

        async def kill() -> None:
            if when() and not task.cancelling():
                task.cancel()

        self.hooks.append(kill)
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(90):
                await task
        self.hooks.remove(kill)

    def recorded(self) -> list[tuple[int, str]]:
        """The night's executions in P2, in order: (P2 OB id, status)."""
        return [(e["obId"], e["status"]) for e in self.executions()]

    def executions(self) -> list[dict[str, Any]]:
        executions: list[dict[str, Any]] = client(self.environment, "operator").get_night_executions("SOXS", NIGHT)
        return executions


@pytest.fixture
async def sky(clock: FakeClock, environment: str, service: VesSyncService,
              sessions: sessionmaker[Session]) -> AsyncIterator[Night]:
    async with serve(clock=clock, telescope=Telescope(shutter=Shutter.OPEN), tick_s=None) as sim, \
            Client(sim.endpoint, timeout=5) as watcher:
        yield Night(sim, clock, environment, service, sessions, watcher)


async def test_a_four_ob_ves_is_executed_in_order_and_recorded_in_p2(sky: Night) -> None:
    ids = sky.planned(night(4))
    executor = sky.executor()

    await sky.run(executor)

    assert [e.p2_ob_id for e in executor.report.executions] == ids
    assert {e.outcome for e in executor.report.executions} == {Outcome.EXECUTED}
    assert sky.recorded() == [(i, "executed") for i in ids]
    recorded = sky.executions()
    soxs = client(sky.environment, "soxs")
    for execution in recorded:
        ob, _ = soxs.get_ob(execution["obId"])
        start, end = (datetime.fromisoformat(execution[k]) for k in ("from", "to"))
        # The whole OB (slew, acquisition, exposure) lasts its execution time, plus the readout.
        assert ob["executionTime"] <= (end - start).total_seconds() <= ob["executionTime"] + 60
    # One OB after the other, in VES order, without overlap.
    for before, after in itertools.pairwise(recorded):
        assert before["to"] <= after["from"]
    # The sync service's status refresh sees the executed OBs.
    assert {c.after for c in sky.service.refresh_statuses()} == {"X"}
    assert set(VesSyncStore(sky.sessions).statuses().values()) == {"X"}
    assert executor.pending == []


async def test_the_opcua_nodes_show_the_current_ob_during_its_exposure(sky: Night) -> None:
    ids = sky.planned(night(3))
    executor = sky.executor()
    soxs = client(sky.environment, "soxs")
    p2_status: dict[int, str] = {}

    async def p2_status_while_exposing() -> None:
        ob_id = sky.seen[-1].ob_id
        if sky.seen[-1].state == "EXPOSING" and ob_id not in p2_status:
            p2_status[ob_id] = (await asyncio.to_thread(soxs.get_ob, ob_id))[0]["obStatus"]

    sky.hooks.append(p2_status_while_exposing)
    await sky.run(executor)

    assert p2_status == dict.fromkeys(ids, "S")  # P2 shows the OB started while the telescope exposes
    exposing = [s for s in sky.seen if s.state == "EXPOSING"]
    # Each OB in turn is the one on the nodes while it exposes, its remaining time counting down.
    assert list(dict.fromkeys(s.ob_id for s in exposing)) == ids
    for ob_id in ids:
        remaining = [s.remaining for s in exposing if s.ob_id == ob_id]
        assert remaining and remaining[0] > 0
        assert remaining == sorted(remaining, reverse=True)
    assert {s.ob_id for s in sky.seen if s.state == "READOUT"} == set(ids)


async def test_a_reorder_mid_night_changes_the_next_ob_executed(sky: Night) -> None:
    blocks = night(4)
    ids = sky.planned(blocks)
    replanned = [blocks[0], blocks[3], blocks[1], blocks[2]]
    replan_done: list[bool] = []

    async def replan_during_first_ob() -> None:
        if sky.sim.telescope.ob_id == ids[0] and not replan_done:
            replan_done.append(True)
            report = await asyncio.to_thread(sky.service.sync, plan(replanned, plan_id="replan",
                                                                    created=DUSK + timedelta(minutes=5)))
            assert report.ves_changed

    sky.hooks.append(replan_during_first_ob)
    executor = sky.executor()
    await sky.run(executor)

    assert replan_done
    assert [e.p2_ob_id for e in executor.report.executions] == sky.p2_ids(replanned)
    assert [ob_id for ob_id, _ in sky.recorded()] == [ids[0], ids[3], ids[1], ids[2]]


async def test_p2_briefly_down_loses_and_doubles_no_execution(sky: Night, emulator: EmulatorServer) -> None:
    ids = sky.planned(night(3))
    outage: list[int] = []
    kept: list[int] = []
    executor = sky.executor(retry_initial_s=30.0)

    async def outage_during_second_ob() -> None:
        # P2 goes down while OB 2 exposes, and stays down for a few retries after OB 2 has ended.
        if not outage and sky.sim.telescope.ob_id == ids[1] and sky.sim.telescope.exposure_state == "EXPOSING":
            emulator.stop()
            outage.append(0)
        elif outage and emulator.running is False:
            outage[0] += 1
            kept.append(len(executor.pending))
            if sum(1 for k in kept if k) == 3:
                emulator.start()

    sky.hooks.append(outage_during_second_ob)
    await sky.run(executor)

    assert outage[0] > 3
    assert max(kept) == 1  # OB 2's end could not be reported while P2 was down: it was kept, then sent
    assert [e.p2_ob_id for e in executor.report.executions] == ids
    assert sky.recorded() == [(i, "executed") for i in ids]
    assert executor.pending == []
    assert {c.after for c in sky.service.refresh_statuses()} == {"X"}


async def test_a_report_queued_while_p2_is_down_survives_a_crash_and_arrives_once(
    sky: Night, emulator: EmulatorServer
) -> None:
    ids = sky.planned(night(2))
    first = sky.executor(retry_initial_s=30.0)

    async def outage_during_first_ob() -> None:
        if emulator.running and not first.report.executions and sky.sim.telescope.ob_id == ids[0] \
                and sky.sim.telescope.exposure_state == "EXPOSING":
            emulator.stop()

    sky.hooks.append(outage_during_first_ob)
    # OB 1 ends while P2 is down: its end is queued, then the executor dies with it unsent.
    await sky.crash(first, when=lambda: len(first.report.executions) == 1 and len(first.pending) == 1)
    sky.hooks.remove(outage_during_first_ob)
    (ended,) = first.report.executions
    assert (ended.p2_ob_id, ended.outcome) == (ids[0], Outcome.EXECUTED)
    assert VesSyncStore(sky.sessions).queued_executions() == [ended]
    attempts: list[int] = []
    second = sky.executor(retry_initial_s=30.0)

    async def p2_back_after_a_few_retries() -> None:
        if not emulator.running:
            attempts.append(len(second.pending))
            if len(attempts) == 3:
                emulator.start()

    sky.hooks.append(p2_back_after_a_few_retries)
    await sky.run(second)

    assert attempts == [1, 1, 1]  # the new executor found the dead one's report in the operational DB
    # OB 1 recorded once, with the end the telescope saw; not executed again; OB 2 after it.
    assert sky.recorded() == [(ids[0], "executed"), (ids[1], "executed")]
    assert ended.end is not None and sky.executions()[0]["to"] == ended.end.isoformat()
    assert [e.p2_ob_id for e in second.report.executions] == [ids[1]]
    assert second.pending == []


class OutboxDownAtTheEnd(VesSyncStore):
    """The operational DB goes away as the first OB ends, for a few of the executor's attempts."""

    def __init__(self, sessions: sessionmaker[Session], refusals: int) -> None:
        super().__init__(sessions)
        self.refusals = refusals
        self.refused: list[Outcome] = []

    def queue_execution(self, execution: Execution, *, now: datetime) -> None:
        if execution.outcome is not Outcome.STARTED and len(self.refused) < self.refusals:
            self.refused.append(execution.outcome)
            raise BackendUnavailableError("the operational DB cannot be reached: connection refused")
        super().queue_execution(execution, now=now)


async def test_an_ob_end_the_operational_db_cannot_keep_yet_is_waited_for_not_dropped(sky: Night) -> None:
    ids = sky.planned(night(2))
    outbox = OutboxDownAtTheEnd(sky.sessions, refusals=3)
    executor = sky.executor(outbox)
    held: list[tuple[int, str]] = []

    async def while_refused() -> None:
        if 0 < len(outbox.refused) < outbox.refusals:
            held.append((sky.sim.telescope.ob_id, executor.report.waiting_for))

    sky.hooks.append(while_refused)
    await sky.run(executor)

    assert outbox.refused == [Outcome.EXECUTED] * 3
    # OB 2 waited until OB 1's end was kept, and the executor said why it waited.
    assert held and {ob for ob, _ in held} == {ids[0]}
    assert all(f"cannot keep the report of P2 OB {ids[0]}" in why for _, why in held)
    assert [(e.p2_ob_id, e.outcome) for e in executor.report.executions] == [(i, Outcome.EXECUTED) for i in ids]
    assert sky.recorded() == [(i, "executed") for i in ids]
    assert executor.pending == []


async def test_a_restarted_executor_does_not_execute_an_ob_twice_and_reports_the_one_it_stopped(sky: Night) -> None:
    ids = sky.planned(night(3))
    first = sky.executor()
    await sky.run(first, lambda: len(first.report.executions) == 1)

    second = sky.executor()
    await sky.run(second)

    # Stopped as OB 2 began: OB 2 was aborted (and said so to P2); the new executor skips OB 1.
    assert [(e.p2_ob_id, e.outcome) for e in first.report.executions] == [(ids[0], Outcome.EXECUTED),
                                                                         (ids[1], Outcome.ABORTED)]
    assert [e.p2_ob_id for e in second.report.executions] == ids[1:]
    assert sky.recorded() == [(ids[0], "executed"), (ids[1], "aborted"), (ids[1], "executed"), (ids[2], "executed")]


async def test_a_closed_dome_holds_the_ves_and_closing_it_aborts_the_running_ob(sky: Night) -> None:
    ids = sky.planned(night(2))
    telescope = sky.sim.telescope
    telescope.shutter = Shutter.CLOSED
    await sky.sim.publish()
    executor = sky.executor()

    await sky.run(executor, lambda: sky.clock.now() - DUSK > timedelta(minutes=30))
    assert executor.report.executions == []
    assert executor.report.waiting_for == "dome closed"
    assert telescope.exposure_state == "IDLE" and telescope.ob_id == 0

    events: list[str] = []

    async def weather() -> None:
        # The dome opens; half-way through OB 1's exposure it closes (wind), and opens again later.
        if not events:
            telescope.open_dome()
            events.append("opened")
        elif events == ["opened"] and telescope.ob_id == ids[0] and 0 < telescope.exposure_remaining_s < 300:
            telescope.close_dome()
            events.append("closed")
        elif events == ["opened", "closed"] and telescope.shutter == Shutter.CLOSED:
            telescope.open_dome()
            events.append("reopened")

    sky.hooks.append(weather)
    executor = sky.executor()
    await sky.run(executor)

    assert events == ["opened", "closed", "reopened"]
    outcomes = [(e.p2_ob_id, e.outcome) for e in executor.report.executions]
    assert outcomes == [(ids[0], Outcome.ABORTED), (ids[0], Outcome.EXECUTED), (ids[1], Outcome.EXECUTED)]
    assert sky.recorded() == [(ids[0], "aborted"), (ids[0], "executed"), (ids[1], "executed")]


async def test_a_telescope_parked_by_the_operator_holds_the_ves_until_it_is_moved_again(sky: Night) -> None:
    ids = sky.planned(night(2))
    telescope = sky.sim.telescope
    parked_at: list[datetime] = []
    executor = sky.executor()

    async def operator() -> None:
        if not parked_at and telescope.ob_id == ids[0] and telescope.exposure_state == "EXPOSING":
            telescope.park()
            parked_at.append(sky.clock.now())
        elif parked_at and sky.clock.now() - parked_at[0] > timedelta(hours=1) and telescope.state == "PARKED":
            # An hour later the operator points the telescope somewhere: the executor takes over again.
            assert executor.report.waiting_for == "telescope parked by someone else"
            assert [e.outcome for e in executor.report.executions] == [Outcome.ABORTED]
            telescope.slew_to(60.0, 180.0)

    sky.hooks.append(operator)
    await sky.run(executor)

    outcomes = [(e.p2_ob_id, e.outcome) for e in executor.report.executions]
    assert outcomes == [(ids[0], Outcome.ABORTED), (ids[0], Outcome.EXECUTED), (ids[1], Outcome.EXECUTED)]
    assert executor.report.executions[1].start - parked_at[0] > timedelta(hours=1)


async def test_an_ob_whose_target_is_below_the_limit_is_passed_over_not_recorded(sky: Night) -> None:
    ids = sky.planned([block(12), *night(2)])  # OB 12's target is 35° below the horizon at dusk
    executor = sky.executor()

    await sky.run(executor)

    assert [e.p2_ob_id for e in executor.report.executions] == ids[1:]
    assert [ob_id for ob_id, _ in sky.recorded()] == ids[1:]
    assert client(sky.environment, "soxs").get_ob(ids[0])[0]["obStatus"] == "+"


async def test_the_telescope_server_going_away_mid_ob_is_waited_out(
    clock: FakeClock, service: VesSyncService, environment: str, sessions: sessionmaker[Session]
) -> None:
    telescope = Telescope(shutter=Shutter.OPEN)
    port = free_port()
    sky = Night(TelescopeSimulator(port=port, clock=clock, telescope=telescope), clock, environment, service, sessions)
    ids = sky.planned(night(2))
    await sky.sim.start()
    down: list[int] = []

    async def server_restart() -> None:
        # The OPC-UA server goes away during OB 1's exposure (the telescope itself keeps exposing) and
        # comes back on the same port after a few of the executor's retries.
        if not down and telescope.ob_id == ids[0] and telescope.exposure_state == "EXPOSING":
            await sky.sim.stop()
            down.append(0)
        elif down and down[0] < 3:
            down[0] += 1
            if down[0] == 3:
                sky.sim = TelescopeSimulator(port=port, clock=clock, telescope=telescope)
                await sky.sim.start()

    sky.hooks.append(server_restart)
    executor = sky.executor()
    try:
        await sky.run(executor)
    finally:
        await sky.sim.stop()

    assert down == [3]
    assert [(e.p2_ob_id, e.outcome) for e in executor.report.executions] == [(i, Outcome.EXECUTED) for i in ids]
    assert sky.recorded() == [(i, "executed") for i in ids]


async def test_a_ves_p2_refuses_to_show_holds_the_night_with_the_reason(sky: Night) -> None:
    sky.planned(night(1))
    executor = sky.executor(instrument="NOSUCH")

    await sky.run(executor, lambda: "cannot read" in executor.report.waiting_for)

    assert "cannot read the NOSUCH VES from P2" in executor.report.waiting_for
    assert "unknown instrument 'NOSUCH'" in executor.report.waiting_for
    assert executor.report.executions == []
    assert sky.sim.telescope.exposure_state == "IDLE"
