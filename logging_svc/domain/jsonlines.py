"""JSON-lines log batches: one JSON object per line in, a LogBatch and per-line reasons out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import msgspec
import numpy as np

from logging_svc.domain.levels import level_name
from logging_svc.domain.rejects import Rejected, RejectReason
from skyops.errors import InvalidRecordError
from skyops.records import LOG_LEVELS, LogBatch, LogRecord, parse_level
from skyops.timeutil import from_us, require_utc, to_us


class WireRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One JSON line as sent: types and lengths are checked by the decoder itself, in C."""

    message: Annotated[str, msgspec.Meta(max_length=LogRecord.MAX_MESSAGE)]
    ts: str | int | float | None = None
    level: int | str = "INFO"
    source: str | None = None
    component: Annotated[str, msgspec.Meta(max_length=200)] = ""
    host: Annotated[str, msgspec.Meta(max_length=255)] = ""
    attributes: dict[str, Any] | None = None
    trace_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    ob_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


_DECODER = msgspec.json.Decoder(WireRecord)
_LEVELS = {**LOG_LEVELS, "WARN": LOG_LEVELS["WARNING"], "FATAL": LOG_LEVELS["CRITICAL"]}


@dataclass
class ParsedBatch:
    """What a batch yielded: the records kept (as columns), the lines refused (with reasons), the bytes kept."""

    batch: LogBatch = field(default_factory=LogBatch.empty)
    rejected: list[Rejected] = field(default_factory=list)
    accepted_bytes: int = 0

    @property
    def records(self) -> list[LogRecord]:
        return self.batch.records()


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


def _attributes(value: dict[str, Any] | None) -> dict[str, str]:
    if not value:
        return {}
    if all(v.__class__ is str for v in value.values()):
        return value  # msgspec made this dict for this line alone: nothing else holds it
    # Numbers and flags are kept as their JSON text, so structured context survives the archive.
    return {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in value.items()}


def _timestamps(values: list[str | int | float | None], now: datetime, bad: dict[int, str]) -> list[int]:
    """Microseconds for every `ts`; a refused one is noted in `bad` (index → reason) and given 0."""
    # Senders stamp with RFC 3339 UTC ('…Z'): numpy reads a column of those in one call. The length
    # floor keeps out numpy's words ('today', 'now', 'NaT'), which no log line means.
    if values and all(v.__class__ is str for v in values):
        texts: list[str] = values  # type: ignore[assignment]
        if all(t.endswith("Z") for t in texts) and min(map(len, texts)) >= 20:
            try:
                parsed = np.array([t[:-1] for t in texts], dtype="datetime64[us]").astype(np.int64)
            except ValueError:
                pass  # some line is not plain ISO 8601: each is read on its own below, with its reason
            else:
                return parsed.tolist()  # type: ignore[no-any-return]
    now_us = to_us(now)
    out = []
    for i, v in enumerate(values):
        if v is None:
            out.append(now_us)
            continue
        try:
            out.append(to_us(parse_timestamp(v, now)))
        except InvalidRecordError as exc:
            bad.setdefault(i, str(exc))
            out.append(0)
    return out


def _levels(values: list[int | str], bad: dict[int, str], unknown: set[int]) -> list[int]:
    out: list[int] = []
    for i, v in enumerate(values):
        level = _LEVELS.get(v) if isinstance(v, str) else v
        if level is None or not 0 <= level <= 100:
            try:
                level = parse_level(v)  # any case and surrounding blanks, or the reason it is refused
            except InvalidRecordError as exc:
                bad.setdefault(i, str(exc))
                unknown.add(i)
                level = 0
        out.append(level)
    return out


