"""The NTT telescope simulator: an OPC-UA server on loopback with an NTT-like address space and methods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua import ua as _ua
from asyncua.server.server import Server

from collectors.domain.telescope import Telescope
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)

# asyncua's hints use NewTypes (Int32, String, DateTime…) that refuse plain Python values.
ua: Any = _ua

NAMESPACE = "urn:skyops:ntt"


@dataclass(frozen=True)
class Variable:
    obj: str
    name: str
    kind: Any
    read: Callable[[Telescope], object]


# Node ids are "ns=2;s=NTT.<object>.<name>": the namespace is the first one the server registers.
VARIABLES: tuple[Variable, ...] = (
    Variable("TCS", "Altitude", ua.VariantType.Double, lambda t: t.altitude),
    Variable("TCS", "Azimuth", ua.VariantType.Double, lambda t: t.azimuth),
    Variable("TCS", "State", ua.VariantType.String, lambda t: str(t.state)),
    Variable("Dome", "Azimuth", ua.VariantType.Double, lambda t: t.dome_azimuth),
    Variable("Dome", "Shutter", ua.VariantType.String, lambda t: str(t.shutter)),
    Variable("M1", "Temperature", ua.VariantType.Double, lambda t: t.m1_temperature),
    Variable("Instrument", "State", ua.VariantType.String, lambda t: t.instrument_state),
    Variable("Exposure", "ObId", ua.VariantType.Int64, lambda t: t.ob_id),
    Variable("Exposure", "State", ua.VariantType.String, lambda t: str(t.exposure_state)),
    Variable("Exposure", "Remaining", ua.VariantType.Double, lambda t: t.exposure_remaining_s),
)


def node_key(v: Variable) -> str:
    return f"NTT.{v.obj}.{v.name}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class TelescopeSimulator:
    """Serves a `Telescope` over OPC-UA; `tick` moves it to the clock's time and publishes every variable."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None,
                 telescope: Telescope | None = None, ambient: Callable[[datetime], float] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.clock: Clock = clock or SystemClock()
        self.telescope = telescope or Telescope()
        self.ambient = ambient or (lambda _: 10.0)
        self.server = Server()
        self._nodes: dict[str, Any] = {}
        self._faults: dict[str, Any] = {}
        self._last: datetime | None = None
        self.ns = 0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/ntt/"

    def node_id(self, key: str) -> str:
        """The string form of a variable's node id, e.g. `ns=2;s=NTT.TCS.Altitude`."""
        return f"ns={self.ns};s={key}"

    async def start(self) -> None:
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("NTT telescope simulator (skyops)")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await self.server.register_namespace(NAMESPACE)
        objects: dict[str, object] = {}
        ns = self.ns
        for v in VARIABLES:
            if v.obj not in objects:
                objects[v.obj] = await self.server.nodes.objects.add_object(
                    ua.NodeId(f"NTT.{v.obj}", ns), ua.QualifiedName(v.obj, ns))
            obj = objects[v.obj]
            node = await obj.add_variable(  # type: ignore[attr-defined]
                ua.NodeId(node_key(v), ns), ua.QualifiedName(v.name, ns), v.read(self.telescope), varianttype=v.kind)
            self._nodes[node_key(v)] = node.nodeid
        await self._add_methods(objects)
        await self.server.start()
        self._last = self.clock.now()
        await self.publish()

    async def _add_methods(self, objects: dict[str, object]) -> None:
        ns, t = self.ns, self.telescope
        dbl, i64 = ua.VariantType.Double, ua.VariantType.Int64

        def method(fn: Callable[..., None]) -> Callable[..., object]:
            async def call(_parent: Any, *args: Any) -> list[Any]:
                try:
                    fn(*(a.Value for a in args))
                except ValueError as exc:
                    log.warning("telescope simulator refused a command: %s", exc)
                    raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidArgument) from exc
                await self.publish()
                return []
            return call

        specs: list[tuple[str, str, Callable[..., None], list[tuple[str, Any]]]] = [
            ("TCS", "Park", t.park, []),
            ("TCS", "SlewTo", t.slew_to, [("Altitude", dbl), ("Azimuth", dbl)]),
            ("Dome", "Close", t.close_dome, []),
            ("Dome", "Open", t.open_dome, []),
            ("Exposure", "Start", t.start_exposure, [("ObId", i64), ("Seconds", dbl)]),
            ("Exposure", "Abort", t.abort_exposure, []),
        ]
        for obj_name, name, fn, args in specs:
            arguments = [ua.Argument(Name=a, DataType=ua.NodeId(k.value), ValueRank=-1) for a, k in args]
            await objects[obj_name].add_method(  # type: ignore[attr-defined]
                ua.NodeId(f"NTT.{obj_name}.{name}", ns), ua.QualifiedName(name, ns), method(fn), arguments, [])

    async def stop(self) -> None:
        await self.server.stop()

    def fail(self, key: str, status: int | None = None) -> None:
        """Report variable `key` (e.g. `NTT.M1.Temperature`) with an OPC-UA status code from now on."""
        if key not in self._nodes:
            raise KeyError(f"no variable {key!r}")
        self._faults[key] = ua.StatusCode(ua.StatusCodes.BadSensorFailure if status is None else status)

    def repair(self, key: str) -> None:
        self._faults.pop(key, None)

    async def tick(self) -> None:
        """Advance the telescope to the clock's time and publish every variable."""
        now = self.clock.now()
        if self._last is not None:
            self.telescope.step((now - self._last).total_seconds(), ambient_c=self.ambient(now))
        self._last = now
        await self.publish()

    async def publish(self) -> None:
        now = self.clock.now()
        for v in VARIABLES:
            key = node_key(v)
            fault = self._faults.get(key)
            # A failed sensor has no value, only its bad status (which also passes any deadband filter).
            value = None if fault is not None else ua.Variant(v.read(self.telescope), v.kind)
            dv = ua.DataValue(value, StatusCode=fault if fault is not None else ua.StatusCode(ua.StatusCodes.Good),
                              SourceTimestamp=now, ServerTimestamp=now)
            await self.server.write_attribute_value(self._nodes[key], dv)

    async def run(self, stop: asyncio.Event, *, tick_s: float = 0.2) -> None:
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_s)


@contextlib.asynccontextmanager
async def serve(host: str = "127.0.0.1", port: int = 0, *, clock: Clock | None = None,
                telescope: Telescope | None = None, tick_s: float | None = 0.2) -> AsyncIterator[TelescopeSimulator]:
    """Run the simulator (ticking every `tick_s` of real time; None: only when `tick()` is called)."""
    sim = TelescopeSimulator(host=host, port=port, clock=clock, telescope=telescope)
    await sim.start()
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop, tick_s=tick_s)) if tick_s is not None else None
    try:
        yield sim
    finally:
        stop.set()
        if task is not None:
            await task
        await sim.stop()
