"""`skyops status`: every component's health — backends, process heartbeats, consumer-group lags, health points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError, ResponseError
from rich.table import Table

from config_db.monitoring import MonitoringConfig, PointConfig
from deploy.factory import Platform
from deploy.runner import HEARTBEAT_PERIOD_S, HEARTBEATS_KEY, Heartbeat
from skyops import streams
from skyops.bus import Bus
from skyops.errors import SkyopsError
from skyops.records import Sample

KNOWN_STREAMS = (streams.MON_SAMPLES, streams.LOG_RECORDS, streams.ALARM_EVENTS, streams.PLAN_TRIGGERS,
                 streams.PLAN_EVENTS)


@dataclass(frozen=True)
class StatusRow:
    """One line of the status table."""

    kind: str  # backend | part | group | point
    name: str
    healthy: bool
    age_s: float | None
    detail: str


@dataclass(frozen=True)
class StatusReport:
    rows: tuple[StatusRow, ...]

    @property
    def healthy(self) -> bool:
        return all(r.healthy for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatusReport:
        """A report as `as_dict` wrote it (from `/status` of a running `skyops up`)."""
        try:
            return cls(tuple(StatusRow(kind=str(r["kind"]), name=str(r["name"]), healthy=bool(r["healthy"]),
                                       age_s=None if r["age_s"] is None else float(r["age_s"]),
                                       detail=str(r["detail"])) for r in data["rows"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a status report: {type(exc).__name__}: {exc}") from None


def heartbeat_rows(raw: Mapping[bytes | str, bytes | str], *, now: datetime, stale_after_s: float) -> list[StatusRow]:
    """A row per part heartbeat: healthy when running, healthy by its own account, and recent."""
    rows = []
    for key, value in sorted(raw.items()):
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        try:
            hb = Heartbeat.decode(value)
        except ValueError as exc:
            rows.append(StatusRow("part", name, False, None, str(exc)))
            continue
        age = (now - hb.ts).total_seconds()
        where = f"{hb.process} pid {hb.pid} on {hb.host}"
        problems = []
        if hb.state != "running":
            problems.append(hb.state)
        if age > stale_after_s:
            problems.append(f"silent for {age:.0f} s")
        if not hb.healthy:
            problems.append("unhealthy")
        detail = "; ".join([*problems, *([hb.detail] if hb.detail else []), where])
        rows.append(StatusRow("part", name, not problems, age, detail))
    return rows


async def group_rows(bus: Bus, *, max_lag: int, extra_streams: Sequence[str] = ()) -> list[StatusRow]:
    """A row per consumer group of every known (and every other existing) stream: its lag and pending count."""
    names = list(dict.fromkeys([*KNOWN_STREAMS, *extra_streams]))
    rows = []
    for stream in names:
        try:
            groups: list[dict[str, Any]] = await bus.redis.xinfo_groups(stream)
        except ResponseError:
            continue  # no such stream yet: nothing produced, nobody behind
        for g in groups:
            group = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
            try:
                lag = await bus.lag(stream, group)
            except SkyopsError as exc:
                rows.append(StatusRow("group", f"{stream}/{group}", False, None, str(exc)))
                continue
            consumers, pending = int(g["consumers"]), int(g["pending"])
            healthy = lag <= max_lag
            detail = f"lag {lag} (pending {pending}), {consumers} consumer(s)" + ("" if healthy else f" > {max_lag}")
            rows.append(StatusRow("group", f"{stream}/{group}", healthy, None, detail))
    return rows


async def existing_streams(platform: Platform) -> list[str]:
    """Every stream on the bus (services may add their own beyond the kernel's), by name."""
    found = [k.decode() if isinstance(k, bytes) else str(k)
             async for k in platform.redis.scan_iter(match="*", count=1000, _type="stream")]
    return sorted(found)


def health_points(config: MonitoringConfig) -> list[PointConfig]:
    """The points where skyops components report on themselves."""
    return [p for p in config.points if p.name.startswith("skyops.")]


def point_rows(points: Sequence[PointConfig], latest: dict[str, Sample], *, now: datetime,
               stale_after_s: float) -> list[StatusRow]:
    """A row per health point: a bool point must say true; any point must have been heard recently."""
    rows = []
    for p in points:
        s = latest.get(p.name)
        if s is None:
            rows.append(StatusRow("point", p.name, True, None, "no value yet"))
            continue
        age = (now - s.ts).total_seconds()
        problems = []
        if p.kind == "bool" and not bool(s.value):
            problems.append("down")
        if age > stale_after_s:
            problems.append(f"not updated for {age:.0f} s")
        rows.append(StatusRow("point", p.name, not problems, age,
                              "; ".join([*problems, f"{s.value} {p.unit}".strip(), s.quality.name])))
    return rows


async def gather_status(platform: Platform, config: MonitoringConfig, *, wall_now: datetime, max_lag: int = 10_000,
                        heartbeat_stale_s: float = 3 * HEARTBEAT_PERIOD_S, point_stale_s: float = 300.0,
                        ) -> StatusReport:
    """Everything `skyops status` shows, from the platform's bus and archive."""
    health = await platform.health()
    rows = [StatusRow("backend", name, state == "ok", None, state) for name, state in health["components"].items()]
    try:
        raw = await platform.redis.hgetall(HEARTBEATS_KEY)
        rows += heartbeat_rows(raw, now=wall_now, stale_after_s=heartbeat_stale_s)
        rows += await group_rows(platform.bus, max_lag=max_lag, extra_streams=await existing_streams(platform))
    except (RedisError, OSError) as exc:
        rows.append(StatusRow("backend", "bus (heartbeats, lags)", False, None, f"{type(exc).__name__}: {exc}"))
    points = health_points(config)
    try:
        latest = await platform.archive.latest([p.name for p in points])
        rows += point_rows(points, latest, now=platform.clock.now(), stale_after_s=point_stale_s)
    except Exception as exc:  # the archive is down: the backend row already says so; keep the rest
        rows.append(StatusRow("point", "health points", False, None, f"{type(exc).__name__}: {exc}"))
    return StatusReport(tuple(rows))


def render(report: StatusReport) -> Table:
    table = Table(title="skyops status — " + ("[green]healthy[/]" if report.healthy else "[red]UNHEALTHY[/]"))
    for col in ("kind", "component", "health", "age", "detail"):
        table.add_column(col)
    for r in report.rows:
        table.add_row(r.kind, r.name, "[green]ok[/]" if r.healthy else "[bold red]FAIL[/]",
                      "" if r.age_s is None else f"{r.age_s:.0f} s", r.detail)
    return table