def _columns(wires: list[WireRecord], *, source: str, now: datetime) -> tuple[LogBatch, dict[int, Rejected]]:
    """The records of decoded lines as columns, column by column; refused ones by index, with reasons."""
    bad: dict[int, str] = {}
    mismatch = {i: w.source for i, w in enumerate(wires) if w.source is not None and w.source != source}
    ts_us = _timestamps([w.ts for w in wires], now, bad)
    unknown_level: set[int] = set()
    levels = _levels([w.level for w in wires], bad, unknown_level)
    attributes = [_attributes(w.attributes) for w in wires]
    refused: dict[int, Rejected] = {}
    for i, claimed in mismatch.items():
        refused[i] = Rejected(i, RejectReason.SOURCE_MISMATCH,
                              f"source {claimed!r} does not match the key's source {source!r}")
    for i, reason in bad.items():
        if i not in refused:
            kind = RejectReason.UNKNOWN_LEVEL if i in unknown_level else RejectReason.INVALID_FIELD
            refused[i] = Rejected(i, kind, reason)
    keep = [i for i in range(len(wires)) if i not in refused] if refused else range(len(wires))
    kept = [wires[i] for i in keep] if refused else wires
    batch = LogBatch(
        ts_us=np.array([ts_us[i] for i in keep] if refused else ts_us, np.int64),
        level=np.array([levels[i] for i in keep] if refused else levels, np.uint8),
        source=[source] * len(kept),
        component=[w.component for w in kept],
        host=[w.host for w in kept],
        message=[w.message for w in kept],
        attributes=[attributes[i] for i in keep] if refused else attributes,
        trace_id=[w.trace_id for w in kept],
        ob_id=[w.ob_id for w in kept],
    )
    return batch, refused


def record_from_json(obj: object, *, source: str, now: datetime) -> LogRecord:
    """A LogRecord from one decoded JSON object sent by `source`; refused fields raise InvalidRecordError."""
    try:
        wire = msgspec.convert(obj, WireRecord)
    except msgspec.ValidationError as exc:
        raise InvalidRecordError(str(exc)) from None
    batch, refused = _columns([wire], source=source, now=now)
    if refused:
        raise InvalidRecordError(refused[0].reason)
    return batch.records()[0]


def parse_batch(body: bytes, *, source: str, now: datetime, max_line_bytes: int) -> ParsedBatch:
    """Every line of `body` parsed on its own: a bad line is refused with its reason, the rest are kept.

    Blank lines are skipped; line numbers are 1-based and count blank lines too, so a sender can
    find the line it sent. Each line is decoded and type-checked by msgspec; what msgspec cannot
    check (times, level names, the source) is then checked column by column over the whole batch.
    UTF-8 is checked once for the body, line by line only when that fails.
    """
    out = ParsedBatch()
    try:
        body.decode("utf-8")
        utf8_checked = True
    except UnicodeDecodeError:
        utf8_checked = False
    decode = _DECODER.decode
    numbers: list[int] = []
    sizes: list[int] = []
    wires: list[WireRecord] = []
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    # The usual batch (valid UTF-8, no CR, no blank or oversize line, every line decodes) in three
    # C-level passes; anything else goes line by line below, where each refusal gets its reason.
    if utf8_checked and lines and b"\r" not in body and b"" not in lines and max(map(len, lines)) <= max_line_bytes:
        try:
            wires = list(map(decode, lines))
        except msgspec.DecodeError:
            wires = []
        else:
            numbers = list(range(1, len(lines) + 1))
            sizes = list(map(len, lines))
            lines = []
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line.strip():
            continue
        if len(line) > max_line_bytes:
            out.rejected.append(Rejected(number, RejectReason.OVERSIZE,
                                         f"line is {len(line)} bytes long; the limit is {max_line_bytes}"))
            continue
        if not utf8_checked:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                out.rejected.append(Rejected(number, RejectReason.INVALID_UTF8,
                                             f"invalid UTF-8 at byte {exc.start}: {exc.reason}"))
                continue
        try:
            wires.append(decode(line))
        except msgspec.ValidationError as exc:
            kind = RejectReason.UNKNOWN_LEVEL if str(exc).endswith("`$.level`") else RejectReason.INVALID_FIELD
            out.rejected.append(Rejected(number, kind, str(exc)))
            continue
        except msgspec.DecodeError as exc:
            out.rejected.append(Rejected(number, RejectReason.MALFORMED_JSON, f"malformed JSON: {exc}"))
            continue
        numbers.append(number)
        sizes.append(len(line))
    out.batch, refused = _columns(wires, source=source, now=now)
    if refused:
        out.rejected += [Rejected(numbers[i], r.kind, r.reason) for i, r in refused.items()]
        out.rejected.sort(key=lambda r: r.line)
        sizes = [n for i, n in enumerate(sizes) if i not in refused]
    out.accepted_bytes = sum(sizes)
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


