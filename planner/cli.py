"""`skyops plan`: plan a night from the OB store (or a seeded demo set) and show it as a table and a Gantt."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.config import SchedulerConfig, load_site
from planner.domain.observability import Constraints, ObRequest, Twilight
from planner.domain.replan import NightPlanner
from planner.ephemeris import compute_night
from planner.service import summarize

app = typer.Typer(
    help="Night planning: the tonight bucket, the priority pass and the gap filler.", no_args_is_help=True
)

GANTT_WIDTH = 60


def demo_obs(n: int, seed: int) -> list[ObRequest]:
    """`n` OBs over the southern sky with mixed constraints: for trying the planner without a database."""
    rng = np.random.default_rng(seed)
    kinds = ["CTOB", "FUOB", "ESO", "ESO"]
    return [
        ObRequest(
            ob_id=f"demo{i:04d}",
            name=f"demo{i:04d}",
            target_name=f"T{i:04d}",
            ob_type=str(rng.choice(kinds)),
            ra_deg=float(rng.uniform(0, 360)),
            dec_deg=float(np.degrees(np.arcsin(rng.uniform(-1.0, 0.45)))),
            exposure_s=float(rng.choice([600, 900, 1200, 1800, 2700, 3600])),
            priority=int(rng.integers(1, 6)),
            constraints=Constraints(
                max_airmass=float(rng.choice([1.5, 1.8, 2.0])),
                twilight=Twilight(str(rng.choice(["astronomical", "nautical"]))),
                min_moon_separation_deg=float(rng.choice([20, 30, 45])),
            ),
        )
        for i in range(n)
    ]


def store_requests(sql_url: str) -> list[ObRequest]:
    from planner.store import LIVE_STATES, ObStore
    from skyops.opdb import make_engine, make_sessionmaker, upgrade

    engine = make_engine(sql_url)
    try:
        upgrade(engine)
        store = ObStore(make_sessionmaker(engine), site=load_site())
        return [ob.to_request() for ob in store.list(states=LIVE_STATES)]
    finally:
        engine.dispose()


def gantt_line(start_min: int, end_min: int, n_minutes: int, width: int = GANTT_WIDTH) -> str:
    """A bar of `width` characters with the block's share of the night filled in."""
    left = int(start_min * width / n_minutes)
    right = max(left + 1, round(end_min * width / n_minutes))
    return "·" * left + "█" * (right - left) + "·" * (width - right)


@app.command("plan")
def plan(
    night: Annotated[str, typer.Option(help="local date of the evening, YYYY-MM-DD")],
    demo: Annotated[int, typer.Option(help="plan N seeded demo OBs instead of the OB store", min=0)] = 0,
    seed: Annotated[int, typer.Option(help="seed of the demo OBs")] = 1,
    sql_url: Annotated[str | None, typer.Option(help="operational DB (default: SKYOPS_SQL_URL or var/)")] = None,
) -> None:
    """Plan one night and print the plan."""
    night_date = _date(night, "--night")
    console = Console()
    config = SchedulerConfig()
    site = load_site()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("Sun and Moon for the night (astropy)…")
        grid = compute_night(site, night_date, config=config)
        progress.update(task, description="loading OBs…")
        if demo:
            requests = demo_obs(demo, seed)
        else:
            from skyops.settings import Settings

            requests = store_requests(sql_url or Settings().effective_sql_url)
        progress.update(task, description=f"planning {len(requests)} OBs…")
        planner = NightPlanner(grid, requests, config)
        outcome = planner.plan()

    def hhmm(minute: int) -> str:
        return datetime.fromtimestamp(grid.start_unix + 60 * minute, tz=UTC).strftime("%H:%M")

    table = Table(title=f"Night {night_date.isoformat()} at {site.name} (UTC)")
    for column in ("start", "end", "OB", "type", "target", "prio", "exp [s]", "slew [min]"):
        table.add_column(column, justify="right" if column in ("prio", "exp [s]", "slew [min]") else "left")
    for b in outcome.blocks:
        r = planner.request(b.row)
        table.add_row(
            hhmm(b.start_min),
            hhmm(b.end_min),
            r.ob_id,
            r.ob_type,
            r.target_name or "-",
            str(r.priority),
            f"{r.exposure_s:.0f}",
            str(b.slew_min),
        )
    console.print(table)
    console.print(f"{'':>10} {hhmm(0)}{'':{GANTT_WIDTH - 10}}{hhmm(grid.n_minutes)}", highlight=False)
    for b in outcome.blocks:
        r = planner.request(b.row)
        console.print(f"{r.ob_id[:10]:>10} {gantt_line(b.start_min, b.end_min, grid.n_minutes)}", highlight=False)
    summary = summarize(planner)
    in_bucket = int(planner.obs.in_bucket.sum())
    console.print(
        f"{len(outcome.blocks)} OBs scheduled of {in_bucket} observable tonight ({len(requests)} live); "
        f"duty cycle {100 * summary.duty_cycle:.1f} % of {summary.dark_minutes} dark minutes; "
        f"GTO {summary.gto_exposure_h:.2f} h, ESO {summary.eso_exposure_h:.2f} h"
    )


