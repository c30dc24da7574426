"""Render bench/results/*.json as the README's benchmark table (between the BENCH markers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- BENCH:START -->", "<!-- BENCH:END -->"


def fmt(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


def table() -> str:
    lines = ["| bench | measure | value | unit | goal | baseline | ratio |", "|---|---|---|---|---|---|---|"]
    commands = []
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        commands.append(f"- `{doc['bench']}`: `{doc['command']}` ({doc['when']}, {doc['machine']['cpus']} CPUs, "
                        f"Python {doc['machine']['python']})")
        for r in doc["results"]:
            ratio = "" if r.get("ratio") is None else f"{r['ratio']:,.1f}×"
            lines.append(f"| {doc['bench']} | {r['name']} | {fmt(r['value'])} | {r['unit']} | {r.get('goal') or ''} "
                         f"| {fmt(r.get('baseline'))} | {ratio} |")
    return "\n".join([*lines, "", "Produced by:", *commands])


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit("README.md lacks the BENCH markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    main()
