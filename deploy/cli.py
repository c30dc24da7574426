"""The `skyops` command line: run the whole platform embedded, or inspect and operate it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from alarms import cli as alarms_cli
from collectors import cli as collectors_cli
from collectors.simulators.asm import load_scenario
from config_db.monitoring import load_monitoring
from deploy import run_cli
from deploy.clocks import make_clock, parse_start
from deploy.factory import open_platform
from deploy.platform import EmbeddedOptions, assemble_embedded, install_process_logging, remove_process_logging
from deploy.runner import PartFailedError, Runner, stop_on_signals
from deploy.sample_obs import SAMPLE_OBS_PATH, read_sample_obs
from deploy.status import StatusReport, gather_status
from deploy.status import render as render_status
from logging_svc import cli as logging_cli
from planner import cli as planner_cli
from planner.config import load_site
from skyops import runtime
from skyops.settings import Settings
from skyops.timeutil import Clock
from ves_sync import cli as ves_cli

app = typer.Typer(help="skyops — operations platform for a remotely operated telescope.", no_args_is_help=True)
app.add_typer(run_cli.app, name="run")
app.add_typer(ves_cli.app, name="ves")
app.add_typer(alarms_cli.app, name="alarms")
app.command("ack", help="Acknowledge an alarm (same as `skyops alarms ack`).")(alarms_cli.ack)
app.command("plan")(planner_cli.plan)
app.command("points")(collectors_cli.points_cmd)
app.command("logs")(logging_cli.logs)
app.command("history")(collectors_cli.history_cmd)
app.command("report")(planner_cli.report)
console = Console()


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address the HMI listens on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HMI port (0: a free one)")] = 8080,
    var_dir: Annotated[Path | None, typer.Option(help="state directory of the embedded backends")] = None,
    speed: Annotated[float, typer.Option(min=0.001, max=10_000, help="time runs this many times faster")] = 1.0,
    start: Annotated[str, typer.Option(help="clock start: now, evening (the next night) or an ISO time (UTC)")] = "now",
    scenario: Annotated[str | None, typer.Option(help="ASM simulator scenario, e.g. wind_rising")] = None,
    syslog_port: Annotated[int | None, typer.Option(help="syslog intake port (default: the logging config's)")] = None,
    sample_obs: Annotated[Path | None, typer.Option(help="OB set loaded into an empty OB store")] = SAMPLE_OBS_PATH,
    no_sample_obs: Annotated[bool, typer.Option("--no-sample-obs", help="start with an empty OB store")] = False,
) -> None:
    """The whole platform in one process: simulators on loopback, every service, a night planned, the HMI."""
    settings = Settings() if var_dir is None else Settings(var_dir=var_dir)
    run_cli.configure_console_logging()
    now = datetime.now(UTC)
    try:
        clock = make_clock(speed=speed, start=parse_start(start, now=now, site=load_site()), now=now)
        if scenario is not None:
            load_scenario(scenario)
        obs = None if no_sample_obs else sample_obs
        if obs is not None:
            read_sample_obs(obs)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    options = EmbeddedOptions(host=host, port=port, syslog_port=syslog_port, scenario=scenario, sample_obs=obs,
                              speed=speed)
    try:
        runtime.run(_up(settings, options, clock), settings.event_loop)
    except PartFailedError as exc:
        console.print(f"[bold red]skyops up stopped: a part failed:[/] {exc}")
        raise typer.Exit(1) from None


async def _up(settings: Settings, options: EmbeddedOptions, clock: Clock) -> None:
    platform = await open_platform(settings, clock=clock)
    shipper = install_process_logging(platform, source="skyops")
    try:
        assembly, admin_password = await assemble_embedded(platform, options)
        try:
            if admin_password is not None:
                console.print(f"[bold yellow]first start:[/] log in as [bold]admin[/] with password "
                              f"[bold]{admin_password}[/] (shown once; change it)")
            hmi = assembly.endpoints["hmi"]
            speed = getattr(clock, "speed", 1.0)
            when = clock.now().isoformat(timespec="seconds")
            console.print(f"[bold green]skyops up[/] ({platform.mode}, clock {when}"
                          f"{f' ×{speed:g}' if speed != 1 else ''}) — operator page at [bold]{hmi}[/], "
                          f"health at {hmi}health; Ctrl-C stops")
            for name, url in sorted(assembly.endpoints.items()):
                if name != "hmi":
                    console.print(f"  {name}: {url}")
            runtime.settle_heap()  # start-up is done: the collector's later passes skip what it left alive
            stop = asyncio.Event()
            remove_handlers = stop_on_signals(stop)
            try:
                await Runner("skyops-up", assembly.parts, redis=platform.redis).run(stop)
            finally:
                remove_handlers()
        finally:
            await assembly.aclose()
    finally:
        remove_process_logging(shipper)
        await platform.close()
    console.print("[bold]skyops up[/]: stopped cleanly")


@app.command()
def status(
    url: Annotated[str | None, typer.Option(help="a running `skyops up` or HMI (its /status); default: the SKYOPS_ "
                                                 "servers, or http://127.0.0.1:8080 when none is named")] = None,
    max_lag: Annotated[int, typer.Option(min=0, help="a consumer group further behind is unhealthy")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Every component: backends, heartbeats, consumer-group lags, health points; exit 1 when any is unhealthy."""
    settings = Settings()
    try:
        if url is None and settings.redis_url is not None:
            report = asyncio.run(_status(settings, max_lag))
        else:
            report = _remote_status(url or "http://127.0.0.1:8080")
    except (OSError, ValueError, httpx.HTTPError) as exc:
        console.print(f"[bold red]status unavailable:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=1))
    else:
        console.print(render_status(report))
    if not report.healthy:
        raise typer.Exit(1)


async def _status(settings: Settings, max_lag: int) -> StatusReport:
    platform = await open_platform(settings, migrate=False)
    try:
        return await gather_status(platform, load_monitoring(), wall_now=datetime.now(UTC), max_lag=max_lag)
    finally:
        await platform.close()


def _remote_status(url: str) -> StatusReport:
    r = httpx.get(url.rstrip("/") + "/status", timeout=10)
    if r.status_code not in (200, 503):
        raise ValueError(f"{url}/status answered {r.status_code}: {r.text[:200]}")
    return StatusReport.from_dict(r.json())


@app.command()
def version() -> None:
    """Print the installed skyops version."""
    from importlib.metadata import version as dist_version

    console.print(dist_version("skyops"))


def main() -> None:
    app()
