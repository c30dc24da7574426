"""The `skyops` command mounts every service's commands."""

from __future__ import annotations

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
