"""The platform's parts, built from the services' factories: `skyops up` takes them all, `skyops run` one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
import uvicorn
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp

from alarms.factory import build_dispatcher, build_supervisor
from collectors.domain.weather import Scenario
from collectors.factory import build_monitoring
from collectors.simulators.asm import CURRENT_PATH, AsmSimulator, load_scenario
from collectors.simulators.asm import create_app as create_asm_app
from collectors.simulators.telescope import TelescopeSimulator
from config_db.logging import LoggingConfig, load_logging_config
from config_db.monitoring import MonitoringConfig, load_monitoring
from deploy.factory import Platform, build_hmi_services, build_log_intake, build_marshall
from deploy.runner import Part, wait_stopped
from deploy.sample_obs import SAMPLE_OBS_PATH, load_sample_obs, read_sample_obs
from deploy.status import gather_status
from hmi_api.app import create_app
from logging_svc.factory import build_logging_service
from logging_svc.handler import ShipperThread, install_bus_logging, uninstall_bus_logging
from planner import factory as planner_factory
from planner.config import load_site
from planner.gcn.factory import GcnConfigError
from planner.gcn.factory import build as build_gcn
from planner.service import night_of
from skyops.bus import Bus, StreamConsumer, open_redis
from skyops.opdb import make_sessionmaker
from skyops.timeutil import Clock
from ves_sync import factory as ves_factory
from ves_sync.emulator import EmulatorServer
from ves_sync.executor import ScaledPace

log = logging.getLogger(__name__)

SIMULATOR = 1  # stop order: simulators stop after the services that talk to them


@dataclass
class Assembly:
    """What one process runs: its parts, the addresses it serves, and what closes the resources builders opened."""

    platform: Platform | None
    clock: Clock
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    parts: list[Part] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, platform: Platform) -> Assembly:
        return cls(platform, platform.clock)

    @property
    def p(self) -> Platform:
        """The opened backends; simulators run without them."""
        if self.platform is None:
            raise RuntimeError("this process runs without backends (a simulator)")
        return self.platform

    async def aclose(self) -> None:
        await self.stack.aclose()


class QuietServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers: the runner owns the signals and stops every part."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket bound now (port 0: a free one), so the address is known before serving starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def asgi_part(name: str, app: ASGIApp, sock: socket.socket, *, lifespan: Literal["on", "off"] = "on",
              before_stop: Callable[[], None] | None = None, stop_order: int = 0) -> Part:
    """A part serving `app` on `sock` until stopped."""
    # No permessage-deflate: the HMI's frames are small JSON on a control-room LAN, and a compressor per connection
    # cannot be shared, so 200 screens paid 200 compressions per alarm (a quarter of the server's CPU per message).
    server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=3,
                                        ws_per_message_deflate=False))

    async def run(stop: asyncio.Event) -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # why it could not serve
                raise RuntimeError(f"{name} stopped serving")
        finally:
            waiter.cancel()
            if before_stop is not None:
                before_stop()
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
            sock.close()

    return Part(name, run, lambda: (server.started, "" if server.started else "not serving"), stop_order=stop_order)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


# --- simulators ------------------------------------------------------------------------------------

def add_asm_simulator(asm: Assembly, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                      scenario: str | Path | None = None) -> str:
    """The ASM weather simulator, following the platform's clock; returns the reading's URL."""
    sc: Scenario | None = load_scenario(scenario) if scenario is not None else None
    sim = AsmSimulator(seed=seed, clock=asm.clock, scenario=sc)
    sock = bind(host, port)
    asm.parts.append(asgi_part("asm-simulator", create_asm_app(sim), sock, lifespan="off", before_stop=sim.stop,
                               stop_order=SIMULATOR))
    url = _url(sock) + CURRENT_PATH
    asm.endpoints["asm-simulator"] = url
    return url


async def add_telescope_simulator(asm: Assembly, *, host: str = "127.0.0.1", port: int = 0,
                                  tick_s: float = 0.2) -> str:
    """The NTT's OPC-UA server, moving with the platform's clock; returns its endpoint."""
    sim = TelescopeSimulator(host=host, port=port, clock=asm.clock)
    await sim.start()
    asm.stack.push_async_callback(sim.stop)

    async def run(stop: asyncio.Event) -> None:
        await sim.run(stop, tick_s=tick_s)

    asm.parts.append(Part("telescope-simulator", run, stop_order=SIMULATOR))
    asm.endpoints["telescope-simulator"] = sim.endpoint
    return sim.endpoint


async def add_p2_emulator(asm: Assembly, *, state_dir: Path, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    """ESO's P2 stand-in on its own thread (p2api's blocking calls reach it from worker threads)."""
    emulator = EmulatorServer(state_dir, host=host, port=port)
    await asyncio.to_thread(emulator.start)
    asm.stack.callback(emulator.stop)
    asm.parts.append(Part("p2-emulator", wait_stopped,
                          lambda: (emulator.running, "" if emulator.running else "not running"), stop_order=SIMULATOR))
    asm.endpoints["p2-emulator"] = emulator.api_url
    return emulator


# --- services --------------------------------------------------------------------------------------

def monitoring_config(*, asm_url: str | None = None, opcua_endpoint: str | None = None,
                      config: MonitoringConfig | None = None, speed: float = 1.0) -> MonitoringConfig:
    """The monitoring configuration, its ASM and OPC-UA sources pointed at the given simulators.

    At `speed` > 1 the ASM is polled that much more often (at most 5 times a second), so readings
    stay as frequent in clock time as the configuration says and staleness rules keep their meaning.
    """
    config = config or load_monitoring()
    sources = config.sources
    asm = [s.model_copy(update={"url": asm_url or s.url, "poll_period_s": _scaled(s.poll_period_s, speed)})
           for s in sources.asm]
    sources = sources.model_copy(update={"asm": asm})
    if opcua_endpoint is not None:
        sources = sources.model_copy(update={
            "opcua": [s.model_copy(update={"endpoint": opcua_endpoint}) for s in sources.opcua]})
    return config.model_copy(update={"sources": sources})


def _scaled(period_s: float, speed: float, floor_s: float = 0.2) -> float:
    """`period_s` of clock time in real seconds, never shorter than `floor_s` unless it was already."""
    return max(min(period_s, floor_s), period_s / speed)


def add_monitoring(asm: Assembly, config: MonitoringConfig, *, consumer: str, collect: bool = True,
                   dispatch: bool = True, dispatchers: int = 1, name: str = "monitoring") -> None:
    """Collectors and the live fan-out (when `collect`), archive dispatchers (when `dispatch`)."""
    p = asm.p
    if dispatch:  # the platform registered the shipped points; a --config file may name more
        p.archive.register_points(config.retention_classes())
    monitoring = build_monitoring(p.bus, p.archive if dispatch else None, config, clock=p.clock,
                                  dispatchers=dispatchers, consumer_prefix=consumer, collect=collect, live=collect)

    async def run(stop: asyncio.Event) -> None:
        await monitoring.manager.start()
        try:
            await stop.wait()
        finally:
            await monitoring.close()

    def health() -> tuple[bool, str]:
        bad = [f"{s.name}: {s.state.value}{' ' + s.error if s.error else ''}"
               for s in monitoring.manager.status() if not s.healthy]
        return not bad, "; ".join(bad)

    asm.parts.append(Part(name, run, health))


def _consumer_health(*consumers: StreamConsumer) -> Callable[[], tuple[bool, str]]:
    def health() -> tuple[bool, str]:
        failing = [why for ok, why in (c.health() for c in consumers) if not ok]
        return not failing, "; ".join(failing)
    return health


def add_logging(asm: Assembly, *, consumer: str, config: LoggingConfig | None = None,
                syslog_port: int | None = None, with_syslog: bool = True) -> None:
    """The log consumer (archive + live tail), the syslog intake and the run-time filter watcher."""
    config = config or load_logging_config()
    if syslog_port is not None:
        config = config.model_copy(update={"syslog": config.syslog.model_copy(
            update={"udp_port": syslog_port, "tcp_port": syslog_port})})
    p = asm.p
    service = build_logging_service(bus=p.bus, archive=p.archive, config=config, consumer_name=consumer,
                                    clock=p.clock, with_syslog=with_syslog)

    async def run(stop: asyncio.Event) -> None:
        await service.run(stop)

    asm.parts.append(Part("logging", run, _consumer_health(service.consumer.loop)))


def install_process_logging(platform: Platform, *, source: str = "skyops") -> ShipperThread:
    """This process's own `logging` records go to `log.records` too (uninstall with `uninstall_bus_logging`)."""
    config = load_logging_config()
    url, clock = platform.settings.redis_url, platform.clock
    return install_bus_logging(source=source, bus_factory=lambda: Bus(open_redis(url), clock=clock),
                               config=config.handler, filters=config.filters, retention=config.retention)


