"""The Kafka adapter's edges: message errors skipped or fatal, commits of offset + 1, rewinds per partition."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest

from planner.gcn.consumer import SourceFailedError
from planner.gcn.kafka import GcnKafkaError, GcnKafkaSource
from planner.gcn.service import GcnMessage


class ScriptedConsumer(confluent_kafka.Consumer):
    """A real librdkafka consumer (never connected: port 1) whose consume/commit/seek are scripted."""

    def __init__(self, batches: list[list[confluent_kafka.Message]], *, commit_fails: bool = False) -> None:
        super().__init__({"group.id": "test", "bootstrap.servers": "127.0.0.1:1", "log_level": 0})
        self.batches = batches
        self.commit_fails = commit_fails
        self.commits: list[tuple[str, int, int]] = []
        self.seeks: list[tuple[str, int, int]] = []

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[confluent_kafka.Message]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        if self.commit_fails:
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(27, "rebalance in progress"))
        self.commits.extend((tp.topic, tp.partition, tp.offset) for tp in kwargs["offsets"])
        return None

    def seek(self, partition: confluent_kafka.TopicPartition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))


@pytest.fixture
def made() -> Iterator[list[ScriptedConsumer]]:
    consumers: list[ScriptedConsumer] = []
    yield consumers
    for c in consumers:
        c.close()


def source(made: list[ScriptedConsumer], *batches: list[confluent_kafka.Message], **kw: bool) -> GcnKafkaSource:
    consumer = ScriptedConsumer(list(batches), **kw)
    made.append(consumer)
    return GcnKafkaSource(consumer, ["t"])


def msg(offset: int, value: bytes = b"{}", partition: int = 0, topic: str = "t") -> confluent_kafka.Message:
    return confluent_kafka.Message(topic=topic, partition=partition, offset=offset, value=value)


def failed(code: int, *, fatal: bool = False) -> confluent_kafka.Message:
    return confluent_kafka.Message(topic="t", error=confluent_kafka.KafkaError(code, "broker says no", fatal=fatal))


def test_poll_skips_message_errors_and_keeps_the_notices(
    made: list[ScriptedConsumer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="planner.gcn.kafka")
    s = source(
        made,
        [
            msg(0),
            failed(confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART),
            failed(confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED),
            msg(1, b"x"),
        ],
    )

    polled = s.poll(10, 0.1)

    assert polled == [
        GcnMessage(topic="t", partition=0, offset=0, value=b"{}"),
        GcnMessage(topic="t", partition=0, offset=1, value=b"x"),
    ]
    levels = {r.levelname for r in caplog.records if "broker says no" in r.getMessage()}
    assert levels == {"DEBUG", "WARNING"}  # an unknown topic is expected at start; a refused one is not


def test_a_fatal_client_error_stops_the_consumer(made: list[ScriptedConsumer]) -> None:
    s = source(made, [failed(confluent_kafka.KafkaError._FATAL, fatal=True)])

    with pytest.raises(GcnKafkaError, match="broker says no") as info:
        s.poll(10, 0.1)
    assert isinstance(info.value, SourceFailedError)


def test_commit_stores_the_next_offset(made: list[ScriptedConsumer]) -> None:
    s = source(made)

    assert s.commit(GcnMessage(topic="t", partition=2, offset=41, value=None))
    assert made[0].commits == [("t", 2, 42)]


def test_a_refused_commit_is_reported_not_raised(
    made: list[ScriptedConsumer], caplog: pytest.LogCaptureFixture
) -> None:
    s = source(made, commit_fails=True)

    assert not s.commit(GcnMessage(topic="t", partition=0, offset=3, value=None))
    assert any("delivered again" in r.getMessage() for r in caplog.records)


def test_rewind_goes_back_to_the_first_unhandled_message_of_each_partition(made: list[ScriptedConsumer]) -> None:
    s = source(made)
    pending = [
        GcnMessage(topic="t", partition=0, offset=7, value=None),
        GcnMessage(topic="u", partition=0, offset=2, value=None),
        GcnMessage(topic="t", partition=0, offset=8, value=None),
        GcnMessage(topic="t", partition=1, offset=5, value=None),
    ]

    s.rewind(pending)

    assert sorted(made[0].seeks) == [("t", 0, 7), ("t", 1, 5), ("u", 0, 2)]
