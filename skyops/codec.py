"""Schema'd binary encoding of record batches for the bus: Avro (fastavro) with numpy columns as bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Final

import fastavro
import numpy as np

from skyops.errors import CodecError, InvalidRecordError
from skyops.records import AlarmEvent, AlarmSeverity, LogRecord, SampleBatch
from skyops.timeutil import from_us

# One leading byte names the schema, so a consumer refuses a payload of another kind or version
# instead of decoding garbage.
SAMPLES_V1: Final = 0x51
LOGS_V1: Final = 0x4C
ALARMS_V1: Final = 0x41

_SAMPLES_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "SampleBatch",
        "namespace": "skyops.v1",
        "doc": "Columns are little-endian arrays: point_idx u32, ts_us i64, kind u8, bits i64, quality u8.",
        "fields": [
            {"name": "points", "type": {"type": "array", "items": "string"}},
            {"name": "point_idx", "type": "bytes"},
            {"name": "ts_us", "type": "bytes"},
            {"name": "kind", "type": "bytes"},
            {"name": "bits", "type": "bytes"},
            {"name": "quality", "type": "bytes"},
            {"name": "strings", "type": {"type": "array", "items": "string"}},
        ],
    }
)

_LOG_FIELDS: list[dict[str, Any]] = [
    {"name": "ts_us", "type": "long"},
    {"name": "level", "type": "int"},
    {"name": "source", "type": "string"},
    {"name": "component", "type": "string"},
    {"name": "host", "type": "string"},
    {"name": "message", "type": "string"},
    {"name": "attributes", "type": {"type": "map", "values": "string"}},
    {"name": "trace_id", "type": ["null", "string"]},
    {"name": "ob_id", "type": ["null", "string"]},
]
_LOGS_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "LogBatch",
        "namespace": "skyops.v1",
        "fields": [
            {"name": "records", "type": {"type": "array", "items": {
                "type": "record", "name": "LogRecord", "fields": _LOG_FIELDS}}},
        ],
    }
)

_ALARMS_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "AlarmEventBatch",
        "namespace": "skyops.v1",
        "fields": [
            {"name": "events", "type": {"type": "array", "items": {
                "type": "record", "name": "AlarmEvent", "fields": [
                    {"name": "alarm_id", "type": "string"},
                    {"name": "ts_us", "type": "long"},
                    {"name": "seq", "type": "long"},
                    {"name": "action", "type": "string"},
                    {"name": "severity", "type": "int"},
                    {"name": "latched", "type": "int"},
                    {"name": "state", "type": "string"},
                    {"name": "acked", "type": "boolean"},
                    {"name": "user", "type": ["null", "string"]},
                    {"name": "comment", "type": ["null", "string"]},
                    {"name": "reason", "type": "string"},
                    {"name": "attributes", "type": {"type": "map", "values": "string"}},
                ]}}},
        ],
    }
)


def _write(tag: int, schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(bytes((tag,)))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _read(tag: int, schema: Any, payload: bytes, what: str) -> dict[str, Any]:
    if not payload or payload[0] != tag:
        got = f"0x{payload[0]:02x}" if payload else "an empty payload"
        raise CodecError(f"not a {what} payload (expected tag 0x{tag:02x}, got {got})")
    buf = io.BytesIO(payload)
    buf.seek(1)
    try:
        record = fastavro.schemaless_reader(buf, schema, None)
    except Exception as exc:  # fastavro raises several kinds on truncated or corrupt input
        raise CodecError(f"corrupt {what} payload: {exc}") from exc
    if buf.tell() != len(payload):
        raise CodecError(f"corrupt {what} payload: {len(payload) - buf.tell()} trailing bytes")
    if not isinstance(record, dict):
        raise CodecError(f"corrupt {what} payload")
    return record


def encode_samples(batch: SampleBatch) -> bytes:
    return _write(
        SAMPLES_V1,
        _SAMPLES_SCHEMA,
        {
            "points": list(batch.points),
            "point_idx": batch.point_idx.astype("<u4", copy=False).tobytes(),
            "ts_us": batch.ts_us.astype("<i8", copy=False).tobytes(),
            "kind": batch.kind.tobytes(),
            "bits": batch.bits.astype("<i8", copy=False).tobytes(),
            "quality": batch.quality.tobytes(),
            "strings": list(batch.strings),
        },
    )


def _column(raw: bytes, dtype: str, what: str) -> Any:
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise CodecError(f"corrupt sample batch: column {what} is not a whole number of values")
    return np.frombuffer(raw, dtype=dtype).astype(dtype[1:], copy=False)


def decode_samples(payload: bytes) -> SampleBatch:
    r = _read(SAMPLES_V1, _SAMPLES_SCHEMA, payload, "sample batch")
    try:
        return SampleBatch(
            points=tuple(r["points"]),
            point_idx=_column(r["point_idx"], "<u4", "point_idx"),
            ts_us=_column(r["ts_us"], "<i8", "ts_us"),
            kind=_column(r["kind"], "|u1", "kind"),
            bits=_column(r["bits"], "<i8", "bits"),
            quality=_column(r["quality"], "|u1", "quality"),
            strings=tuple(r["strings"]),
        )
    except InvalidRecordError as exc:
        raise CodecError(f"corrupt sample batch: {exc}") from exc


def encode_logs(records: Sequence[LogRecord]) -> bytes:
    return _write(
        LOGS_V1,
        _LOGS_SCHEMA,
        {
            "records": [
                {
                    "ts_us": r.ts_us,
                    "level": r.level,
                    "source": r.source,
                    "component": r.component,
                    "host": r.host,
                    "message": r.message,
                    "attributes": r.attributes,
                    "trace_id": r.trace_id,
                    "ob_id": r.ob_id,
                }
                for r in records
            ]
        },
    )


def decode_logs(payload: bytes) -> list[LogRecord]:
    r = _read(LOGS_V1, _LOGS_SCHEMA, payload, "log batch")
    try:
        return [
            LogRecord(
                ts=from_us(x["ts_us"]),
                level=x["level"],
                source=x["source"],
                component=x["component"],
                host=x["host"],
                message=x["message"],
                attributes=x["attributes"],
                trace_id=x["trace_id"],
                ob_id=x["ob_id"],
            )
            for x in r["records"]
        ]
    except InvalidRecordError as exc:
        raise CodecError(f"corrupt log batch: {exc}") from exc


def encode_alarm_events(events: Sequence[AlarmEvent]) -> bytes:
    return _write(
        ALARMS_V1,
        _ALARMS_SCHEMA,
        {
            "events": [
                {
                    "alarm_id": e.alarm_id,
                    "ts_us": e.ts_us,
                    "seq": e.seq,
                    "action": e.action,
                    "severity": int(e.severity),
                    "latched": int(e.latched),
                    "state": e.state,
                    "acked": e.acked,
                    "user": e.user,
                    "comment": e.comment,
                    "reason": e.reason,
                    "attributes": e.attributes,
                }
                for e in events
            ]
        },
    )


def decode_alarm_events(payload: bytes) -> list[AlarmEvent]:
    r = _read(ALARMS_V1, _ALARMS_SCHEMA, payload, "alarm event batch")
    try:
        return [
            AlarmEvent(
                alarm_id=x["alarm_id"],
                ts=from_us(x["ts_us"]),
                seq=x["seq"],
                action=x["action"],
                severity=AlarmSeverity(x["severity"]),
                latched=AlarmSeverity(x["latched"]),
                state=x["state"],
                acked=x["acked"],
                user=x["user"],
                comment=x["comment"],
                reason=x["reason"],
                attributes=x["attributes"],
            )
            for x in r["events"]
        ]
    except (InvalidRecordError, ValueError) as exc:
        raise CodecError(f"corrupt alarm event batch: {exc}") from exc
