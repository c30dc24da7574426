"""`VesExecutor`: the operator's BOB — works through the Operator's VES on the telescope, reports executions to P2."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from skyops.errors import BackendUnavailableError
from skyops.timeutil import Clock, FakeClock
from ves_sync.domain.execution import (
    Execution,
    ObToExecute,
    Outcome,
    TargetError,
    TelescopeStatus,
    alt_az,
    executed_tonight,
    exposure_outcome,
    next_ob,
    night_of,
)
from ves_sync.p2 import P2CallError, P2Client, P2UnreachableError
from ves_sync.telescope import TelescopeClient, TelescopeRefusedError, TelescopeUnavailableError

log = logging.getLogger(__name__)
Json = Any


class Pace(Protocol):
    """How the executor lets telescope time pass: `sleep(s)` returns once `s` seconds of the clock have gone by."""

    async def sleep(self, seconds: float) -> None: ...


class ExecutionOutbox(Protocol):
    """Where execution reports wait until P2 takes them (`VesSyncStore`: the operational DB, so a crash keeps them)."""

    def queue_execution(self, execution: Execution, *, now: datetime) -> None: ...

    def queued_executions(self) -> list[Execution]: ...

    def execution_sent(self, execution: Execution) -> bool: ...


class ScaledPace:
    """Real waiting, `speed` times shorter than the telescope time it stands for (pairs with `AcceleratedClock`)."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class ClockDrive:
    """Moves a `FakeClock` instead of waiting, then runs `on_advance` (e.g. tick a simulator): a night in no time."""

    def __init__(self, clock: FakeClock, on_advance: Callable[[], Awaitable[None]] | None = None) -> None:
        self.clock = clock
        self.on_advance = on_advance
        self.advanced_s = 0.0

    async def sleep(self, seconds: float) -> None:
        step = max(0.0, seconds)
        self.clock.advance(step)
        self.advanced_s += step
        if self.on_advance is not None:
            await self.on_advance()
        await asyncio.sleep(0)


