"""Schema'd binary encoding of record batches for the bus: Avro (fastavro) with numpy columns as bytes."""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

import fastavro
import msgspec
import numpy as np

from skyops.errors import CodecError, InvalidRecordError
from skyops.records import AlarmEvent, AlarmSeverity, LogBatch, LogRecord, SampleBatch
from skyops.timeutil import from_us

# One leading byte names the schema, so a consumer refuses a payload of another kind or version
# instead of decoding garbage.
SAMPLES_V1: Final = 0x51
SAMPLES_V2: Final = 0x53
LOGS_V1: Final = 0x4C
ALARMS_V1: Final = 0x41
LOGS_V2: Final = 0x6C

# From v3 on, every payload opens with a versioned header: this byte, the kind's letter and the version
# (u16, little-endian). 0xFF is no v1/v2 tag and never starts UTF-8 text (the JSON streams), so a
# reader can tell "written by a newer codec" (wait for a newer reader) from garbage (skip it).
VERSIONED: Final = 0xFF
_HEADER = struct.Struct("<BcH")
_VERSIONED_BYTE = bytes((VERSIONED,))


class PayloadKind(StrEnum):
    """What a bus payload holds; the value is the letter in a versioned header."""

    SAMPLES = "S"
    LOGS = "L"
    ALARM_EVENTS = "A"


# The newest version of each kind this process decodes.
READS_UP_TO: Final[dict[PayloadKind, int]] = {PayloadKind.SAMPLES: 2, PayloadKind.LOGS: 2, PayloadKind.ALARM_EVENTS: 1}
_WHAT = {PayloadKind.SAMPLES: "sample batch", PayloadKind.LOGS: "log batch",
         PayloadKind.ALARM_EVENTS: "alarm event batch"}


class NewerCodecVersionError(CodecError):
    """A payload written by a newer codec than this process knows: valid data, only not readable here.

    Stream consumers leave such entries pending for an upgraded consumer of their group instead of
    skipping them; code that is not in a group (live views) may treat it as any undecodable payload.
    """

    def __init__(self, kind: PayloadKind, version: int) -> None:
        self.kind = kind
        self.version = version
        self.reads_up_to = READS_UP_TO[kind]
        super().__init__(
            f"{_WHAT[kind]} written by codec v{version}, this process reads up to v{self.reads_up_to}: upgrade it"
        )


def versioned_header(kind: PayloadKind, version: int) -> bytes:
    """The opening bytes of a v3+ payload of `kind` (what a newer writer puts before its body)."""
    if not 3 <= version <= 0xFFFF:
        raise ValueError(f"version must be in 3..65535 (v1 and v2 have their own tags), got {version}")
    return _HEADER.pack(VERSIONED, kind.value.encode("ascii"), version)


def newer_version(payload: bytes) -> NewerCodecVersionError | None:
    """Why this process cannot read `payload` yet, when a newer codec wrote it; None for anything else."""
    if len(payload) < _HEADER.size or payload[0] != VERSIONED:
        return None
    _, letter, version = _HEADER.unpack_from(payload)
    try:
        kind = PayloadKind(letter.decode("latin-1"))
    except ValueError:
        return None
    return NewerCodecVersionError(kind, version) if version > READS_UP_TO[kind] else None


def _refuse_versioned(payload: bytes, kind: PayloadKind) -> None:
    """Raise for a v3+ header: NewerCodecVersionError when a newer codec wrote it, CodecError otherwise."""
    if payload[:1] != _VERSIONED_BYTE:
        return
    newer = newer_version(payload)
    if newer is not None and newer.kind is kind:
        raise newer
    if newer is not None:
        raise CodecError(f"not a {_WHAT[kind]} payload (a {_WHAT[newer.kind]} of codec v{newer.version})")
    raise CodecError(f"corrupt {_WHAT[kind]} payload: a versioned header this codec does not know")

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

# v2: the point names travel as one NUL-separated UTF-8 blob (names never hold NUL): decoding a batch
# of thousands of points is then one split instead of thousands of Avro string reads.
_NUL: Final = "\x00"
_SAMPLES_V2_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "SampleBatch",
        "namespace": "skyops.v2",
        "doc": "As v1, but points is the names joined by NUL, UTF-8 encoded.",
        "fields": [
            {"name": "points", "type": "bytes"},
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

# Columns instead of one Avro record per log line: encoding and decoding cost a few calls per column,
# not a dict per record. Source, component and host repeat within a batch, so they are dictionary
# coded; trace_id and ob_id are usually absent, so an empty array stands for "all null". Messages and
# attributes are each one MessagePack array (msgspec, type-checked on decode): fastavro spends ~1.5 µs
# reading a string and ~15 µs a map, msgspec a fifth and a tenth of that; empty attribute bytes stand
# for "no record has any".
_LOGS_V2_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "LogColumns",
        "namespace": "skyops.v2",
        "doc": "ts_us <i8 and level u1 arrays; source/component/host <u4 indices into names; "
               "message a MessagePack array of str, attributes one of str→str maps.",
        "fields": [
            {"name": "ts_us", "type": "bytes"},
            {"name": "level", "type": "bytes"},
            {"name": "names", "type": {"type": "array", "items": "string"}},
            {"name": "source", "type": "bytes"},
            {"name": "component", "type": "bytes"},
            {"name": "host", "type": "bytes"},
            {"name": "message", "type": "bytes"},
            {"name": "attributes", "type": "bytes"},
            {"name": "trace_id", "type": {"type": "array", "items": ["null", "string"]}},
            {"name": "ob_id", "type": {"type": "array", "items": ["null", "string"]}},
        ],
    }
)

