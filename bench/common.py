"""Shared helpers for benchmarks: timing, percentiles and the results file format of DESIGN §9."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).with_name("results")


@dataclass
class Result:
    name: str
    value: float
    unit: str
    goal: str | None = None
    baseline: float | None = None
    ratio: float | None = None


def ratio(value: float, baseline: float, *, higher_is_better: bool) -> float:
    """How many times better than the baseline (>1 is better, for speeds and for latencies alike)."""
    if higher_is_better:
        return value / baseline if baseline else float("inf")
    return baseline / value if value else float("inf")


async def timed_async(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    """Wall times in milliseconds of `repeat` calls."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def write_results(bench: str, results: list[Result], extra: dict[str, Any] | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": bench,
        "command": " ".join(["python", *sys.argv]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "results": [asdict(r) for r in results],
        **(extra or {}),
    }
    path = RESULTS_DIR / f"{bench}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def print_table(title: str, results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("name", "value", "unit", "goal", "baseline", "ratio"):
        table.add_column(col, justify="right" if col in ("value", "baseline", "ratio") else "left")
    for r in results:
        table.add_row(r.name, f"{r.value:,.1f}", r.unit, r.goal or "",
                      "" if r.baseline is None else f"{r.baseline:,.1f}",
                      "" if r.ratio is None else f"{r.ratio:,.1f}×")
    Console().print(table)