def remove_process_logging(thread: ShipperThread) -> None:
    uninstall_bus_logging(thread)


def add_alarms(asm: Assembly, *, consumer: str, supervisor: bool = True, dispatcher: bool = True) -> None:
    """The alarm supervisor (rules over `mon.samples`) and the dispatcher (archive, live, notifications)."""
    p = asm.p
    if supervisor:
        sup = build_supervisor(p.bus, p.clock)
        asm.parts.append(Part("alarm-supervisor", sup.run, _consumer_health(sup.samples, sup.commands)))
    if dispatcher:
        http = httpx.AsyncClient()
        asm.stack.push_async_callback(http.aclose)
        disp = build_dispatcher(p.bus, p.archive, p.clock, http, consumer=consumer)
        asm.parts.append(Part("alarm-dispatcher", disp.run, _consumer_health(disp.consumer)))


async def add_planner(asm: Assembly, *, consumer: str, sample_obs: Path | None = None,
                      plan_on_start: bool = True) -> planner_factory.Planner:
    """The planner on the operational DB; loads the sample OBs into an empty store; plans tonight at start."""
    p = asm.p
    planner = await asyncio.to_thread(planner_factory.build, p.settings, bus=p.bus, clock=p.clock)
    asm.stack.callback(planner.close)
    if sample_obs is not None:
        obs = read_sample_obs(sample_obs)
        created = await asyncio.to_thread(load_sample_obs, planner.store, obs, now=p.clock.now())
        log.info("sample OB set %s: %d OBs loaded", sample_obs, len(created))
    site = load_site()

    async def run(stop: asyncio.Event) -> None:
        if plan_on_start:
            event = await planner.service.plan_night(night_of(site, p.clock.now()), reason="night plan (start-up)")
            log.info("night %s planned: %d blocks (%s)", event.night, len(event.blocks), event.plan_id)
        await planner.run(stop, consumer=consumer)

    asm.parts.append(Part("planner", run))
    return planner


