"""The monitor manager: starts, stops and reports the monitoring components, and publishes their state as points."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from collectors.publisher import SamplePublisher
from skyops.bus import Bus
from skyops.errors import SkyopsError
from skyops.records import Sample
from skyops.streams import MON_SAMPLES
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)

Runner = Callable[[asyncio.Event], Awaitable[None]]


class ComponentState(StrEnum):
    STOPPED = "STOPPED"
    RUNNING = "RUNNING"
    FAILED = "FAILED"


@dataclass
class Component:
    """A monitoring component: a `run(stop)` coroutine, and how its health reads (default: running)."""

    name: str
    run: Runner
    up_point: str | None = None
    healthy: Callable[[], bool] = field(default=lambda: True)
    state: ComponentState = ComponentState.STOPPED
    error: str | None = None
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: ComponentState
    healthy: bool
    error: str | None


class MonitorManager:
    """Coordinates the monitoring subsystem (the ASTRI "Monitor Manager").

    Every `status_period_s` it publishes each component's `up` point (running and healthy) and the
    Mon Queue backlog of the archive group, so the monitoring system watches itself.
    """

    def __init__(self, bus: Bus, publisher: SamplePublisher, *, clock: Clock | None = None,
                 backlog_point: str | None = None, group: str = "archive", stream: str = MON_SAMPLES,
                 status_period_s: float = 10.0) -> None:
        self.bus = bus
        self.publisher = publisher
        self.clock: Clock = clock or SystemClock()
        self.backlog_point = backlog_point
        self.group = group
        self.stream = stream
        self.status_period_s = status_period_s
        self.components: dict[str, Component] = {}
        self._stop_status = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None

    def add(self, component: Component) -> None:
        if component.name in self.components:
            raise SkyopsError(f"a monitoring component named {component.name!r} exists already")
        self.components[component.name] = component

    def _get(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise SkyopsError(f"no monitoring component {name!r}; known: {', '.join(self.components)}") from None

    async def start(self, name: str | None = None) -> None:
        """Start one component (or all, and the status reporter)."""
        for c in [self._get(name)] if name else list(self.components.values()):
            if c.state is ComponentState.RUNNING:
                continue
            c._stop = asyncio.Event()
            c.state, c.error = ComponentState.RUNNING, None
            c._task = asyncio.create_task(self._supervise(c, c._stop), name=f"monitoring:{c.name}")
        if name is None and self._status_task is None:
            self._stop_status = asyncio.Event()
            self._status_task = asyncio.create_task(self._status_loop())

    async def _supervise(self, c: Component, stop: asyncio.Event) -> None:
        try:
            await c.run(stop)
            c.state = ComponentState.STOPPED
        except asyncio.CancelledError:
            c.state = ComponentState.STOPPED
            raise
        except Exception as exc:  # a component's crash is reported, and does not take the others down
            c.state, c.error = ComponentState.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("monitoring component %s failed: %s", c.name, c.error)

    async def stop(self, name: str | None = None, *, timeout_s: float = 10.0) -> None:
        """Ask one component (or all) to stop, cancelling whatever has not finished in `timeout_s`."""
        targets = [self._get(name)] if name else list(self.components.values())
        if name is None and self._status_task is not None:
            self._stop_status.set()
            await self._status_task
            self._status_task = None
        for c in targets:
            if c._stop is not None:
                c._stop.set()
        for c in targets:
            if c._task is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(c._task), timeout_s)
            except TimeoutError:
                c._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c._task
                log.warning("monitoring component %s did not stop in %.0f s: cancelled", c.name, timeout_s)
            c._task = None
        if name is None:
            await self.report()

    def status(self) -> list[ComponentStatus]:
        return [ComponentStatus(c.name, c.state, c.state is ComponentState.RUNNING and c.healthy(), c.error)
                for c in self.components.values()]

    async def report(self) -> list[Sample]:
        """Publish every component's `up` point and the backlog; returns what was published."""
        now = self.clock.now()
        samples = [Sample(c.up_point, now, c.state is ComponentState.RUNNING and c.healthy())
                   for c in self.components.values() if c.up_point is not None]
        if self.backlog_point is not None:
            # No group yet means nothing is consumed yet: there is no backlog to report.
            with contextlib.suppress(SkyopsError):
                samples.append(Sample(self.backlog_point, now, await self.bus.lag(self.stream, self.group)))
        await self.publisher.publish(samples)
        return samples

    async def _status_loop(self) -> None:
        while not self._stop_status.is_set():
            try:
                await self.report()
            except Exception as exc:  # the bus may be down: the next round tries again
                log.warning("monitor manager: cannot publish component status: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_status.wait(), timeout=self.status_period_s)
