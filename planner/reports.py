"""Reports for management as JSON and as plots (PNG and SVG) the HMI can show."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from planner.config import SchedulerConfig, SiteConfig
from planner.domain.reports import PeriodReport, period_report
from planner.ephemeris import compute_night, local_noon_utc
from planner.store import ObStore

# Dark time only needs the Sun: a 10-minute grid is within minutes of the exact total per night.
DARK_STEP_MINUTES = 10


def dark_hours(site: SiteConfig, first: date, last: date, *, config: SchedulerConfig | None = None) -> float:
    """Hours with the Sun below the dark-time altitude over the nights `first`..`last` (inclusive)."""
    cfg = config or SchedulerConfig()
    total_min = 0
    night = first
    while night <= last:
        grid = compute_night(site, night, config=cfg, step_minutes=DARK_STEP_MINUTES)
        total_min += int(grid.dark_cells(cfg.dark_sun_altitude_deg).sum()) * grid.slot_minutes
        night += timedelta(days=1)
    return total_min / 60.0


def build_report(store: ObStore, site: SiteConfig, first: date, last: date, *,
                 config: SchedulerConfig | None = None) -> PeriodReport:
    """The report of the nights `first`..`last`, from noon before the first to noon after the last."""
    if last < first:
        raise ValueError(f"--to {last.isoformat()} is before --from {first.isoformat()}")
    start = local_noon_utc(site, first)
    end = local_noon_utc(site, last) + timedelta(days=1)
    dark = dark_hours(site, first, last, config=config)
    return period_report(store.report_records(), start=start, end=end, dark_hours=dark)


def write_report(report: PeriodReport, out_dir: Path, *, stem: str = "report") -> list[Path]:
    """`stem`.json, `stem`.png and `stem`.svg in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    span = f"{report.start.date().isoformat()} – {report.end.date().isoformat()}"
    axes[0].bar(["dark", "science"], [report.dark_hours, report.science_hours], color=["#555", "#2a7"])
    axes[0].set_ylabel("hours")
    axes[0].set_title(f"duty cycle {100 * report.duty_cycle:.0f} %")
    axes[1].bar(["hit", "miss"], [report.transient_hits, report.transient_misses], color=["#2a7", "#c44"])
    axes[1].set_title(f"transients: hit rate {100 * report.hit_rate:.0f} %")
    shares = [report.gto_hours, report.eso_hours]
    if sum(shares) > 0:
        axes[2].pie(shares, labels=["GTO", "ESO"], autopct="%1.0f%%", colors=["#37a", "#fa3"])
    axes[2].set_title(f"time share; proposals complete {100 * report.completed_proposals_fraction:.0f} %")
    fig.suptitle(f"SOXS at the NTT, {span}")
    fig.tight_layout()
    paths = [json_path]
    for ext in ("png", "svg"):
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path)
        paths.append(path)
    plt.close(fig)
    return paths
