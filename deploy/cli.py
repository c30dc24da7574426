"""The `skyops` command line: run the whole platform embedded, or inspect and operate it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from alarms import cli as alarms_cli
from collectors import cli as collectors_cli
from deploy.factory import build_hmi_services, build_log_intake, build_marshall, open_platform
from hmi_api.app import create_app
from logging_svc import cli as logging_cli
from planner import cli as planner_cli
from skyops.settings import Settings
from ves_sync import cli as ves_cli

app = typer.Typer(help="skyops — operations platform for a remotely operated telescope.", no_args_is_help=True)
run_app = typer.Typer(help="Run one service on its own (distributed mode).", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(ves_cli.app, name="ves")
app.add_typer(alarms_cli.app, name="alarms")
app.command("ack", help="Acknowledge an alarm (same as `skyops alarms ack`).")(alarms_cli.ack)
app.command("plan")(planner_cli.plan)
app.command("points")(collectors_cli.points_cmd)
app.command("logs")(logging_cli.logs)
app.command("history")(collectors_cli.history_cmd)
app.command("report")(planner_cli.report)
run_app.command("p2-emulator")(ves_cli.p2_emulator)
console = Console()


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address the HMI listens on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HMI port")] = 8080,
    var_dir: Annotated[Path | None, typer.Option(help="state directory of the embedded backends")] = None,
) -> None:
    """Start the platform in one process; absent server URLs select the embedded backends."""
    settings = Settings() if var_dir is None else Settings(var_dir=var_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(settings, host, port))


async def _serve(settings: Settings, host: str, port: int) -> None:
    platform = await open_platform(settings)
    try:
        services, admin_password = await build_hmi_services(platform)
        if admin_password is not None:
            console.print(f"[bold yellow]first start:[/] log in as [bold]admin[/] with password "
                          f"[bold]{admin_password}[/] (shown once; change it)")
        api = create_app(health=platform.health, services=services, marshall=build_marshall(platform),
                         log_intake=build_log_intake(platform))
        server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="info"))
        console.print(f"[bold green]skyops up[/] ({platform.mode}) — health at http://{host}:{port}/health")
        await server.serve()
    finally:
        await platform.close()


@app.command()
def version() -> None:
    """Print the installed skyops version."""
    from importlib.metadata import version as dist_version

    console.print(dist_version("skyops"))


def main() -> None:
    app()