_MESSAGES_ENCODER = _ATTRS_ENCODER = msgspec.msgpack.Encoder()
_MESSAGES_DECODER = msgspec.msgpack.Decoder(list[str])
_ATTRS_DECODER = msgspec.msgpack.Decoder(list[dict[str, str]])

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
        SAMPLES_V2,
        _SAMPLES_V2_SCHEMA,
        {
            "points": _NUL.join(batch.points).encode("utf-8"),
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
    """A sample batch from either version (v1 payloads may still sit in a stream after an upgrade).

    Raises NewerCodecVersionError for a batch of a later version, CodecError for anything undecodable.
    """
    _refuse_versioned(payload, PayloadKind.SAMPLES)
    if payload[:1] == bytes((SAMPLES_V1,)):
        r = _read(SAMPLES_V1, _SAMPLES_SCHEMA, payload, "sample batch")
        points = tuple(r["points"])
    else:
        r = _read(SAMPLES_V2, _SAMPLES_V2_SCHEMA, payload, "sample batch")
        try:
            names = r["points"].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"corrupt sample batch: point names are not UTF-8: {exc}") from exc
        points = tuple(names.split(_NUL)) if names else ()
    try:
        return SampleBatch(
            points=points,
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
    return encode_log_batch(LogBatch.from_records(records))


def encode_log_batch(batch: LogBatch) -> bytes:
    names: dict[str, int] = {}
    codes = [_name_codes(col, names) for col in (batch.source, batch.component, batch.host)]
    return _write(
        LOGS_V2,
        _LOGS_V2_SCHEMA,
        {
            "ts_us": batch.ts_us.astype("<i8", copy=False).tobytes(),
            "level": batch.level.astype("u1", copy=False).tobytes(),
            "names": list(names),
            "source": codes[0],
            "component": codes[1],
            "host": codes[2],
            "message": _MESSAGES_ENCODER.encode(batch.message),
            "attributes": _ATTRS_ENCODER.encode(batch.attributes) if any(batch.attributes) else b"",
            "trace_id": batch.trace_id if batch.trace_id.count(None) != len(batch) else [],
            "ob_id": batch.ob_id if batch.ob_id.count(None) != len(batch) else [],
        },
    )


def _name_codes(column: list[str], names: dict[str, int]) -> bytes:
    """Each value's index in `names` (added as first seen), as <u4 bytes."""
    n = len(column)
    if n and column.count(column[0]) == n:  # one source or host for the whole batch: the usual case
        return np.full(n, names.setdefault(column[0], len(names)), "<u4").tobytes()
    return np.fromiter((names.setdefault(v, len(names)) for v in column), "<u4", n).tobytes()


def decode_logs(payload: bytes) -> list[LogRecord]:
    return decode_log_batch(payload).records()


def decode_log_batch(payload: bytes) -> LogBatch:
    """A log batch in either layout (V1 per-record entries may still sit in a stream after an upgrade).

    Raises NewerCodecVersionError for a batch of a later version, CodecError for anything undecodable.
    """
    _refuse_versioned(payload, PayloadKind.LOGS)
    if payload[:1] == bytes((LOGS_V1,)):
        try:
            return LogBatch.from_records(_decode_logs_v1(payload))
        except InvalidRecordError as exc:
            raise CodecError(f"corrupt log batch: {exc}") from exc
    r = _read(LOGS_V2, _LOGS_V2_SCHEMA, payload, "log batch")
    try:
        ts_us = _log_column(r["ts_us"], "<i8", "ts_us")
        n = len(ts_us)
        names = np.array(r["names"] or [""], dtype=object)
        text = []
        for what in ("source", "component", "host"):
            idx = _log_column(r[what], "<u4", what)
            if len(idx) != n or (n and int(idx.max()) >= len(r["names"])):
                raise CodecError(f"corrupt log batch: column {what} does not index the names")
            text.append(names[idx].tolist())
        return LogBatch(
            ts_us=ts_us,
            level=_log_column(r["level"], "|u1", "level"),
            source=text[0],
            component=text[1],
            host=text[2],
            message=_MESSAGES_DECODER.decode(r["message"]),
            attributes=_ATTRS_DECODER.decode(r["attributes"]) if r["attributes"] else [{} for _ in range(n)],
            trace_id=r["trace_id"] or [None] * n,
            ob_id=r["ob_id"] or [None] * n,
        )
    except (InvalidRecordError, msgspec.DecodeError) as exc:
        raise CodecError(f"corrupt log batch: {exc}") from exc


def _log_column(raw: bytes, dtype: str, what: str) -> Any:
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise CodecError(f"corrupt log batch: column {what} is not a whole number of values")
    return np.frombuffer(raw, dtype=dtype).astype(dtype[1:], copy=False)


def _decode_logs_v1(payload: bytes) -> list[LogRecord]:
    r = _read(LOGS_V1, _LOGS_SCHEMA, payload, "log batch")
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


def encode_logs_v1(records: Sequence[LogRecord]) -> bytes:
    """The per-record layout of earlier releases (kept so decoding it stays tested)."""
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
    _refuse_versioned(payload, PayloadKind.ALARM_EVENTS)
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
