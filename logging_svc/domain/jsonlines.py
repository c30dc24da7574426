"""JSON-lines log batches: one JSON object per line in, LogRecords and per-line reasons out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from logging_svc.domain.levels import level_name
from logging_svc.domain.rejects import Rejected, RejectReason
from skyops.errors import InvalidRecordError
from skyops.records import LogRecord, parse_level
from skyops.timeutil import from_us, require_utc

FIELDS = frozenset(
    {"ts", "level", "source", "component", "host", "message", "attributes", "trace_id", "ob_id"}
)


@dataclass
class ParsedBatch:
    """What a batch yielded: the records kept, the lines refused (with reasons), and the bytes kept."""

    records: list[LogRecord] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    accepted_bytes: int = 0


def parse_timestamp(value: object, now: datetime) -> datetime:
    """ISO 8601 with a zone (`Z` or an offset), or seconds since the epoch; absent means `now`."""
    if value is None:
        return now
    if isinstance(value, bool):
        raise InvalidRecordError("ts must be an ISO 8601 time with a zone or seconds since the epoch")
    if isinstance(value, int | float):
        try:
            return from_us(round(value * 1_000_000))
        except (OverflowError, ValueError):
            raise InvalidRecordError(f"ts {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRecordError(f"ts {value!r} is not an ISO 8601 time") from None
        if ts.tzinfo is None:
            raise InvalidRecordError(f"ts {value!r} has no zone; add 'Z' or an offset such as +00:00")
        return require_utc(ts)
    raise InvalidRecordError(f"ts must be text or a number, got {type(value).__name__}")


def _attributes(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRecordError("attributes must be an object")
    # Numbers and flags are kept as their JSON text, so structured context survives the archive.
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in value.items()}


def record_from_json(obj: object, *, source: str, now: datetime) -> LogRecord:
    """A LogRecord from one decoded JSON object sent by `source`; refused fields raise InvalidRecordError."""
    if not isinstance(obj, dict):
        raise InvalidRecordError(f"a line must be a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - FIELDS
    if unknown:
        raise InvalidRecordError(f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(FIELDS))}")
    claimed = obj.get("source", source)
    if claimed != source:
        raise SourceMismatchError(f"source {claimed!r} does not match the key's source {source!r}")
    if "message" not in obj:
        raise InvalidRecordError("message is missing")
    return LogRecord(
        ts=parse_timestamp(obj.get("ts"), now),
        level=obj.get("level", "INFO"),
        source=source,
        message=obj["message"],
        component=obj.get("component", ""),
        host=obj.get("host", ""),
        attributes=_attributes(obj.get("attributes")),
        trace_id=obj.get("trace_id"),
        ob_id=obj.get("ob_id"),
    )


class SourceMismatchError(InvalidRecordError):
    """A line claims another source than the one its key belongs to."""


def _kind_of(exc: InvalidRecordError, obj: Mapping[str, Any]) -> RejectReason:
    if isinstance(exc, SourceMismatchError):
        return RejectReason.SOURCE_MISMATCH
    if "level" in obj:
        try:
            parse_level(obj["level"])
        except InvalidRecordError:
            return RejectReason.UNKNOWN_LEVEL
    return RejectReason.INVALID_FIELD


def parse_batch(body: bytes, *, source: str, now: datetime, max_line_bytes: int) -> ParsedBatch:
    """Every line of `body` parsed on its own: a bad line is refused with its reason, the rest are kept.

    Blank lines are skipped; line numbers are 1-based and count blank lines too, so a sender can
    find the line it sent.
    """
    out = ParsedBatch()
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line.strip():
            continue
        if len(line) > max_line_bytes:
            out.rejected.append(Rejected(number, RejectReason.OVERSIZE,
                                         f"line is {len(line)} bytes long; the limit is {max_line_bytes}"))
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.rejected.append(Rejected(number, RejectReason.INVALID_UTF8,
                                         f"invalid UTF-8 at byte {exc.start}: {exc.reason}"))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            out.rejected.append(Rejected(number, RejectReason.MALFORMED_JSON,
                                         f"malformed JSON at column {exc.colno}: {exc.msg}"))
            continue
        try:
            record = record_from_json(obj, source=source, now=now)
        except InvalidRecordError as exc:
            kind = _kind_of(exc, obj) if isinstance(obj, dict) else RejectReason.INVALID_FIELD
            out.rejected.append(Rejected(number, kind, str(exc)))
            continue
        out.records.append(record)
        out.accepted_bytes += len(line)
    return out


def record_to_json(r: LogRecord) -> dict[str, Any]:
    """A LogRecord as a JSON object (what export writes and `record_from_json` reads back)."""
    out: dict[str, Any] = {
        "ts": r.ts.isoformat().replace("+00:00", "Z"),
        "level": level_name(r.level),
        "source": r.source,
        "component": r.component,
        "host": r.host,
        "message": r.message,
        "attributes": dict(r.attributes),
    }
    if r.trace_id is not None:
        out["trace_id"] = r.trace_id
    if r.ob_id is not None:
        out["ob_id"] = r.ob_id
    return out


def record_to_line(r: LogRecord) -> str:
    return json.dumps(record_to_json(r), ensure_ascii=False, separators=(",", ":"))


