"""Monitoring commands: `points` (configured points with their latest values) and `history` of one point."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from collectors import queries
from collectors.factory import open_archive
from config_db.loader import ConfigError
from config_db.monitoring import MonitoringConfig, load_monitoring
from skyops.errors import SkyopsError
from skyops.settings import Settings

app = typer.Typer(help="Monitoring points and their history.", no_args_is_help=True)
console = Console()

ConfigOption = Annotated[Path | None, typer.Option("--config", help="monitoring YAML (default: the shipped one)")]


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO time (UTC if it names no zone), `now`, or `-2h`/`-30m`/`-7d`/`-90s` before now."""
    now = now or datetime.now(UTC)
    t = text.strip()
    if t == "now":
        return now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if t.startswith("-") and t[-1:] in units:
        try:
            return now - timedelta(seconds=float(t[1:-1]) * units[t[-1]])
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(t)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a time: use ISO 8601 (UTC), 'now' or '-2h'") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _config(path: Path | None) -> MonitoringConfig:
    try:
        return load_monitoring(path)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("points")
def points_cmd(config: ConfigOption = None) -> None:
    """List the monitoring points with unit, retention and latest value."""
    cfg = _config(config)
    rows = asyncio.run(_points(Settings(), cfg))
    table = Table("point", "unit", "kind", "retention", "latest", "quality", "at (UTC)")
    for r in rows:
        s = r.latest
        table.add_row(r.name, r.unit, r.kind, r.retention, "" if s is None else str(s.value),
                      "" if s is None else s.quality.name, "" if s is None else s.ts.isoformat(timespec="seconds"))
    console.print(table)


async def _points(settings: Settings, cfg: MonitoringConfig) -> list[queries.PointRow]:
    archive = open_archive(settings, cfg)
    await archive.open()
    try:
        return await queries.points(archive, cfg)
    finally:
        await archive.close()


@app.command("history")
def history_cmd(
    point: Annotated[str, typer.Argument(help="e.g. lasilla.asm.seeing")],
    start: Annotated[str, typer.Option("--from", help="ISO time (UTC), 'now' or '-2h'")] = "-1h",
    end: Annotated[str, typer.Option("--to", help="ISO time (UTC), 'now' or '-2h'")] = "now",
    bins: Annotated[int | None, typer.Option("--bins", min=1, max=100_000, help="resample to N regular bins")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Print a point's history as JSON (or CSV): raw samples, or N bins of min/max/mean/count/first/last."""
    cfg = _config(config)
    now = datetime.now(UTC)
    t0, t1 = parse_time(start, now=now), parse_time(end, now=now)
    if t1 <= t0:
        raise typer.BadParameter(f"--to ({t1.isoformat()}) must be after --from ({t0.isoformat()})")
    if point not in {p.name for p in cfg.points}:
        raise typer.BadParameter(f"no monitoring point {point!r}; `points` lists them")
    try:
        text = asyncio.run(_history(Settings(), cfg, point, t0, t1, bins, csv))
    except SkyopsError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(text, nl=not text.endswith("\n"))


async def _history(settings: Settings, cfg: MonitoringConfig, point: str, t0: datetime, t1: datetime,
                   bins: int | None, csv: bool) -> str:
    archive = open_archive(settings, cfg)
    await archive.open()
    try:
        if bins is None:
            records = queries.raw_records({point: await queries.raw(archive, point, t0, t1)})
        else:
            records = queries.binned_records({point: await queries.binned(archive, point, t0, t1, bins)})
    finally:
        await archive.close()
    return queries.to_csv(records) if csv else queries.to_json(records)
