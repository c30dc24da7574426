"""Stream retention: what a valid retention is, and when publishing trims by age."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from pydantic import ValidationError

from skyops.bus import Bus, StreamRetention, entry_id_ms
from skyops.errors import NaiveDatetimeError


@pytest.mark.parametrize(
    "config",
    [
        {"max_len": 1, "max_age": timedelta(seconds=1)},
        {"max_len": 1_000_000, "max_age": timedelta(days=7), "age_trim_every": 1},
        {"max_len": 10, "max_age": "PT6H"},
    ],
)
def test_good_retentions_are_accepted(config: dict[str, Any]) -> None:
    StreamRetention.model_validate(config)


@pytest.mark.parametrize(
    "config",
    [
        {"max_len": 0, "max_age": timedelta(hours=1)},
        {"max_len": -5, "max_age": timedelta(hours=1)},
        {"max_len": 10, "max_age": timedelta(0)},
        {"max_len": 10, "max_age": timedelta(seconds=-1)},
        {"max_len": 10, "max_age": timedelta(hours=1), "age_trim_every": 0},
        {"max_len": 10},
        {"max_len": 10, "max_age": timedelta(hours=1), "maxlen": 3},
    ],
)
def test_bad_retentions_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StreamRetention.model_validate(config)


def test_a_retention_cannot_be_changed_after_creation() -> None:
    retention = StreamRetention(max_len=10, max_age=timedelta(hours=1))
    with pytest.raises(ValidationError):
        retention.max_len = 20  # type: ignore[misc]


class XtrimSpy:
    """Records every XTRIM the bus sends, then lets it through."""

    def __init__(self, client: FakeRedis) -> None:
        self.calls: list[dict[str, Any]] = []
        self._xtrim = client.xtrim

    async def __call__(self, name: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return await self._xtrim(name, **kwargs)

    @property
    def minids(self) -> list[str]:
        return [c["minid"] for c in self.calls if c.get("minid") is not None]


@pytest.fixture
async def client() -> AsyncIterator[FakeRedis]:
    redis = FakeRedis(server=FakeServer(version=(7, 0)))
    yield redis
    await redis.aclose()


@pytest.fixture
def spy(client: FakeRedis, monkeypatch: pytest.MonkeyPatch) -> XtrimSpy:
    recorder = XtrimSpy(client)
    monkeypatch.setattr(client, "xtrim", recorder)
    return recorder


async def test_publishing_trims_by_age_first_then_every_nth_entry(client: FakeRedis, spy: XtrimSpy) -> None:
    bus = Bus(client)
    retention = StreamRetention(max_len=1000, max_age=timedelta(minutes=5), age_trim_every=4)
    stream = f"s:{uuid.uuid4().hex}"

    first = await bus.publish(stream, b"a", retention=retention)
    assert spy.minids == [f"{entry_id_ms(first) - 300_000}-0"], "a stream new to this bus is trimmed at once"
    for _ in range(3):
        await bus.publish(stream, b"b", retention=retention)
    assert len(spy.minids) == 1
    fourth = await bus.publish(stream, b"c", retention=retention)
    assert spy.minids[1:] == [f"{entry_id_ms(fourth) - 300_000}-0"]

    ids = await bus.publish_many(stream, [b"d"] * 4, retention=retention)
    assert spy.minids[2:] == [f"{entry_id_ms(ids[-1]) - 300_000}-0"], "publish_many counts entries"
    assert all(c.get("approximate", True) for c in spy.calls), "publishing never pays for exact trimming"


async def test_an_explicit_trim_restarts_the_count(client: FakeRedis, spy: XtrimSpy) -> None:
    bus = Bus(client)
    retention = StreamRetention(max_len=1000, max_age=timedelta(minutes=5), age_trim_every=3)
    stream = f"s:{uuid.uuid4().hex}"
    await bus.publish(stream, b"a", retention=retention)
    await bus.publish(stream, b"b", retention=retention)

    await bus.trim(stream, retention=retention)
    trims = len(spy.minids)
    await bus.publish_many(stream, [b"c", b"d"], retention=retention)
    assert len(spy.minids) == trims
    await bus.publish(stream, b"e", retention=retention)
    assert len(spy.minids) == trims + 1


async def test_a_trim_measured_from_a_naive_time_is_refused(client: FakeRedis) -> None:
    bus = Bus(client)
    retention = StreamRetention(max_len=10, max_age=timedelta(hours=1))
    with pytest.raises(NaiveDatetimeError):
        await bus.trim("s", retention=retention, now=datetime(2025, 1, 1, 12))
