"""Running a process's parts together: start, heartbeats for `skyops status`, stop on a signal or a crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)

HEARTBEATS_KEY = "skyops:heartbeats"  # hash: part name → JSON heartbeat (see `Heartbeat`)
HEARTBEAT_PERIOD_S = 5.0


def _always_healthy() -> tuple[bool, str]:
    return True, ""


@dataclass
class Part:
    """One long-running piece of a process (a consumer, a server, a simulator): `run(stop)` until `stop` is set.

    `health` answers (healthy, detail) at any time; it feeds the heartbeats `skyops status` reads.
    Parts stop by ascending `stop_order`: simulators (1) outlive the services (0) that talk to them,
    so a stopping collector does not spend its stop timeout retrying a vanished simulator.
    """

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]
    health: Callable[[], tuple[bool, str]] = _always_healthy
    stop_order: int = 0


@dataclass(frozen=True)
class Heartbeat:
    """What a part last said about itself, with the process it runs in."""

    part: str
    ts: datetime
    healthy: bool
    detail: str
    state: str  # running | stopped | failed
    process: str
    host: str
    pid: int

    def encode(self) -> str:
        return json.dumps({"part": self.part, "ts": self.ts.isoformat(), "healthy": self.healthy,
                           "detail": self.detail, "state": self.state, "process": self.process,
                           "host": self.host, "pid": self.pid})

    @classmethod
    def decode(cls, raw: bytes | str) -> Heartbeat:
        """A heartbeat from its JSON; a malformed one raises ValueError naming what is wrong."""
        try:
            d: dict[str, Any] = json.loads(raw)
            return cls(part=str(d["part"]), ts=datetime.fromisoformat(d["ts"]), healthy=bool(d["healthy"]),
                       detail=str(d["detail"]), state=str(d["state"]), process=str(d["process"]),
                       host=str(d["host"]), pid=int(d["pid"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed heartbeat: {type(exc).__name__}: {exc}") from None


class PartFailedError(RuntimeError):
    """A part ended with an error, or returned before it was asked to stop."""


@dataclass
class Runner:
    """Runs parts as tasks; when `stop` is set or a part fails, stops every part, cancelling stragglers.

    A failed part stops the whole process (reported by `run` raising PartFailedError): in
    distributed mode the supervisor (systemd, honcho) restarts it, and the stream consumers
    resume from their pending entries, so nothing is lost by stopping rather than limping on.
    """

    process: str
    parts: list[Part]
    redis: aioredis.Redis | None = None
    clock: Clock = field(default_factory=SystemClock)
    heartbeat_period_s: float = HEARTBEAT_PERIOD_S
    stop_timeout_s: float = 15.0
    host: str = field(default_factory=socket.gethostname)
    failures: dict[str, str] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"part names must be unique: {names}")
        stages = {order: asyncio.Event() for order in sorted({p.stop_order for p in self.parts})}
        tasks = {asyncio.create_task(self._guard(p, stages[p.stop_order], stop), name=f"part:{p.name}"): p
                 for p in self.parts}
        beats = asyncio.create_task(self._heartbeats(stop), name="heartbeats")
        try:
            await stop.wait()
        finally:
            stop.set()
            for order, stage in stages.items():
                stage.set()
                await self._finish([t for t, p in tasks.items() if p.stop_order == order], tasks)
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            await self._beat("stopped")
        if self.failures:
            raise PartFailedError("; ".join(f"{n}: {why}" for n, why in self.failures.items()))

    async def _finish(self, stage: list[asyncio.Task[None]], tasks: dict[asyncio.Task[None], Part]) -> None:
        if not stage:
            return
        _, pending = await asyncio.wait(stage, timeout=self.stop_timeout_s)
        for task in pending:
            log.warning("part %s did not stop within %.0f s: cancelled", tasks[task].name, self.stop_timeout_s)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _guard(self, part: Part, stage: asyncio.Event, stop: asyncio.Event) -> None:
        try:
            await part.run(stage)
            if not stage.is_set():
                self.failures[part.name] = "returned before it was asked to stop"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one part's crash is reported and stops the process, never silently
            self.failures[part.name] = f"{type(exc).__name__}: {exc}"
            log.exception("part %s failed; stopping %s", part.name, self.process)
        finally:
            if part.name in self.failures:
                stop.set()

    def heartbeats(self, state: str = "running") -> list[Heartbeat]:
        now = self.clock.now()
        beats = []
        for p in self.parts:
            failed = p.name in self.failures
            try:
                healthy, detail = p.health()
            except Exception as exc:  # a broken health probe is itself a health problem
                healthy, detail = False, f"health probe failed: {type(exc).__name__}: {exc}"
            beats.append(Heartbeat(part=p.name, ts=now, healthy=healthy and not failed,
                                   detail=self.failures.get(p.name, detail), state="failed" if failed else state,
                                   process=self.process, host=self.host, pid=os.getpid()))
        return beats

    async def _beat(self, state: str = "running") -> None:
        if self.redis is None or not self.parts:
            return
        try:
            await self.redis.hset(HEARTBEATS_KEY, mapping={b.part: b.encode() for b in self.heartbeats(state)})
        except (RedisError, OSError) as exc:  # Redis down: `status` shows the heartbeats ageing
            log.warning("heartbeats not written: %s: %s", type(exc).__name__, exc)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.heartbeat_period_s)


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set `stop` (a second SIGINT is handled the same: parts get their stop timeout).

    Returns the function that removes the handlers.
    """
    loop = asyncio.get_running_loop()
    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in sigs:
            loop.remove_signal_handler(sig)

    return remove


async def wait_stopped(stop: asyncio.Event) -> None:
    """The body of a part that only holds something open (a simulator started by the builder)."""
    await stop.wait()
