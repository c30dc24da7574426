"""The `alarms` command line: listing from the embedded state file, checks, replays, and clear errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from typer.testing import CliRunner

from alarms.cli import app
from alarms.domain.state import AlarmState
from alarms.store import AlarmStateStore
from skyops.records import AlarmSeverity

DATA = Path(__file__).parents[2] / "data" / "alarms"
runner = CliRunner()


@pytest.fixture(autouse=True)
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("SKYOPS_REDIS_URL", raising=False)
    monkeypatch.setenv("SKYOPS_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("SKYOPS_ALARMS_STATE_FILE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_list_from_the_state_file(embedded: Path) -> None:
    raised = AlarmState("WindGust.ASM:1")
    raised.update(1_800_000_000_000_000, AlarmSeverity.CRITICAL, valid=True, reason="gust 27 m/s")
    quiet = AlarmState("Seeing.ASM:1")
    states = {s.alarm_id: {"state": s.dump()} for s in (raised, quiet)}
    store = AlarmStateStore(FakeRedis(server=FakeServer(version=(7, 0))), mirror=embedded / "alarms.json")
    asyncio.run(store.save(states))
    store.write_mirror()
    everything = runner.invoke(app, [])
    assert everything.exit_code == 0, everything.output
    assert "WindGust.ASM:1" in everything.output
    assert "Seeing.ASM:1" in everything.output
    active = runner.invoke(app, ["--active"])
    assert "WindGust.ASM:1" in active.output
    assert "Seeing.ASM:1" not in active.output


def test_ack_without_a_reachable_supervisor_says_why() -> None:
    result = runner.invoke(app, ["ack", "WindGust.ASM:1", "--comment", "seen", "--user", "maria"])
    assert result.exit_code == 1
    assert "SKYOPS_REDIS_URL" in result.output


def test_check_the_shipped_rules_and_a_bad_file() -> None:
    good = runner.invoke(app, ["check"])
    assert good.exit_code == 0, good.output
    assert "rules OK" in good.output
    bad = runner.invoke(app, ["check", str(DATA / "config" / "bad_levels_order.yaml")])
    assert bad.exit_code == 1
    assert "levels must strictly increase" in bad.output


def test_replay_cases_from_the_command_line(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["replay", *map(str, sorted((DATA / "replay").glob("*.yaml")))])
    assert ok.exit_code == 0, ok.output
    broken = tmp_path / "broken.yaml"
    text = (DATA / "replay" / "shelve.yaml").read_text().replace("shelved: true, actions: [shelve]",
                                                                  "shelved: false, actions: [shelve]")
    broken.write_text(text)
    failed = runner.invoke(app, ["replay", str(broken)])
    assert failed.exit_code == 1
    assert "shelved is True, expected False" in failed.output
