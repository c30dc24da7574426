"""The `skyops` command mounts every service's commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app


def test_top_level_commands_are_mounted() -> None:
    out = CliRunner().invoke(app, ["--help"]).output
    for command in ("up", "run", "ves", "version", "alarms", "ack", "plan", "report", "points", "history", "logs"):
        assert command in out


def test_run_offers_the_p2_emulator() -> None:
    out = CliRunner().invoke(app, ["run", "--help"]).output
    assert "p2-emulator" in out


def test_unknown_command_fails_with_a_message() -> None:
    result = CliRunner().invoke(app, ["launch-rockets"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_plan_prints_a_night_with_a_gantt() -> None:
    result = CliRunner().invoke(app, ["plan", "--help"])
    assert result.exit_code == 0
    assert "--night" in result.output


def test_run_offers_every_service() -> None:
    out = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    for service in ("monitoring", "collectors", "dispatcher", "logging", "alarms", "planner", "ves-sync", "hmi",
                    "p2-emulator", "asm-simulator", "telescope-simulator"):
        assert service in out


@pytest.mark.parametrize(("args", "problem"), [
    (["--start", "tomorrow"], "is not 'now', 'evening'"),
    (["--speed", "0"], "speed"),
    (["--scenario", "meteor_shower"], "meteor_shower"),
])
def test_up_refuses_bad_options_before_starting_anything(tmp_path: Path, args: list[str], problem: str) -> None:
    result = CliRunner().invoke(app, ["up", "--var-dir", str(tmp_path / "var"), *args], terminal_width=200)
    assert result.exit_code == 2
    assert problem in result.output
    assert not (tmp_path / "var").exists()


def test_up_refuses_a_broken_ob_set(tmp_path: Path) -> None:
    bad = tmp_path / "obs.json"
    bad.write_text('{"generator": "x", "obs": [{"kind": "ob", "data": {}}]}')
    result = CliRunner().invoke(app, ["up", "--var-dir", str(tmp_path / "var"), "--sample-obs", str(bad)],
                                terminal_width=200)
    assert result.exit_code == 2
    assert "obs.0" in result.output


def test_run_refuses_half_a_shared_clock_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYOPS_CLOCK_START", "2026-03-21T03:00:00Z")
    result = CliRunner().invoke(app, ["run", "asm-simulator", "--port", "0"], terminal_width=200)
    assert result.exit_code == 2
    assert "go together" in result.output


def test_run_planner_refuses_a_broken_ob_set(tmp_path: Path) -> None:
    bad = tmp_path / "obs.json"
    bad.write_text("[]")
    result = CliRunner().invoke(app, ["run", "planner", "--sample-obs", str(bad)], terminal_width=200)
    assert result.exit_code == 2
    assert "obs.json" in result.output


def test_consumer_names_are_stable_per_host_service_and_instance() -> None:
    from deploy.run_cli import consumer_name

    assert consumer_name("dispatcher", 2) == consumer_name("dispatcher", 2)
    assert consumer_name("dispatcher", 1) != consumer_name("dispatcher", 2)
    assert consumer_name("dispatcher", 1).endswith("-dispatcher-1")
