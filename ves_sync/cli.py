"""The `ves` commands: run the P2 emulator, execute the VES on the telescope, show the VES history and OB statuses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.settings import Settings
from ves_sync.emulator import serve
from ves_sync.emulator.app import API_PREFIX, LOGIN_PATH
from ves_sync.executor import VesExecutor
from ves_sync.factory import VesSyncConfig, build_executor, executor_time
from ves_sync.store import VesSyncStore

app = typer.Typer(help="VES sync: the P2 emulator, the VES change history, OB statuses in P2.", no_args_is_help=True)


def _sessions(sql_url: str | None) -> sessionmaker[Session]:
    engine = make_engine(sql_url or Settings().effective_sql_url)
    upgrade(engine)
    return make_sessionmaker(engine)


def _store(sql_url: str | None) -> VesSyncStore:
    return VesSyncStore(_sessions(sql_url))


@app.command("p2-emulator")
def p2_emulator(
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8081,
    state_dir: Annotated[Path | None, typer.Option(help="where its state survives restarts")] = None,
) -> None:
    """Run the local P2 emulator (p2api reaches it at http://HOST:PORT/api/v1)."""
    serve(host, port, state_dir or Settings().var_dir / "p2-emulator")


@app.command()
def history(
    night: Annotated[str | None, typer.Option(help="only this night (YYYY-MM-DD)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="most recent changes to show")] = 20,
    sql_url: Annotated[str | None, typer.Option(help="operational DB URL (default: from SKYOPS_ settings)")] = None,
) -> None:
    """Every change of the operator's VES, newest first: when, who, why, and the new sequence."""
    table = Table(title="VES changes")
    for col in ("when (UTC)", "night", "by", "plan", "why", "alarm / ToO", "OBs"):
        table.add_column(col)
    for c in _store(sql_url).history(night=night, limit=limit):
        table.add_row(c.ts.isoformat(timespec="seconds"), c.night, c.written_by, c.plan_id, c.reason,
                      c.alarm_id or c.too_ob_id or "", f"{len(c.after)}: {', '.join(map(str, c.after[:8]))}"
                      + (" …" if len(c.after) > 8 else ""))
    Console().print(table)


@app.command()
def statuses(
    sql_url: Annotated[str | None, typer.Option(help="operational DB URL (default: from SKYOPS_ settings)")] = None,
) -> None:
    """Our OBs and their P2 ids and statuses, as last read from P2."""
    table = Table(title="OBs in P2")
    for col in ("OB", "P2 OB", "status", "updated (UTC)"):
        table.add_column(col)
    for link in sorted(_store(sql_url).links().values(), key=lambda link: link.ob_id):
        table.add_row(link.ob_id, str(link.p2_ob_id), link.p2_status, link.updated_at.isoformat(timespec="seconds"))
    Console().print(table)


@app.command()
def execute(
    emulator_url: Annotated[str, typer.Option(help="root URL of the P2 emulator")] = "http://127.0.0.1:8081",
    opcua: Annotated[str, typer.Option(help="the telescope's OPC-UA endpoint")] = "opc.tcp://127.0.0.1:4840/ntt/",
    instrument: Annotated[str, typer.Option(help="whose VES to execute")] = "SOXS",
    speed: Annotated[float, typer.Option(min=0.001, help="clock speed: the telescope simulator's must match")] = 1.0,
    username: Annotated[str, typer.Option(help="the P2 account whose VES is executed")] = "operator",
    password: Annotated[str, typer.Option(envvar="SKYOPS_VES_OPERATOR_PASSWORD", help="its P2 password")]
    = "p2-emulator",
    open_dome: Annotated[bool, typer.Option(help="open the dome first (an unattended simulated night)")] = False,
    poll: Annotated[float, typer.Option(min=0.1, help="telescope seconds between looks at the telescope")] = 10.0,
    sql_url: Annotated[str | None, typer.Option(help="operational DB that keeps unsent execution reports "
                                                     "(default: from SKYOPS_ settings)")] = None,
) -> None:
    """Execute the operator's VES on the telescope (the operator's BOB) until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("asyncua").setLevel(logging.WARNING)  # it logs every read at INFO
    root = emulator_url.rstrip("/")
    config = VesSyncConfig(environment="local", api_url=root + API_PREFIX, login_url=root + LOGIN_PATH,
                           operator_username=username, operator_password=SecretStr(password),
                           instrument=instrument)
    clock, pace = executor_time(speed)
    executor = build_executor(config, telescope_endpoint=opcua, clock=clock, pace=pace,
                              sessions=_sessions(sql_url), open_dome=open_dome, poll_s=poll)
    asyncio.run(_execute(executor))


async def _execute(executor: VesExecutor) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await executor.run(stop)
    for e in executor.report.executions:
        Console().print(f"P2 OB {e.p2_ob_id}: {e.outcome} {e.start.isoformat(timespec='seconds')}"
                        f" → {e.end.isoformat(timespec='seconds') if e.end else ''}")