def add_ves_sync(asm: Assembly, config: ves_factory.VesSyncConfig) -> None:
    """The VES sync: plan events → OBs in P2 and the operator's VES."""
    p = asm.p
    consumer = ves_factory.build(config, bus=p.bus, sessions=make_sessionmaker(p.engine), clock=p.clock)
    asm.parts.append(Part("ves-sync", consumer.run, _consumer_health(consumer.stream)))


def add_ves_executor(asm: Assembly, config: ves_factory.VesSyncConfig, *, telescope_endpoint: str, speed: float,
                     open_dome: bool = False, sessions: sessionmaker[Session] | None = None) -> None:
    """The operator's BOB: executes the VES on the telescope, OB by OB, and reports executions to P2.

    Its pace is the clock's speed, so waits for slews and exposures last as long as the clock says. Execution
    reports P2 has not taken yet wait in the operational DB (`sessions`, else the platform's), so a crash keeps them.
    """
    if sessions is None and asm.platform is not None:
        sessions = make_sessionmaker(asm.platform.engine)
    executor = ves_factory.build_executor(config, telescope_endpoint=telescope_endpoint, clock=asm.clock,
                                          pace=ScaledPace(speed), open_dome=open_dome, sessions=sessions)

    def health() -> tuple[bool, str]:
        return True, executor.report.waiting_for

    asm.parts.append(Part("ves-executor", executor.run, health))


