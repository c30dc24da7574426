"""The logging configuration: every good fixture loads, every bad one is refused naming its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_db.loader import ConfigError
from config_db.logging import LoggingConfig, load_logging_config

FIXTURES = Path(__file__).parents[2] / "data" / "logging_svc" / "config"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("good_*.yaml")), ids=lambda p: p.stem)
def test_good_configs_load(path: Path) -> None:
    assert isinstance(load_logging_config(path), LoggingConfig)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_configs_are_refused_naming_the_field(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as err:
        load_logging_config(path)
    assert path.name in str(err.value) and expected in str(err.value)


def test_full_config_values() -> None:
    config = load_logging_config(FIXTURES / "good_full.yaml")
    assert config.filters.source_level("devices") == 30
    assert config.filters.source_level("hmi") == 20
    assert config.filters.component_level("collectors.asm.poller") == 40
    assert config.filters.component_level("collectors.opcua") == 10
    assert config.handler.flush_interval.total_seconds() == 0.05
    assert config.http.keys["hmi"].get_secret_value() == "a-long-enough-key-123"
    assert "a-long-enough-key-123" not in repr(config)
