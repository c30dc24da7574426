"""The alarms file loader over good and bad fixtures, and the shipped La Silla defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms.config import load_alarms
from config_db.loader import ConfigError

DATA = Path(__file__).parents[2] / "data" / "alarms" / "config"


@pytest.mark.parametrize("path", sorted(DATA.glob("good_*.yaml")), ids=lambda p: p.stem)
def test_good_files_load_and_build(path: Path) -> None:
    config = load_alarms(path)
    rules = config.build_rules()
    assert [r.alarm_id for r in rules] == [r.alarm_id for r in config.rules]
    assert all(r.inputs for r in rules)


@pytest.mark.parametrize("path", sorted(DATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_files_are_refused_naming_file_and_problem(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    with pytest.raises(ConfigError) as err:
        load_alarms(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message


def test_la_silla_defaults_cover_the_site() -> None:
    config = load_alarms()
    ids = {r.alarm_id for r in config.rules}
    for name in ("WindSpeed", "WindGust", "WindPointing", "Humidity", "DewPoint", "Seeing", "Temperature",
                 "OpcUaConnection", "AsmDataAge", "VesSync"):
        assert any(i.startswith(name + ".") for i in ids), name
    points = {p for r in config.build_rules() for p in r.inputs}
    assert {"lasilla.asm.wind_speed", "lasilla.asm.wind_direction", "ntt.opcua.connected",
            "skyops.ves_sync.consecutive_failures", "lasilla.asm.data_age_s"} <= points
    kinds = {r.consequence.kind for r in config.rules}
    assert {"close_dome", "pointing_restriction", "seeing_limit", "none"} <= kinds
    assert all(r.guidance.strip() for r in config.rules)
