"""Reports (pure figures, JSON and plots) and the `plan` / `report` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app, gantt_line
from planner.config import load_site
from planner.domain.reports import ObRecord, period_report
from planner.reports import write_report
from planner.store import AutoObCreate, ObCreate, ObState, ObStore, ObType, TimeShare
from skyops.opdb import make_engine, make_sessionmaker, upgrade

START = datetime(2025, 3, 1, 16, tzinfo=UTC)
END = START + timedelta(days=7)


def record(ob_id: int, ob_type: str, **changes: object) -> ObRecord:
    values: dict[str, object] = {
        "ob_id": ob_id,
        "ob_type": ob_type,
        "programme": "SOXS-GTO" if ob_type in ("CTOB", "FUOB") else "115.X-0001",
        "time_share": "GTO" if ob_type in ("CTOB", "FUOB") else "ESO",
        "exposure_s": 1800.0,
        "state": "queued",
    }
    return ObRecord(**{**values, **changes})  # type: ignore[arg-type]


def test_period_report_figures() -> None:
    day = START + timedelta(days=1)
    records = [
        record(1, "CTOB", state="observed", observed_at=day),
        record(2, "CTOB", state="expired", expired_at=day),
        record(3, "CTOB", state="expired", expired_at=END + timedelta(days=1)),  # outside the period
        record(4, "ESO", state="observed", observed_at=day, exposure_s=3600.0),
        record(5, "ESO", programme="115.Y-0002", state="queued"),
        record(6, "ESO", programme="115.Y-0002", state="observed", observed_at=day),
        record(7, "ESO", programme="115.Y-0002", state="deleted"),
    ]

    report = period_report(records, start=START, end=END, dark_hours=10.0)

    assert report.science_hours == pytest.approx(0.5 + 1.0 + 0.5)
    assert report.duty_cycle == pytest.approx(0.2)
    assert (report.transient_hits, report.transient_misses, report.hit_rate) == (1, 1, 0.5)
    assert [(p.programme, p.observed, p.total) for p in report.proposals] == [
        ("115.X-0001", 1, 1),
        ("115.Y-0002", 1, 2),
    ]
    assert report.completed_proposals_fraction == 0.5
    assert (report.gto_hours, report.eso_hours) == (0.5, 1.5)


def test_period_report_refuses_an_empty_period() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        period_report([], start=END, end=START, dark_hours=1.0)


def test_write_report_makes_json_png_and_svg(tmp_path: Path) -> None:
    report = period_report([record(1, "CTOB", observed_at=START)], start=START, end=END, dark_hours=70.0)

    paths = write_report(report, tmp_path)

    assert [p.name for p in paths] == ["report.json", "report.png", "report.svg"]
    assert json.loads(paths[0].read_text())["transients"] == {"hits": 1, "misses": 0, "hit_rate": 1.0}
    assert paths[1].read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in paths[2].read_bytes()


def test_gantt_line_places_the_block_on_the_night() -> None:
    assert gantt_line(0, 60, 600, width=10) == "█" + "·" * 9
    assert gantt_line(300, 600, 600, width=10) == "·" * 5 + "█" * 5


def test_plan_command_prints_a_table_and_a_gantt() -> None:
    result = CliRunner().invoke(app, ["plan", "--night", "2025-03-20", "--demo", "60"])

    assert result.exit_code == 0, result.output
    assert "Night 2025-03-20 at La Silla NTT" in result.output
    assert "█" in result.output
    assert "OBs scheduled of" in result.output


def test_plan_command_refuses_a_bad_date() -> None:
    result = CliRunner().invoke(app, ["plan", "--night", "2025-13-40", "--demo", "5"])

    assert result.exit_code == 2
    assert "is not a date" in result.output


def test_report_command_reads_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    store = ObStore(make_sessionmaker(engine), site=load_site())
    created = datetime(2025, 3, 20, 12, tzinfo=UTC)
    hit = store.create_auto_ob(
        data=AutoObCreate(mid=1, target_name="AT1", ra_deg=10, dec_deg=-30, magnitude=17.3), now=created
    )
    store.set_state(ob_id=hit.id, state=ObState.OBSERVED, now=created + timedelta(hours=12), actor="tracker")
    eso = ObCreate(
        ob_type=ObType.ESO,
        name="OB1",
        target_name="NGC 300",
        ra_deg=13.7,
        dec_deg=-37.7,
        exposure_s=1200,
        priority=2,
        programme="115.X-0001",
        time_share=TimeShare.ESO,
    )
    store.create_ob(data=eso, now=created, actor="science")
    engine.dispose()

    result = CliRunner().invoke(
        app, ["report", "--from", "2025-03-20", "--to", "2025-03-21", "--out", str(tmp_path / "r"), "--sql-url", url]
    )

    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["transients"]["hits"] == 1
    assert data["time_share_hours"] == {"GTO": pytest.approx(752 / 3600), "ESO": 0.0}
    assert data["proposals"] == [{"programme": "115.X-0001", "observed": 0, "total": 1, "fraction": 0.0}]
    assert 15 < data["dark_hours"] < 22  # two March nights at La Silla
