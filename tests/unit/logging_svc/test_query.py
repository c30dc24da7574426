"""Public log queries on the embedded archive: filters, pages, export, live follow, and the CLI."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from logging_svc.cli import app, render, show_logs
from logging_svc.query import export_jsonl, follow_logs, iter_logs, make_query, parse_since, search_logs
from skyops import codec, streams
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus
from skyops.errors import InvalidRecordError
from skyops.records import LogRecord
from tests.unit.logging_svc.conftest import T0

LEVELS = (10, 20, 30, 40)


def records() -> list[LogRecord]:
    return [
        LogRecord(ts=T0 + timedelta(seconds=i), level=LEVELS[i % 4], source=("planner", "alarms", "hmi")[i % 3],
                  message=f"event {i} " + ("dome closed" if i % 5 == 0 else "tracking"),
                  component=f"c{i % 2}", host=("ops1", "ops2")[i % 2], ob_id=f"OB-{i}" if i % 7 == 0 else None)
        for i in range(60)
    ]


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[SqliteArchive]:
    a = SqliteArchive(tmp_path / "archive.sqlite3")
    await a.open()
    await a.write_logs(records())
    yield a
    await a.close()


def q(**kw: object) -> object:
    return make_query(start=T0, end=T0 + timedelta(hours=1), **kw)  # type: ignore[arg-type]


def expected(pred: object, newest_first: bool = True) -> list[str]:
    out = [r.message for r in records() if pred(r)]  # type: ignore[operator]
    return out[::-1] if newest_first else out


async def test_filters_combine(archive: SqliteArchive) -> None:
    page = await search_logs(archive, q(min_level="WARNING", sources=["planner", "hmi"], text="DOME",
                                        limit=100))  # type: ignore[arg-type]
    assert [r.message for r in page.records] == expected(
        lambda r: r.level >= 30 and r.source in ("planner", "hmi") and "dome" in r.message)
    by_host = await search_logs(archive, q(hosts=["ops2"], components=["c1"], regex=r"event \d*7 ", limit=100))  # type: ignore[arg-type]
    assert [r.message for r in by_host.records] == expected(lambda r: r.host == "ops2" and r.message[6:].startswith(
        tuple(f"{d}7 " for d in ("", "1", "2", "3", "4", "5"))))


async def test_cursor_pages_cover_everything_once_in_both_orders(archive: SqliteArchive) -> None:
    for newest in (True, False):
        got = [r.message async for r in iter_logs(archive, q(limit=7, newest_first=newest))]  # type: ignore[arg-type]
        assert got == expected(lambda r: True, newest)


async def test_export_writes_json_lines_that_read_back(archive: SqliteArchive) -> None:
    out = io.StringIO()
    n = await export_jsonl(archive, q(min_level="ERROR", newest_first=False, limit=5), out)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert n == len(lines) == 15
    first = json.loads(lines[0])
    assert first["level"] == "ERROR" and first["message"] == "event 3 tracking" and first["ts"].endswith("Z")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800),
                                                ("1w", 604800), (" 1.5H ", 5400)])
def test_since_durations(text: str, seconds: int) -> None:
    assert parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1y", "h", "-1h", "1 hour"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidRecordError, match="90s, 15m, 1h"):
        parse_since(text)


def test_bad_query_arguments_are_refused_by_name() -> None:
    with pytest.raises(InvalidRecordError, match="unknown log level 'LOUD'"):
        make_query(start=T0, end=T0 + timedelta(hours=1), min_level="LOUD")
    with pytest.raises(InvalidRecordError, match="bad regular expression"):
        make_query(start=T0, end=T0 + timedelta(hours=1), regex="(")


async def test_follow_yields_matching_live_records(bus: Bus) -> None:
    ready = asyncio.Event()
    query = make_query(start=T0, end=T0 + timedelta(hours=1), min_level="WARNING", text="dome")
    got: list[LogRecord] = []

    async def collect() -> None:
        async for r in follow_logs(bus, query.matches, ready=ready):
            got.append(r)
            if len(got) == 2:
                return

    task = asyncio.create_task(collect())
    await asyncio.wait_for(ready.wait(), 5)
    await bus.broadcast(streams.LIVE_LOGS, b"garbage")
    await bus.broadcast(streams.LIVE_LOGS, codec.encode_logs(records()[:25]))
    await asyncio.wait_for(task, 5)
    assert [r.message for r in got] == ["event 15 dome closed", "event 10 dome closed"][::-1]
    assert await bus.subscribers(streams.LIVE_LOGS) == 0


async def test_show_logs_prints_the_newest_matches_oldest_first(archive: SqliteArchive) -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    n = await show_logs(archive, q(sources=["alarms"], limit=3), console=console)  # type: ignore[arg-type]
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert n == 3
    assert [line.split("event ")[1].split()[0] for line in text.splitlines()] == ["52", "55", "58"]


def test_render_colours_by_level() -> None:
    r = records()[3]
    text = render(r)
    assert text.plain == "2026-11-22 03:00:03.000Z ERROR    planner/c1@ops2 event 3 tracking"
    assert any("red" in str(span.style) for span in text.spans)


def test_cli_reads_the_embedded_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fill() -> None:
        a = SqliteArchive(tmp_path / "archive.sqlite3")
        await a.open()
        now = datetime.now(UTC)
        await a.write_logs([LogRecord(ts=now - timedelta(minutes=m), level=lvl, source=src, message=f"m{m}")
                            for m, lvl, src in ((5, 30, "planner"), (10, 20, "planner"), (20, 40, "alarms"),
                                                (90, 40, "planner"))])
        await a.close()

    asyncio.run(fill())
    monkeypatch.setenv("SKYOPS_VAR_DIR", str(tmp_path))
    for name in ("SKYOPS_CASSANDRA_HOSTS", "SKYOPS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["--level", "WARNING", "--source", "planner", "--since", "1h"])
    assert result.exit_code == 0, result.output
    assert "m5" in result.output and "m10" not in result.output and "m90" not in result.output
    result = runner.invoke(app, ["--json", "--since", "2h", "--grep", "M2"])
    assert [json.loads(line)["message"] for line in result.output.splitlines()] == ["m20"]
    result = runner.invoke(app, ["--since", "yesterday"])
    assert result.exit_code != 0 and "90s, 15m" in result.output
