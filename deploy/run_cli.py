"""`skyops run SERVICE`: one service as its own process, against the servers the SKYOPS_ settings name."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from config_db.loader import ConfigError
from config_db.monitoring import MonitoringConfig, load_monitoring
from deploy import platform as parts
from deploy.clocks import ClockSettings
from deploy.factory import open_platform
from deploy.platform import Assembly
from deploy.runner import PartFailedError, Runner, stop_on_signals
from deploy.sample_obs import SampleObError, read_sample_obs
from planner.gcn.factory import GcnConfigError
from skyops import runtime
from skyops.bus import open_redis
from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade
from skyops.settings import Settings
from skyops.timeutil import Clock
from ves_sync.factory import VesSyncConfig

app = typer.Typer(help="Run one service on its own (distributed mode); Ctrl-C or SIGTERM stops it cleanly.",
                  no_args_is_help=True)
console = Console(stderr=True)

Build = Callable[[Assembly], Awaitable[None]]
Instance = Annotated[int, typer.Option(min=1, help="instance number: several share a consumer group")]
Host = Annotated[str, typer.Option(help="address to listen on")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="monitoring YAML (default: the shipped one)")]

# What `skyops run` offers; the Procfile test holds every Procfile line to this list.
SERVICES = ("monitoring", "collectors", "dispatcher", "logging", "alarms", "planner", "gcn", "ves-sync",
            "ves-executor", "hmi", "p2-emulator", "asm-simulator", "telescope-simulator")


def consumer_name(service: str, instance: int) -> str:
    """Stable per host, service and instance: a restarted process resumes its own pending entries."""
    return f"{socket.gethostname()}-{service}-{instance}"


def configure_console_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("asyncua", "httpx", "apscheduler", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def serve(process: str, build: Build, *, backends: bool = True) -> None:
    """Run `build`'s parts until SIGINT/SIGTERM; a failed part exits with status 1 (the supervisor restarts it)."""
    configure_console_logging()
    try:
        settings = Settings()
        clock = ClockSettings().clock()
    except ValidationError as exc:
        console.print(f"[bold red]{process}: bad settings:[/] {exc}")
        raise typer.Exit(2) from None
    try:
        runtime.run(_serve(process, settings, clock, build, backends=backends), settings.event_loop)
    except PartFailedError as exc:
        console.print(f"[bold red]{process} stopped: a part failed:[/] {exc}")
        raise typer.Exit(1) from None


async def _serve(process: str, settings: Settings, clock: Clock, build: Build, *, backends: bool) -> None:
    platform = await open_platform(settings, clock=clock) if backends else None
    shipper = parts.install_process_logging(platform) if platform is not None else None
    # A simulator needs no backend, but reports its heartbeat when a Redis server is named.
    redis = platform.redis if platform is not None else (open_redis(settings.redis_url) if settings.redis_url
                                                         else None)
    assembly = Assembly.of(platform) if platform is not None else Assembly(None, clock)
    try:
        await build(assembly)
        for name, url in sorted(assembly.endpoints.items()):
            console.print(f"{process}: {name} at {url}")
        runtime.settle_heap()  # start-up is done: the collector's later passes skip what it left alive
        stop = asyncio.Event()
        remove_handlers = stop_on_signals(stop)
        try:
            await Runner(process, assembly.parts, redis=redis).run(stop)
        finally:
            remove_handlers()
    finally:
        await assembly.aclose()
        if shipper is not None:
            parts.remove_process_logging(shipper)
        if platform is not None:
            await platform.close()
        elif redis is not None:
            await redis.aclose()
    console.print(f"{process}: stopped cleanly")