@dataclass(frozen=True)
class ExecutorSettings:
    """Where the telescope is and how patient the executor is; every duration is in telescope (clock) seconds."""

    instrument: str = "SOXS"
    latitude_deg: float = -29.2567
    longitude_deg: float = -70.7346
    min_altitude_deg: float = 15.0
    poll_s: float = 10.0
    idle_s: float = 60.0
    slew_timeout_s: float = 900.0
    retry_initial_s: float = 5.0
    retry_max_s: float = 120.0
    open_dome: bool = False

    def __post_init__(self) -> None:
        for name in ("poll_s", "idle_s", "slew_timeout_s", "retry_initial_s", "retry_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"executor setting {name} must be positive, got {getattr(self, name)}")


@dataclass
class ExecutorReport:
    """What the executor has done so far: finished executions in order, and why it last waited."""

    executions: list[Execution] = field(default_factory=list)
    waiting_for: str = ""
    current: int | None = None


class _Stopped(Exception):
    """The executor was asked to stop."""


class VesExecutor:
    """Fetches the Operator's VES through p2api and executes it OB by OB on the telescope over OPC-UA.

    Between OBs it reads the VES again (a re-plan takes effect at the next OB) and P2's executions of
    the night (an OB executed tonight is not executed again, even after a restart). It observes only
    with the dome open; if someone else parks or moves the telescope during an OB, the OB is aborted and
    the executor holds until they leave it tracking again or the dome has been closed. Executions are
    reported to P2 when an OB starts and ends, through `outbox`: a report P2 cannot take yet stays
    there, across a crash too, and is sent again (P2 updates, never duplicates, an execution).
    """

    def __init__(self, *, p2: P2Client, telescope: TelescopeClient, outbox: ExecutionOutbox, clock: Clock,
                 pace: Pace, settings: ExecutorSettings | None = None) -> None:
        self.p2 = p2
        self.telescope = telescope
        self.outbox = outbox
        self.clock = clock
        self.pace = pace
        self.settings = settings or ExecutorSettings()
        self.report = ExecutorReport()
        self._done: dict[str, set[int]] = {}
        self._passed: set[int] = set()
        self._held_by_park = False
        self._failures = 0
        self._stop = asyncio.Event()

    # -- the loop ------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Execute the VES until `stop` is set; an OB running then is aborted and reported."""
        self._stop = stop
        try:
            if self.settings.open_dome:
                await self._retrying(self.telescope.open_dome, "open the dome")
            while not stop.is_set():
                wait_s = await self.step()
                if wait_s > 0:
                    await self._pause(wait_s)
        except _Stopped:
            pass
        finally:
            with contextlib.suppress(Exception):
                await self._flush()
            await self.telescope.close()
            self.p2.close()

    async def step(self) -> float:
        """Take one decision: execute the next OB, or say how many clock seconds to wait before looking again."""
        await self._flush()
        try:
            status = await self.telescope.status()
        except TelescopeUnavailableError as exc:
            return self._trouble(f"telescope: {exc}")
        if not status.dome_open:
            self._held_by_park = False
            return self._wait(f"dome {status.shutter.lower()}", self.settings.idle_s)
        if self._held_by_park:
            # Taken over by someone else: ours again once they leave it tracking (or close the dome).
            if status.mount != "TRACKING":
                return self._wait("telescope parked by someone else", self.settings.idle_s)
            self._held_by_park = False
        now = self.clock.now()
        night = night_of(now, self.settings.longitude_deg)
        try:
            ves_ids, done = await self._read_ves(night)
        except (P2UnreachableError, P2CallError) as exc:
            # Even a refusal (a wrong instrument, a withdrawn delegation) only holds the night: it is
            # logged and asked again with backoff, so that fixing it in P2 resumes the executor.
            return self._trouble(f"cannot read the {self.settings.instrument} VES from P2: {exc}")
        p2_ob_id = next_ob(ves_ids, done, self._passed)
        if p2_ob_id is None:
            # OBs passed over (target too low, unreadable) get another chance after the wait.
            self._passed.clear()
            return self._wait("nothing left in the VES to execute", self.settings.idle_s)
        try:
            raw, _ = await asyncio.to_thread(self.p2.get_ob, p2_ob_id)
            ob = ObToExecute.from_p2(raw)
        except P2UnreachableError as exc:
            return self._trouble(f"P2: {exc}")
        except (TargetError, P2CallError) as exc:
            if isinstance(exc, P2CallError) and (exc.status >= 500 or exc.status in (401, 429)):
                return self._trouble(f"P2: {exc}")
            log.warning("VES executor: passing over P2 OB %d: %s", p2_ob_id, exc)
            self._passed.add(p2_ob_id)
            return 0.0
        self._failures = 0
        await self.execute(ob, night)
        return 0.0

    async def _read_ves(self, night: str) -> tuple[list[int], set[int]]:
        ves, _ = await asyncio.to_thread(self.p2.get_execution_sequence, self.settings.instrument)
        executions = await asyncio.to_thread(self.p2.get_night_executions, self.settings.instrument, night)
        done = self._done.setdefault(night, set())
        done |= executed_tonight(executions)
        for old in [n for n in self._done if n != night]:
            del self._done[old]
        return [int(e["obId"]) for e in ves], done

    # -- one OB ----------------------------------------------------------------------------------------

    async def execute(self, ob: ObToExecute, night: str) -> Outcome:
        """Slew to the OB's target, wait until tracking, expose, and report the execution to P2."""
        s = self.settings
        start = self.clock.now()
        alt, az = alt_az(ob.ra_deg, ob.dec_deg, start, latitude_deg=s.latitude_deg, longitude_deg=s.longitude_deg)
        if alt < s.min_altitude_deg:
            log.info("VES executor: P2 OB %d (%s) is at altitude %.1f°, below %.0f°: passed over for now",
                     ob.p2_ob_id, ob.target_name, alt, s.min_altitude_deg)
            self._passed.add(ob.p2_ob_id)
            return Outcome.FAILED
        try:
            await self.telescope.slew_to(alt, az)
        except TelescopeRefusedError as exc:
            log.warning("VES executor: P2 OB %d passed over: %s", ob.p2_ob_id, exc)
            self._passed.add(ob.p2_ob_id)
            return Outcome.FAILED
        except TelescopeUnavailableError as exc:
            self._trouble(f"telescope: {exc}")
            return Outcome.FAILED
        log.info("VES executor: P2 OB %d (%s): slewing to alt %.1f° az %.1f°", ob.p2_ob_id, ob.name, alt, az)
        self.report.current = ob.p2_ob_id
        execution = Execution(ob.p2_ob_id, night, start, Outcome.STARTED)
        await self._queue(execution)
        await self._flush()
        try:
            outcome = await self._observe(ob, start)
        except _Stopped:
            with contextlib.suppress(TelescopeUnavailableError, TelescopeRefusedError):
                await self.telescope.abort_exposure()
            await self._finish(execution, Outcome.ABORTED)
            raise
        await self._finish(execution, outcome)
        await self._flush()
        return outcome

    async def _finish(self, execution: Execution, outcome: Outcome) -> None:
        done = execution.finished(outcome, max(self.clock.now(), execution.start))
        await self._queue(done)
        self.report.executions.append(done)
        self.report.current = None
        if outcome is Outcome.EXECUTED:
            self._done.setdefault(execution.night, set()).add(execution.p2_ob_id)
        elif outcome is Outcome.FAILED:
            # The next OBs get their turn before this one is tried again.
            self._passed.add(execution.p2_ob_id)
        log.info("VES executor: P2 OB %d %s", execution.p2_ob_id, outcome)

    async def _observe(self, ob: ObToExecute, start: datetime) -> Outcome:
        s = self.settings
        while True:  # slewing
            status = await self._status()
            interrupted = self._interrupted(status, slewing=True)
            if interrupted is not None:
                return interrupted
            if status.mount == "TRACKING":
                break
            if (self.clock.now() - start).total_seconds() > s.slew_timeout_s:
                log.warning("VES executor: P2 OB %d: no tracking after %.0f s", ob.p2_ob_id, s.slew_timeout_s)
                return Outcome.FAILED
            await self._pause(s.poll_s)
        seconds = ob.exposure_seconds((self.clock.now() - start).total_seconds())
        try:
            await self.telescope.start_exposure(ob.p2_ob_id, seconds)
        except TelescopeRefusedError as exc:
            log.warning("VES executor: P2 OB %d: %s", ob.p2_ob_id, exc)
            return Outcome.FAILED
        except TelescopeUnavailableError as exc:
            # The command may or may not have arrived: the exposure nodes tell, once the telescope answers.
            log.warning("VES executor: P2 OB %d: exposure start uncertain: %s", ob.p2_ob_id, exc)
        log.info("VES executor: P2 OB %d: exposing %.0f s", ob.p2_ob_id, seconds)
        while True:  # exposing and reading out
            status = await self._status()
            # Checked first: a park also aborts the exposure, and the executor must know it was a park.
            interrupted = self._interrupted(status, slewing=False)
            if interrupted is not None:
                with contextlib.suppress(TelescopeUnavailableError, TelescopeRefusedError):
                    await self.telescope.abort_exposure()
                return interrupted
            outcome = exposure_outcome(status, ob.p2_ob_id)
            if outcome is not None:
                return outcome
            await self._flush()
            # Never longer than a poll: a dome closing mid-exposure must cut the OB short, not end it.
            wait = status.exposure_remaining_s if status.exposure_state == "EXPOSING" else s.poll_s
            await self._pause(min(max(wait, 1.0), s.poll_s))

    def _interrupted(self, status: TelescopeStatus, *, slewing: bool) -> Outcome | None:
        """An OB is cut short when the dome leaves OPEN, or the telescope is parked or moved by someone else."""
        if not status.dome_open:
            log.warning("VES executor: dome %s: OB aborted", status.shutter)
            return Outcome.ABORTED
        if status.mount == "PARKED" or (not slewing and status.mount == "SLEWING"):
            log.warning("VES executor: telescope %s by someone else: OB aborted, holding", status.mount.lower())
            self._held_by_park = True
            return Outcome.ABORTED
        return None

    async def _status(self) -> TelescopeStatus:
        """The telescope's status, waiting out a broken session (the telescope's nodes are the truth)."""
        while True:
            try:
                status = await self.telescope.status()
                self._failures = 0
                return status
            except TelescopeUnavailableError as exc:
                await self._pause(self._trouble(f"telescope: {exc}"))

    # -- reports to P2 ---------------------------------------------------------------------------------

    async def _queue(self, execution: Execution) -> None:
        # Stored before it is sent: a crash between the two leaves it to the next executor, not to nobody.
        # So the executor goes no further until the operational DB has it.
        while True:
            try:
                await asyncio.to_thread(self.outbox.queue_execution, execution, now=self.clock.now())
                return
            except BackendUnavailableError as exc:
                await self._pause(self._trouble(f"cannot keep the report of P2 OB {execution.p2_ob_id}: {exc}"))

    @property
    def pending(self) -> list[Execution]:
        """Execution reports not yet accepted by P2, oldest first."""
        return self.outbox.queued_executions()

    async def _flush(self) -> None:
        try:
            queued = await asyncio.to_thread(self.outbox.queued_executions)
        except BackendUnavailableError as exc:
            log.warning("VES executor: queued execution reports unreadable for now: %s", exc)
            return
        for execution in queued:
            try:
                await asyncio.to_thread(self.p2.record_execution, self.settings.instrument, execution.to_p2())
            except P2UnreachableError as exc:
                log.warning("VES executor: P2 unreachable, %d execution report(s) kept: %s", len(queued), exc)
                return
            except P2CallError as exc:
                if exc.status >= 500 or exc.status in (401, 429):
                    log.warning("VES executor: P2 failing, execution reports kept: %s", exc)
                    return
                log.error("VES executor: P2 refused the execution report %s: %s", execution.to_p2(), exc.message)
            # A crash (or a DB outage) before this is forgotten sends it again: P2 updates the execution of
            # that OB and start.
            try:
                await asyncio.to_thread(self.outbox.execution_sent, execution)
            except BackendUnavailableError as exc:
                log.warning("VES executor: execution report sent, but still queued: %s", exc)
                return

    # -- waiting -----------------------------------------------------------------------------------------

    def _wait(self, why: str, seconds: float) -> float:
        if why != self.report.waiting_for:
            log.info("VES executor: waiting: %s", why)
        self.report.waiting_for = why
        return seconds

    def _trouble(self, why: str) -> float:
        """Back off exponentially (in clock seconds) while the telescope or P2 cannot be reached."""
        self._failures += 1
        wait: float = min(self.settings.retry_initial_s * 2.0 ** min(self._failures - 1, 30), self.settings.retry_max_s)
        log.warning("VES executor: %s; trying again in %.0f s", why, wait)
        self.report.waiting_for = why
        return wait

    async def _retrying(self, command: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            try:
                await command()
                return
            except TelescopeUnavailableError as exc:
                await self._pause(self._trouble(f"cannot {what}: {exc}"))

    async def _pause(self, seconds: float) -> None:
        if self._stop.is_set():
            raise _Stopped
        sleeping = asyncio.ensure_future(self.pace.sleep(seconds))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, stopping):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(sleeping, stopping, return_exceptions=True)
        if self._stop.is_set():
            raise _Stopped
