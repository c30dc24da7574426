"""History queries, their CSV/JSON export, and the `points` / `history` commands on the embedded archive."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors import queries
from collectors.cli import app, parse_time
from config_db.monitoring import load_monitoring
from skyops.archive.sqlite import SqliteArchive
from skyops.records import Quality, Sample, SampleBatch

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


async def fill(path: Path) -> None:
    archive = SqliteArchive(path, points=load_monitoring().retention_classes())
    await archive.open()
    samples = [Sample("lasilla.asm.seeing", T0 + timedelta(seconds=10 * i), 0.5 + 0.01 * i) for i in range(30)]
    samples.append(Sample("lasilla.asm.seeing", T0 + timedelta(seconds=305), None, Quality.BAD))
    samples.append(Sample("ntt.tcs.state", T0 + timedelta(seconds=5), "TRACKING"))
    await archive.write_samples(SampleBatch.from_samples(samples))
    await archive.flush_aggregates()
    await archive.close()


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SKYOPS_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("SKYOPS_CASSANDRA_HOSTS", raising=False)
    asyncio.run(fill(tmp_path / "archive.sqlite3"))
    return tmp_path


async def test_query_functions_and_exports(tmp_path: Path) -> None:
    await fill(tmp_path / "a.sqlite3")
    archive = SqliteArchive(tmp_path / "a.sqlite3", points=load_monitoring().retention_classes())
    await archive.open()
    try:
        series = await queries.raw_many(archive, ["lasilla.asm.seeing", "ntt.tcs.state"], T0, T0 + timedelta(hours=1))
        rows = queries.raw_records(series)
        assert len(rows) == 32
        assert rows[0]["point"] == "lasilla.asm.seeing"
        assert rows[1] == {"point": "ntt.tcs.state", "ts": (T0 + timedelta(seconds=5)).isoformat(),
                           "value": "TRACKING", "quality": "GOOD"}
        assert rows[-1]["value"] is None
        assert rows[-1]["quality"] == "BAD"
        binned = await queries.binned_many(archive, ["lasilla.asm.seeing"], T0, T0 + timedelta(minutes=10), 2)
        b = queries.binned_records(binned)
        assert [(r["count"], r["bad_count"]) for r in b] == [(30, 0), (0, 1)]
        assert b[0]["min"] == pytest.approx(0.5)
        assert b[1]["mean"] is None  # only a BAD sample: a gap
        assert json.loads(queries.to_json(b))[1]["mean"] is None
        parsed = list(csv.DictReader(io.StringIO(queries.to_csv(b))))
        assert parsed[1]["mean"] == ""
        assert parsed[0]["count"] == "30"
        latest = await queries.latest(archive, ["ntt.tcs.state"])
        assert latest["ntt.tcs.state"].value == "TRACKING"
        pts = await queries.points(archive, load_monitoring())
        assert {p.name: p.latest for p in pts}["lasilla.asm.wind_speed"] is None
        assert queries.to_csv([]) == ""
    finally:
        await archive.close()


def test_parse_time() -> None:
    now = T0
    assert parse_time("now", now=now) == now
    assert parse_time("-2h", now=now) == now - timedelta(hours=2)
    assert parse_time("-30m", now=now) == now - timedelta(minutes=30)
    assert parse_time("2026-11-22T01:00:00", now=now) == datetime(2026, 11, 22, 1, tzinfo=UTC)
    with pytest.raises(Exception, match="not a time"):
        parse_time("yesterday", now=now)


def test_cli_points_lists_latest_values(var_dir: Path) -> None:
    result = CliRunner().invoke(app, ["points"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "lasilla.asm.seeing" in result.output
    assert "TRACKING" in result.output


def test_cli_history_raw_json_and_binned_csv(var_dir: Path) -> None:
    runner = CliRunner()
    start, end = T0.isoformat(), (T0 + timedelta(minutes=10)).isoformat()
    raw = runner.invoke(app, ["history", "lasilla.asm.seeing", "--from", start, "--to", end])
    assert raw.exit_code == 0, raw.output
    assert len(json.loads(raw.output)) == 31
    binned = runner.invoke(app, ["history", "lasilla.asm.seeing", "--from", start, "--to", end, "--bins", "5",
                                 "--csv"])
    assert binned.exit_code == 0, binned.output
    rows = list(csv.DictReader(io.StringIO(binned.output)))
    assert [int(r["count"]) for r in rows] == [12, 12, 6, 0, 0]
    assert [int(r["bad_count"]) for r in rows] == [0, 0, 1, 0, 0]


def test_cli_history_refuses_bad_input(var_dir: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["history", "no.such.point"])
    assert unknown.exit_code != 0
    assert "no monitoring point" in unknown.output
    backwards = runner.invoke(app, ["history", "lasilla.asm.seeing", "--from", "now", "--to", "-1h"])
    assert backwards.exit_code != 0
    assert "must be after" in backwards.output
