"""The `ves` commands: run the P2 emulator, show the VES change history and our OBs' P2 statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.settings import Settings
from ves_sync.emulator import serve
from ves_sync.store import VesSyncStore

app = typer.Typer(help="VES sync: the P2 emulator, the VES change history, OB statuses in P2.", no_args_is_help=True)


def _store(sql_url: str | None) -> VesSyncStore:
    engine = make_engine(sql_url or Settings().effective_sql_url)
    upgrade(engine)
    return VesSyncStore(make_sessionmaker(engine))


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
