"""Replays every recorded case under tests/data/alarms/replay (promtool style) on a FakeClock."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms.replay import expand_series, load_case, run_case
from config_db.loader import ConfigError

CASES = sorted((Path(__file__).parents[2] / "data" / "alarms" / "replay").glob("*.yaml"))


def test_cases_exist() -> None:
    assert len(CASES) >= 8


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_replay_case(path: Path) -> None:
    result = run_case(load_case(path))
    assert result.ok, "\n".join(result.failures)


def test_a_wrong_expectation_is_reported() -> None:
    case = load_case(CASES[0].with_name("latching_ack.yaml"))
    wrong = case.expect[2].model_copy(update={"latched": "WARNING"})
    result = run_case(case.model_copy(update={"expect": [wrong]}))
    assert not result.ok
    assert "latched is SERIOUS, expected WARNING" in result.failures[0]


def test_an_unexpected_refusal_is_reported() -> None:
    case = load_case(CASES[0].with_name("latching_ack.yaml"))
    actions = [a.model_copy(update={"refused": False}) for a in case.actions]
    result = run_case(case.model_copy(update={"actions": actions}))
    assert any("refused" in f for f in result.failures)


def test_every_event_is_numbered_per_alarm_without_gaps() -> None:
    result = run_case(load_case(CASES[0].with_name("latching_ack.yaml")))
    seqs = [e.seq for e in result.events if e.alarm_id == "WindGust.ASM:1"]
    assert seqs == list(range(1, len(seqs) + 1))
    acks = [e for e in result.events if e.action == "ack"]
    assert acks[0].user == "maria"
    assert acks[0].comment == "watching the gusts"


def test_series_notation() -> None:
    assert expand_series("1 _ bad 5+1x3 10-2x2") == [1.0, "_", "bad", 5.0, 6.0, 7.0, 8.0, 10.0, 8.0, 6.0]
    with pytest.raises(ValueError, match="series token"):
        expand_series("1 x")


def test_a_case_without_rules_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text('name: x\nstart: "2026-03-01T03:00:00Z"\nexpect: [{at_s: 0, alarm: A.B:1}]\n')
    with pytest.raises(ConfigError, match="a case needs rules"):
        load_case(path)
