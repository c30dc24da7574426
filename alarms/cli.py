"""The `alarms` commands: list alarms, acknowledge, shelve, comment, check a rules file, replay rule tests."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from alarms.api import AlarmService, AlarmView, alarm_view
from alarms.commands import AlarmCommandError
from alarms.config import load_alarms
from alarms.domain.state import AlarmState
from alarms.factory import AlarmSettings
from alarms.replay import load_case, run_case
from alarms.store import AlarmStateStore
from config_db.loader import ConfigError
from skyops.bus import Bus, open_redis
from skyops.errors import SkyopsError
from skyops.settings import Settings
from skyops.timeutil import SystemClock

app = typer.Typer(help="Alarms: list, acknowledge, shelve, comment; check rules; replay rule tests.",
                  invoke_without_command=True)
T = TypeVar("T")

def _console() -> Console:
    return Console()


STYLE = {"CRITICAL": "bold red", "SERIOUS": "red", "WARNING": "yellow", "NONE": "green"}


def _state_file() -> Path:
    return AlarmSettings().state_file or Settings().var_dir / "alarms.json"


def _run(action: Callable[[AlarmService], Awaitable[T]], timeout_s: float = 5.0) -> T:
    async def go() -> T:
        settings = Settings()
        if settings.redis_url is None:
            raise AlarmCommandError("no SKYOPS_REDIS_URL: the embedded platform answers only inside `skyops up`")
        redis = open_redis(settings.redis_url)
        try:
            bus = Bus(redis)
            service = AlarmService(bus, AlarmStateStore(redis), None, SystemClock(), timeout_s=timeout_s)
            return await action(service)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except (SkyopsError, ValueError) as exc:
        _console().print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _user(user: str | None) -> str:
    return user or getpass.getuser()


def _views_from_file(path: Path, active: bool) -> list[AlarmView]:
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    views = [alarm_view(AlarmState.load(d["state"]), {}) for d in dict(data["alarms"]).values()]
    return [v for v in views if not active or v.status.value != "OK"]


def _print(views: list[AlarmView]) -> None:
    table = Table("alarm", "status", "severity", "latched", "shelved until", "since", "reason")
    for v in views:
        table.add_row(v.alarm_id, v.status.value, f"[{STYLE[v.severity.name]}]{v.severity.name}[/]",
                      v.latched.name, v.shelved_until.isoformat(timespec="seconds") if v.shelved_until else "",
                      v.changed.isoformat(timespec="seconds"), v.reason)
    _console().print(table)


@app.callback()
def alarms(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="only alarms needing attention")] = False,
) -> None:
    """List alarms (from Redis, or from the embedded state file when SKYOPS_REDIS_URL is unset)."""
    if ctx.invoked_subcommand is not None:
        return
    if Settings().redis_url is None:
        views = _views_from_file(_state_file(), active)
    else:
        views = _run(lambda s: s.alarms(active_only=active))
    _print(views)


User = Annotated[str | None, typer.Option(help="who acts (default: your login name)")]
Comment = Annotated[str, typer.Option(help="why (recorded with the action)")]


@app.command()
def ack(
    name: Annotated[str, typer.Argument(help="alarm name, e.g. WindSpeed.ASM:1")],
    comment: Comment,
    user: User = None,
    seen: Annotated[str | None, typer.Option(help="severity you are acknowledging (refused if it rose)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the supervisor")] = 5.0,
) -> None:
    """Acknowledge an alarm."""
    _run(lambda s: s.ack(name, user=_user(user), comment=comment, seen=seen), timeout)
    _console().print(f"acknowledged {name}")


@app.command()
def shelve(
    name: Annotated[str, typer.Argument()], comment: Comment,
    hours: Annotated[float, typer.Option(help="shelve for this long (mandatory expiry)")],
    user: User = None,
) -> None:
    """Shelve an alarm until an expiry."""
    until = _run(lambda s: s.shelve(name, user=_user(user), comment=comment, duration=timedelta(hours=hours)))
    _console().print(f"shelved {name} until {until.isoformat(timespec='seconds')}")


@app.command()
def unshelve(name: Annotated[str, typer.Argument()], comment: Comment, user: User = None) -> None:
    """Take an alarm off the shelf."""
    _run(lambda s: s.unshelve(name, user=_user(user), comment=comment))
    _console().print(f"unshelved {name}")


@app.command("comment")
def comment_(name: Annotated[str, typer.Argument()], comment: Comment, user: User = None) -> None:
    """Add a comment to an alarm's history."""
    _run(lambda s: s.comment(name, user=_user(user), comment=comment))
    _console().print(f"commented {name}")


@app.command()
def check(path: Annotated[Path | None, typer.Argument(help="alarms YAML (default: shipped)")] = None) -> None:
    """Validate an alarms file and list its rules."""
    try:
        config = load_alarms(path)
    except ConfigError as exc:
        _console().print(f"[red]invalid:[/] {exc}")
        raise typer.Exit(1) from None
    for rule in config.rules:
        _console().print(f"{rule.alarm_id:28} {rule.kind:17} consequence={rule.consequence.kind}")
    _console().print(f"{len(config.rules)} rules OK")


@app.command()
def replay(paths: Annotated[list[Path], typer.Argument(help="replay case YAML files")]) -> None:
    """Run recorded rule tests (input series, actions, expected states); exit 1 on any failure."""
    failed = 0
    for path in paths:
        try:
            result = run_case(load_case(path))
        except ConfigError as exc:
            _console().print(f"[red]invalid:[/] {exc}")
            failed += 1
            continue
        _console().print(f"{'[green]ok[/]' if result.ok else '[red]FAIL[/]'}  {path.name}: {result.name}")
        for problem in result.failures:
            _console().print(f"    {problem}")
        failed += not result.ok
    if failed:
        raise typer.Exit(1)
