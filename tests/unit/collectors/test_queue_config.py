"""The Mon Queue's configuration: the shipped bounds, what a bad one is told, and the stream retention it makes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from config_db.monitoring import DispatcherConfig, QueueConfig, load_monitoring
from skyops.bus import StreamRetention


def test_the_shipped_queue_is_a_short_buffer_that_keeps_a_backlog() -> None:
    retention = load_monitoring().queue.retention()
    assert retention.keep_unacknowledged
    assert retention.max_age <= timedelta(minutes=30)
    assert retention.max_bytes is not None and retention.max_bytes <= 256 * 1024 * 1024
    assert retention.hard_max_bytes is not None and retention.hard_max_bytes >= 8 * retention.max_bytes


def test_without_keeping_every_bound_is_hard() -> None:
    retention = QueueConfig(keep_unacknowledged=False, max_mb=10, hard_max_mb=20).retention()
    assert not retention.keep_unacknowledged and retention.max_bytes is None
    assert retention.hard_max_bytes == 20 * 1024 * 1024


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_mb", 0, "greater than 0"),
    ("hard_max_mb", -1, "greater than 0"),
    ("max_age_s", 0, "greater than 0"),
    ("keep_unacknowledged", "sometimes", "valid boolean"),
    ("max_size", 3, "Extra inputs are not permitted"),
])
def test_bad_queue_settings_are_refused_naming_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        QueueConfig.model_validate({field: value})
    assert field in str(err.value) and message in str(err.value)


def test_a_hard_cap_below_the_soft_budget_is_refused() -> None:
    with pytest.raises(ValidationError, match="hard_max_mb"):
        QueueConfig(max_mb=100, hard_max_mb=50)


@pytest.mark.parametrize("config", [
    {"max_len": 10, "max_age": timedelta(hours=1), "max_bytes": 1000},  # a soft budget needs keeping
    {"max_len": 10, "max_age": timedelta(hours=1), "keep_unacknowledged": True, "max_bytes": 1000,
     "hard_max_bytes": 999},
    {"max_len": 10, "max_age": timedelta(hours=1), "hard_max_bytes": 0},
])
def test_bad_stream_retentions_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StreamRetention.model_validate(config)


def test_a_write_of_held_samples_is_bounded() -> None:
    assert DispatcherConfig().max_write_samples <= 1_000_000
    with pytest.raises(ValidationError, match="max_write_samples"):
        DispatcherConfig(max_write_samples=0)
