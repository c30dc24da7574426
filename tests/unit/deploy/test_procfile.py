"""deploy/Procfile and the systemd units start only real `skyops run` services."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from deploy.cli import app
from deploy.run_cli import SERVICES

DEPLOY = Path(__file__).parents[3] / "deploy"
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")  # honcho's own pattern


def run_commands() -> set[str]:
    group = get_command(app)
    run = group.commands["run"]  # type: ignore[attr-defined]
    return set(run.commands)


def procfile() -> dict[str, list[str]]:
    lines = {}
    for raw in (DEPLOY / "Procfile").read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = PROCFILE_LINE.match(raw)
        assert m, f"not a Procfile line: {raw!r}"
        lines[m.group(1)] = shlex.split(m.group(2))
    return lines


def test_the_run_group_offers_every_service() -> None:
    assert run_commands() == set(SERVICES)


def test_every_procfile_line_runs_a_real_service_with_valid_options() -> None:
    lines = procfile()
    assert len(lines) >= 9
    started = set()
    for name, argv in lines.items():
        assert argv[:2] == ["skyops", "run"], f"{name}: {argv}"
        assert argv[2] in SERVICES, f"{name}: unknown service {argv[2]!r}"
        started.add(argv[2])
        # --help after the options parses them: a misspelt option fails here, not at 3 a.m.
        result = CliRunner().invoke(app, [*argv[1:], "--help"])
        assert result.exit_code == 0, f"{name}: {result.output}"
    assert {"collectors", "dispatcher", "logging", "alarms", "planner", "ves-sync", "hmi"} <= started


def test_the_procfile_ports_agree_with_the_env_file() -> None:
    env = dict(line.split("=", 1) for line in (DEPLOY / "skyops.env").read_text().splitlines()
               if line and not line.startswith("#"))
    p2 = procfile()["p2"]
    port = p2[p2.index("--port") + 1]
    assert env["SKYOPS_VES_API_URL"] == f"http://127.0.0.1:{port}/api/v1"


def test_systemd_units_run_real_services() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert units
    for unit in units:
        text = unit.read_text()
        (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        argv = shlex.split(exec_start.removeprefix("ExecStart="))
        assert argv[1:3] == ["run", argv[2]] and (argv[2] in SERVICES or argv[2] == "%i"), unit.name
        assert "Restart=on-failure" in text and "KillSignal=SIGTERM" in text
    template = (DEPLOY / "systemd" / "skyops@.service").read_text()
    for service in SERVICES:
        assert service in template  # the instance names it accepts are listed
