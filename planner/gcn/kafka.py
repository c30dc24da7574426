"""The Kafka side of the GCN consumer: a thin adapter over `gcn_kafka.Consumer` with manual offset commits."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import confluent_kafka
import gcn_kafka

from config_db.gcn import KafkaConfig, Scalar
from planner.gcn.consumer import SourceFailedError
from planner.gcn.service import GcnMessage

log = logging.getLogger(__name__)

# Subscribing before a topic exists (or to one the account may not read) reports these, then recovers.
TRANSIENT_ERRORS = frozenset(
    {
        confluent_kafka.KafkaError._PARTITION_EOF,
        confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
        confluent_kafka.KafkaError._UNKNOWN_TOPIC,
        confluent_kafka.KafkaError._TRANSPORT,
        confluent_kafka.KafkaError._ALL_BROKERS_DOWN,
    }
)


class GcnKafkaError(SourceFailedError):
    """The Kafka client reported a fatal error: it cannot go on and must be rebuilt."""


def consumer_config(kafka: KafkaConfig) -> dict[str, Scalar]:
    """librdkafka properties: the configured ones, plus the group and manual commits the consumer relies on."""
    return {
        "auto.offset.reset": kafka.auto_offset_reset,
        **kafka.properties,
        "group.id": kafka.group_id,
        # Offsets are committed by hand, one message at a time, after its OB is stored.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


class GcnKafkaSource:
    """Polls notices from the subscribed topics; commits a message's offset only when told to."""

    def __init__(self, consumer: confluent_kafka.Consumer, topics: Sequence[str]) -> None:
        self._consumer = consumer
        self.topics = list(topics)
        consumer.subscribe(self.topics)

    @classmethod
    def connect(
        cls,
        kafka: KafkaConfig,
        topics: Sequence[str],
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> GcnKafkaSource:
        """A consumer on GCN Kafka (OIDC credentials), or on the broker named by `properties.bootstrap.servers`."""
        config: Mapping[str, Any] = consumer_config(kafka)
        consumer = gcn_kafka.Consumer(
            dict(config), client_id=client_id, client_secret=client_secret, domain=kafka.domain
        )
        return cls(consumer, topics)

    def poll(self, max_messages: int, timeout_s: float) -> list[GcnMessage]:
        """Up to `max_messages` messages, waiting at most `timeout_s` (blocking: run it in a thread)."""
        messages: list[GcnMessage] = []
        for raw in self._consumer.consume(num_messages=max_messages, timeout=timeout_s):
            error = raw.error()
            if error is not None:
                if error.fatal():
                    raise GcnKafkaError(f"Kafka consumer failed: {error.str()}")
                level = logging.DEBUG if error.code() in TRANSIENT_ERRORS else logging.WARNING
                log.log(level, "Kafka reports on %s: %s", raw.topic(), error.str())
                continue
            topic, partition, offset = raw.topic(), raw.partition(), raw.offset()
            if topic is None or partition is None or offset is None:
                continue
            value = raw.value()
            payload = value if isinstance(value, bytes) else None
            messages.append(GcnMessage(topic=topic, partition=partition, offset=offset, value=payload))
        return messages

    def commit(self, message: GcnMessage) -> bool:
        """Record that `message` is done (its offset + 1). False if the broker refused (e.g. during a rebalance):
        the message then comes again, and the service recognises it."""
        tp = confluent_kafka.TopicPartition(message.topic, message.partition, message.offset + 1)
        try:
            self._consumer.commit(offsets=[tp], asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            log.warning("commit of %s failed (it will be delivered again): %s", message.ref, exc)
            return False
        return True

    def rewind(self, messages: Sequence[GcnMessage]) -> None:
        """Deliver these messages again: each partition goes back to the first of them."""
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic, m.partition)
            first[key] = min(first.get(key, m.offset), m.offset)
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(confluent_kafka.TopicPartition(topic, partition, offset))
            except confluent_kafka.KafkaException as exc:
                # The partition went to another consumer in a rebalance: it resumes from the committed offset.
                log.warning("cannot rewind %s/%d to %d: %s", topic, partition, offset, exc)

    def lag(self, timeout_s: float = 5.0) -> int:
        """Messages on this consumer's partitions not yet committed (blocking: asks the broker)."""
        assignment = self._consumer.assignment()
        if not assignment:
            return 0
        total = 0
        for tp in self._consumer.committed(assignment, timeout=timeout_s):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            # No commit yet (a negative offset): the group starts from the oldest message the broker holds.
            total += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return total

    def close(self) -> None:
        self._consumer.close()
