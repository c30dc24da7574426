"""`skyops logs`: search the log archive and follow the live tail, in colour."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import datetime, timedelta
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.text import Text

from logging_svc.domain.levels import level_name
from logging_svc.query import export_jsonl, follow_logs, make_query, parse_since
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive, LogQuery
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, open_redis
from skyops.errors import InvalidRecordError
from skyops.records import LogRecord
from skyops.settings import Settings
from skyops.timeutil import Clock, SystemClock

app = typer.Typer(help="Search and follow the log archive.", no_args_is_help=False)

LEVEL_STYLES = {10: "dim", 20: "green", 30: "yellow", 40: "bold red", 50: "bold white on red"}


def style_of(level: int) -> str:
    for threshold in (50, 40, 30, 20):
        if level >= threshold:
            return LEVEL_STYLES[threshold]
    return LEVEL_STYLES[10]


def render(r: LogRecord) -> Text:
    """One record as a coloured line: time, level, source/component@host, message."""
    line = Text()
    line.append(r.ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z ", style="cyan")
    line.append(f"{level_name(r.level)!s:<8} ", style=style_of(r.level))
    where = r.source + (f"/{r.component}" if r.component else "") + (f"@{r.host}" if r.host else "")
    line.append(where + " ", style="magenta")
    line.append(r.message)
    if r.ob_id:
        line.append(f" [ob {r.ob_id}]", style="blue")
    return line


def open_archive(settings: Settings) -> Archive:
    """The archive the settings name: Cassandra when contact points are set, else the SQLite file."""
    if settings.cassandra_hosts:
        return CassandraArchive(settings.cassandra_hosts, port=settings.cassandra_port,
                                keyspace=settings.cassandra_keyspace,
                                replication_factor=settings.cassandra_replication_factor)
    return SqliteArchive(settings.archive_path)


async def show_logs(
    archive: Archive,
    query: LogQuery,
    *,
    console: Console,
    as_json: bool = False,
    bus: Bus | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the newest matches oldest first (or export every match as JSON lines), then follow `bus` if given.

    Returns how many records were printed; following ends when the caller cancels.
    """
    if as_json:
        return await export_jsonl(archive, query, out or sys.stdout)
    page = await archive.query_logs(query)
    for r in reversed(page.records):
        console.print(render(r), soft_wrap=True)
    shown = len(page.records)
    if bus is not None:
        async with contextlib.aclosing(follow_logs(bus, query.matches)) as live:
            async for r in live:
                console.print(render(r), soft_wrap=True)
                shown += 1
    return shown


@app.command("logs")
def logs(
    level: Annotated[str, typer.Option("--level", "-l", help="minimum level (DEBUG, INFO, WARNING, ERROR...)")]
    = "DEBUG",
    source: Annotated[list[str] | None, typer.Option("--source", "-s", help="only these sources")] = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="only these hosts")] = None,
    component: Annotated[list[str] | None, typer.Option("--component", "-c", help="only these components")] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", help="text the message contains (any case)")] = None,
    regex: Annotated[str | None, typer.Option("--regex", "-e", help="regular expression the message matches")]
    = None,
    since: Annotated[str, typer.Option("--since", help="how far back: 90s, 15m, 1h, 2d, 1w")] = "1h",
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 end time (default: now)")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="at most this many (newest) records")] = 200,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="then keep printing new records")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="export as JSON lines (every match, oldest first)")]
    = False,
) -> None:
    """Show archived log records (oldest first), optionally following the live tail."""
    clock = SystemClock()
    console = Console(highlight=False)
    try:
        end = datetime.fromisoformat(until) if until else clock.now() + timedelta(seconds=1)
        start = end - parse_since(since)
        query = make_query(start=start, end=end, min_level=level, sources=source, hosts=host,
                            components=component, text=grep, regex=regex, newest_first=not as_json,
                            limit=min(max(limit, 1), 100_000))
    except (InvalidRecordError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = Settings()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings, query, follow=follow, as_json=as_json, console=console, clock=clock))


async def _main(settings: Settings, query: LogQuery, *, follow: bool, as_json: bool, console: Console,
                clock: Clock) -> None:
    archive = open_archive(settings)
    await archive.open()
    redis = open_redis(settings.redis_url) if follow else None
    try:
        await show_logs(archive, query, console=console, as_json=as_json,
                        bus=Bus(redis, clock=clock) if redis is not None else None)
    finally:
        await archive.close()
        if redis is not None:
            await redis.aclose()