def _monitoring_config(path: Path | None, asm_url: str | None, opcua_endpoint: str | None) -> MonitoringConfig:
    """The monitoring config with the given endpoints; polls as frequent in clock time at any SKYOPS_CLOCK_SPEED."""
    try:
        speed = ClockSettings().speed
        return parts.monitoring_config(asm_url=asm_url, opcua_endpoint=opcua_endpoint, config=load_monitoring(path),
                                       speed=speed)
    except (ConfigError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None


AsmUrl = Annotated[str | None, typer.Option(help="ASM reading URL (default: the monitoring config's)")]
OpcUa = Annotated[str | None, typer.Option(help="telescope OPC-UA endpoint (default: the monitoring config's)")]


@app.command("monitoring")
def monitoring(instance: Instance = 1, config: ConfigOption = None, asm_url: AsmUrl = None,
               opcua_endpoint: OpcUa = None) -> None:
    """Collectors, live fan-out and the archive dispatcher in one process."""
    cfg = _monitoring_config(config, asm_url, opcua_endpoint)

    async def build(asm: Assembly) -> None:
        parts.add_monitoring(asm, cfg, consumer=consumer_name("monitoring", instance))

    serve("monitoring", build)


@app.command("collectors")
def collectors(instance: Instance = 1, config: ConfigOption = None, asm_url: AsmUrl = None,
               opcua_endpoint: OpcUa = None) -> None:
    """ASM and OPC-UA collectors, the health collector and the live fan-out (no archive writing)."""
    cfg = _monitoring_config(config, asm_url, opcua_endpoint)

    async def build(asm: Assembly) -> None:
        parts.add_monitoring(asm, cfg, consumer=consumer_name("collectors", instance), dispatch=False,
                             name="collectors")

    serve("collectors", build)


@app.command("dispatcher")
def dispatcher(instance: Instance = 1, config: ConfigOption = None,
               threads: Annotated[int, typer.Option(min=1, max=32, help="dispatchers in this process")] = 1) -> None:
    """Archive dispatchers of the `archive` group (several processes share the load)."""
    cfg = _monitoring_config(config, None, None)

    async def build(asm: Assembly) -> None:
        parts.add_monitoring(asm, cfg, consumer=consumer_name("dispatcher", instance), collect=False,
                             dispatchers=threads, name="dispatcher")

    serve("dispatcher", build)


@app.command("logging")
def logging_cmd(instance: Instance = 1,
                syslog_port: Annotated[int | None, typer.Option(help="syslog UDP/TCP port (default: config)")] = None,
                no_syslog: Annotated[bool, typer.Option("--no-syslog", help="no syslog intake")] = False) -> None:
    """The log consumer (archive, live tail), the syslog intake and the filter watcher."""

    async def build(asm: Assembly) -> None:
        parts.add_logging(asm, consumer=consumer_name("logging", instance), syslog_port=syslog_port,
                          with_syslog=not no_syslog)

    serve("logging", build)


@app.command("alarms")
def alarms(instance: Instance = 1) -> None:
    """The alarm supervisor (the single writer of alarm state: run one) and the alarm dispatcher."""

    async def build(asm: Assembly) -> None:
        parts.add_alarms(asm, consumer=consumer_name("alarms", instance))

    serve("alarms", build)


@app.command("planner")
def planner(
    instance: Instance = 1,
    sample_obs: Annotated[Path | None, typer.Option(help="OB set (JSON) loaded into an empty OB store")] = None,
    plan_on_start: Annotated[bool, typer.Option(help="plan the current night at start")] = True,
) -> None:
    """The planner: re-plans on `plan.triggers`, follows executions, runs the nightly jobs."""
    if sample_obs is not None:
        try:
            read_sample_obs(sample_obs)
        except SampleObError as exc:
            raise typer.BadParameter(str(exc)) from None

    async def build(asm: Assembly) -> None:
        await parts.add_planner(asm, consumer=consumer_name("planner", instance), sample_obs=sample_obs,
                                plan_on_start=plan_on_start)

    serve("planner", build)


@app.command("ves-sync")
def ves_sync(instance: Instance = 1) -> None:
    """The VES sync to P2 (SKYOPS_VES_* settings: the emulator's or ESO's URLs and accounts)."""
    try:
        config = VesSyncConfig(consumer_name=consumer_name("ves-sync", instance))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def build(asm: Assembly) -> None:
        parts.add_ves_sync(asm, config)

    serve("ves-sync", build)


@app.command("gcn")
def gcn() -> None:
    """ToO OBs from GCN notices over Kafka (SKYOPS_GCN_CLIENT_ID/_SECRET, topics in config_db/defaults/gcn.yaml)."""

    async def build(asm: Assembly) -> None:
        try:
            await parts.add_gcn(asm)
        except GcnConfigError as exc:
            raise typer.BadParameter(str(exc)) from None

    serve("gcn", build)


@app.command("ves-executor")
def ves_executor(
    opcua_endpoint: Annotated[str, typer.Option(help="the telescope's OPC-UA endpoint")] = "opc.tcp://127.0.0.1:4840/ntt/",
    open_dome: Annotated[bool, typer.Option(help="open the dome before the first OB")] = False,
) -> None:
    """The operator's BOB: executes the operator's VES on the telescope and reports executions to P2."""
    try:
        config = VesSyncConfig()
        speed = ClockSettings().speed
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def build(asm: Assembly) -> None:
        # Only the operational DB (its queued execution reports), not the bus or the archive.
        engine = make_engine(Settings().effective_sql_url)
        asm.stack.callback(engine.dispose)
        await asyncio.to_thread(upgrade, engine)
        parts.add_ves_executor(asm, config, telescope_endpoint=opcua_endpoint, speed=speed, open_dome=open_dome,
                               sessions=make_sessionmaker(engine))

    serve("ves-executor", build, backends=False)


@app.command("hmi")
def hmi(host: Host = "127.0.0.1", port: Annotated[int, typer.Option(help="HTTP port")] = 8080) -> None:
    """The HMI: GraphQL API, operator page, Marshall API, log intake, /health, /metrics, /status."""

    async def build(asm: Assembly) -> None:
        password = await parts.add_hmi(asm, host=host, port=port)
        if password is not None:
            console.print(f"first start: log in as admin with password {password} (shown once; change it)")

    serve("hmi", build)


@app.command("p2-emulator")
def p2_emulator(host: Host = "127.0.0.1", port: Annotated[int, typer.Option(help="HTTP port")] = 8082,
                state_dir: Annotated[Path | None, typer.Option(help="where its state survives restarts")] = None,
                ) -> None:
    """The local P2 emulator (p2api reaches it at http://HOST:PORT/api/v1)."""
    directory = state_dir or Settings().var_dir / "p2-emulator"

    async def build(asm: Assembly) -> None:
        await parts.add_p2_emulator(asm, state_dir=directory, host=host, port=port)

    serve("p2-emulator", build, backends=False)


@app.command("asm-simulator")
def asm_simulator(host: Host = "127.0.0.1", port: Annotated[int, typer.Option(help="HTTP port")] = 8081,
                  seed: int = 0, scenario: Annotated[str | None, typer.Option(help="e.g. wind_rising")] = None) -> None:
    """La Silla's ASM weather service, simulated (scenarios: PUT /asm/scenario/NAME)."""

    async def build(asm: Assembly) -> None:
        parts.add_asm_simulator(asm, host=host, port=port, seed=seed, scenario=scenario)

    serve("asm-simulator", build, backends=False)


@app.command("telescope-simulator")
def telescope_simulator(host: Host = "127.0.0.1", port: Annotated[int, typer.Option(help="OPC-UA port")] = 4840,
                        ) -> None:
    """The NTT's OPC-UA server, simulated."""

    async def build(asm: Assembly) -> None:
        await parts.add_telescope_simulator(asm, host=host, port=port)

    serve("telescope-simulator", build, backends=False)
