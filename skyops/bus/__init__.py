"""The bus: Redis Streams of opaque batches (real Redis or in-process fakeredis) and live pub/sub fan-out."""

from skyops.bus.consumer import Handler, Sleep, StreamConsumer
from skyops.bus.streams import (
    PAYLOAD_FIELD,
    PRODUCED_FIELD,
    Bus,
    Entry,
    NoSuchGroupError,
    Recovered,
    StreamRetention,
    entry_id_ms,
    open_redis,
)

__all__ = [
    "PAYLOAD_FIELD",
    "PRODUCED_FIELD",
    "Bus",
    "Entry",
    "Handler",
    "NoSuchGroupError",
    "Recovered",
    "Sleep",
    "StreamConsumer",
    "StreamRetention",
    "entry_id_ms",
    "open_redis",
]