async def add_gcn(asm: Assembly, *, required: bool = True) -> bool:
    """The GCN notice consumer (ToO OBs from alert streams); without credentials or a broker, not started
    (an error when `required`)."""
    p = asm.p
    try:
        triggers = await asyncio.to_thread(build_gcn, p.settings, bus=p.bus, clock=p.clock)
    except GcnConfigError as exc:
        if required:
            raise
        log.info("GCN consumer not started: %s", exc)
        return False
    asm.stack.callback(triggers.close)
    asm.parts.append(Part("gcn", triggers.run))
    return True


def emulator_ves_config(emulator: EmulatorServer, *, consumer: str, speed: float = 1.0) -> ves_factory.VesSyncConfig:
    """The VES sync's settings for the local P2 emulator; its health is reported as often in clock time at any speed."""
    return ves_factory.VesSyncConfig(environment="local", api_url=emulator.api_url, login_url=emulator.login_url,
                                     consumer_name=consumer, health_interval_s=_scaled(10.0, speed))


async def add_hmi(asm: Assembly, *, host: str = "127.0.0.1", port: int = 8080) -> str | None:
    """The HMI app (GraphQL, Marshall API, log intake, operator page); returns a first start's admin password."""
    p = asm.p
    services, password = await build_hmi_services(p)
    api = create_app(health=p.health, services=services, marshall=build_marshall(p), log_intake=build_log_intake(p))
    config = load_monitoring()

    async def get_status() -> JSONResponse:
        report = await gather_status(p, config, wall_now=datetime.now(UTC))
        return JSONResponse(report.as_dict(), status_code=200 if report.healthy else 503)

    api.add_api_route("/status", get_status, methods=["GET"], tags=["ops"],
                      summary="Every component's health: backends, heartbeats, consumer-group lags, health points")
    sock = bind(host, port)
    asm.parts.append(asgi_part("hmi", api, sock))
    asm.endpoints["hmi"] = _url(sock) + "/"
    return password


@dataclass(frozen=True)
class EmbeddedOptions:
    """What `skyops up` varies: addresses, the ASM scenario, the sample OBs."""

    host: str = "127.0.0.1"
    port: int = 8080
    syslog_port: int | None = None
    scenario: str | None = None
    sample_obs: Path | None = SAMPLE_OBS_PATH
    consumer: str = "embedded"
    speed: float = 1.0


async def assemble_embedded(platform: Platform, options: EmbeddedOptions) -> tuple[Assembly, str | None]:
    """Every simulator on loopback and every service, in one process; the admin password on a first start."""
    asm = Assembly.of(platform)
    try:
        asm_url = add_asm_simulator(asm, scenario=options.scenario)
        endpoint = await add_telescope_simulator(asm)
        emulator = await add_p2_emulator(asm, state_dir=platform.settings.var_dir / "p2-emulator")
        c = options.consumer
        add_monitoring(asm, monitoring_config(asm_url=asm_url, opcua_endpoint=endpoint, speed=options.speed),
                       consumer=f"{c}-monitoring")
        add_logging(asm, consumer=f"{c}-logging", syslog_port=options.syslog_port)
        add_alarms(asm, consumer=f"{c}-alarms")
        await add_planner(asm, consumer=f"{c}-planner", sample_obs=options.sample_obs)
        ves = emulator_ves_config(emulator, consumer=f"{c}-ves-sync", speed=options.speed)
        add_ves_sync(asm, ves)
        add_ves_executor(asm, ves, telescope_endpoint=endpoint, speed=options.speed, open_dome=True)
        await add_gcn(asm, required=False)
        password = await add_hmi(asm, host=options.host, port=options.port)
    except BaseException:
        await asm.aclose()
        raise
    return asm, password