@app.command("report")
def report(
    from_: Annotated[str, typer.Option("--from", help="first night, YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="last night, YYYY-MM-DD")],
    out: Annotated[Path, typer.Option(help="folder for report.json, report.png and report.svg")] = Path("var/reports"),
    sql_url: Annotated[str | None, typer.Option(help="operational DB (default: SKYOPS_SQL_URL or var/)")] = None,
) -> None:
    """Duty cycle, completed proposals, transient hit/miss and GTO vs ESO time over a period."""
    from planner.reports import build_report, write_report
    from planner.store import ObStore
    from skyops.opdb import make_engine, make_sessionmaker, upgrade
    from skyops.settings import Settings

    first, last = _date(from_, "--from"), _date(to, "--to")
    if last < first:
        raise typer.BadParameter(f"{to} is before --from {from_}", param_hint="--to")
    site = load_site()
    engine = make_engine(sql_url or Settings().effective_sql_url)
    try:
        upgrade(engine)
        result = build_report(ObStore(make_sessionmaker(engine), site=site), site, first, last)
    finally:
        engine.dispose()
    paths = write_report(result, out)
    console = Console()
    console.print_json(json.dumps(result.as_dict()))
    console.print("written " + ", ".join(str(p) for p in paths))


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD", param_hint=option) from None


@app.command("gcn")
def gcn(
    notices: Annotated[list[Path], typer.Argument(help="GCN JSON notice files", exists=True, dir_okay=False)],
    topic: Annotated[str, typer.Option(help="the Kafka topic the notices come from (sets their schema)")],
    at: Annotated[str | None, typer.Option(help="judge as of this UTC time, ISO 8601 (default: now)")] = None,
    config_file: Annotated[Path | None, typer.Option(help="gcn YAML (default: config_db defaults)")] = None,
) -> None:
    """Dry run of the GCN criteria: would these notices become ToO OBs in the coming night? (Nothing is stored.)"""
    from config_db.gcn import load_gcn_config
    from planner.domain.gcn import NoticeError, observable_tonight, parse_notice, screen, too_request
    from planner.service import night_of

    config = load_gcn_config(config_file)
    criteria = config.topics.get(topic)
    if criteria is None:
        raise typer.BadParameter(f"{topic} is not in {', '.join(config.topics)}", param_hint="--topic")
    now = _utc_time(at, "--at") if at is not None else datetime.now(UTC)
    site = load_site()
    scheduler = SchedulerConfig()
    grid = compute_night(site, night_of(site, now), config=scheduler)
    table = Table(title=f"GCN notices on {topic} as of {now:%Y-%m-%d %H:%M} UTC (night of {grid.night})")
    for column in ("file", "event", "decision", "why"):
        table.add_column(column)
    for path in notices:
        try:
            notice = parse_notice(criteria.kind, path.read_bytes())
        except NoticeError as exc:
            table.add_row(path.name, "-", "rejected: malformed", str(exc))
            continue
        verdict = screen(notice, config.criteria, criteria, now)
        if verdict.accepted:
            request = too_request(notice, config.too, criteria)
            verdict = observable_tonight(request, grid, now, overhead_s=scheduler.overhead_s)
        decision = "ToO OB" if verdict.accepted else f"rejected: {verdict.rejection}"
        table.add_row(path.name, notice.key, decision, verdict.detail)
    Console().print(table)


def _utc_time(value: str, option: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    if when.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no time zone (e.g. end it with Z)", param_hint=option)
    return when.astimezone(UTC)
