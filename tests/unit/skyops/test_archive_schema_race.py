"""The SQLite archive's schema creation when several processes open one fresh file at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from skyops.archive.sqlite import SqliteArchive
from tests.support.races import at_once

PROCESSES = 4
DEADLINE_S = 120


def _open(path: str, barrier: Barrier, results: multiprocessing.Queue[str]) -> None:
    async def run() -> None:
        archive = SqliteArchive(path)
        barrier.wait(timeout=DEADLINE_S)
        await archive.open()
        try:
            await archive.ping()
        finally:
            await archive.close()

    try:
        asyncio.run(run())
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.timeout(DEADLINE_S + 60)
def test_processes_opening_one_fresh_archive_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "var" / "archive.sqlite3"
    outcomes = at_once(_open, (str(path),), processes=PROCESSES, deadline_s=DEADLINE_S)

    assert outcomes == ["ok"] * PROCESSES
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"latest", "logs", "alarm_history", "agg_1m", "agg_1h"} <= tables
