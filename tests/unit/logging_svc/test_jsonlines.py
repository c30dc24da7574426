"""JSON-lines parsing: every bad line refused with its reason, every good line of the same batch kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logging_svc.domain.jsonlines import parse_batch, parse_timestamp, record_from_json, record_to_json
from logging_svc.domain.rejects import RejectReason
from skyops.errors import InvalidRecordError
from skyops.records import LogRecord

NOW = datetime(2026, 11, 22, 3, 30, tzinfo=UTC)
MIXED = Path(__file__).parents[2] / "data" / "logging_svc" / "mixed_batch.jsonl"


def test_mixed_batch_keeps_the_good_lines_and_names_each_bad_one() -> None:
    parsed = parse_batch(MIXED.read_bytes(), source="hmi", now=NOW, max_line_bytes=66_560)
    assert [r.message for r in parsed.records] == [
        "user anna logged in", "slow page", "epoch seconds, numeric level", "offset converted to UTC",
    ]
    got = {(r.line, r.kind) for r in parsed.rejected}
    assert got == {
        (3, RejectReason.MALFORMED_JSON),
        (5, RejectReason.INVALID_UTF8),
        (6, RejectReason.UNKNOWN_LEVEL),
        (7, RejectReason.SOURCE_MISMATCH),
        (8, RejectReason.INVALID_FIELD),
        (9, RejectReason.INVALID_FIELD),
        (11, RejectReason.OVERSIZE),
        (13, RejectReason.INVALID_FIELD),
    }
    reasons = {r.line: r.reason for r in parsed.rejected}
    assert "byte 63" in reasons[5]
    assert "'LOUD'" in reasons[6]
    assert "'planner'" in reasons[7] and "'hmi'" in reasons[7]
    assert "no zone" in reasons[8]
    assert "colour" in reasons[13]
    first, slow, epoch, offset = parsed.records
    assert first.attributes == {"user": "anna", "role": "Operator"} and first.component == "hmi.auth"
    assert slow.level == 30 and slow.attributes == {"ms": "812"}
    assert epoch.ts == datetime(2026, 11, 22, 3, 0, 7, 500_000, tzinfo=UTC) and epoch.ob_id == "OB-9"
    assert offset.ts == datetime(2026, 11, 22, 2, 0, 8, tzinfo=UTC) and offset.level == 10
    assert all(r.source == "hmi" for r in parsed.records)


def test_crlf_line_ends_and_a_missing_final_newline_are_accepted() -> None:
    body = b'{"message": "a"}\r\n{"message": "b"}'
    parsed = parse_batch(body, source="deploy", now=NOW, max_line_bytes=1000)
    assert [r.message for r in parsed.records] == ["a", "b"]
    assert all(r.ts == NOW for r in parsed.records)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(True, "ISO 8601"), ("yesterday", "not an ISO 8601"), ([1], "text or a number"), (1e30, "out of range")],
)
def test_bad_timestamps_are_refused_by_name(value: object, problem: str) -> None:
    with pytest.raises(InvalidRecordError, match=problem):
        parse_timestamp(value, NOW)


def test_missing_message_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="missing required field `message`"):
        record_from_json({"level": "INFO"}, source="hmi", now=NOW)


def test_export_form_reads_back_to_the_same_record() -> None:
    r = LogRecord(ts=NOW, level=30, source="hmi", message="ack ✓", component="hmi.alarms", host="ops1",
                  attributes={"user": "anna"}, trace_id="t1", ob_id="OB-1")
    obj = json.loads(json.dumps(record_to_json(r)))
    assert obj["level"] == "WARNING" and obj["ts"] == "2026-11-22T03:30:00Z"
    assert record_from_json(obj, source="hmi", now=NOW) == r


def test_a_clean_batch_reads_exactly_as_line_by_line() -> None:
    objs = [{"ts": f"2026-11-22T03:00:{i % 60:02d}.{i:06d}Z", "level": ["DEBUG", "INFO", "warn", " Error "][i % 4],
             "message": f"m{i} ✓", "component": "c", "host": "h", "attributes": {"i": i, "s": "x"}}
            for i in range(200)]
    body = "\n".join(json.dumps(o, ensure_ascii=False) for o in objs).encode()
    parsed = parse_batch(body, source="hmi", now=NOW, max_line_bytes=1000)
    assert not parsed.rejected and parsed.accepted_bytes == len(body) - 199
    assert parsed.records == [record_from_json(o, source="hmi", now=NOW) for o in objs]
    assert parsed.records[7].ts == datetime(2026, 11, 22, 3, 0, 7, 7, tzinfo=UTC)
    assert [r.level for r in parsed.records[:4]] == [10, 20, 30, 40]


@pytest.mark.parametrize(
    ("ts", "problem"),
    [("todayZ", "not an ISO 8601"), ("nowZ", "not an ISO 8601"), ("NaTZ", "not an ISO 8601"),
     ("2026-13-22T03:00:00Z", "not an ISO 8601")],
)
def test_odd_timestamps_in_an_otherwise_clean_batch_are_refused_alone(ts: str, problem: str) -> None:
    lines = [json.dumps({"ts": "2026-11-22T03:00:00Z", "message": "a"}), json.dumps({"ts": ts, "message": "b"}),
             json.dumps({"ts": "2026-11-22T03:00:01.5Z", "message": "c"})]
    parsed = parse_batch("\n".join(lines).encode(), source="hmi", now=NOW, max_line_bytes=1000)
    assert [r.message for r in parsed.records] == ["a", "c"]
    ((rejected),) = parsed.rejected
    assert rejected.line == 2 and rejected.kind is RejectReason.INVALID_FIELD and problem in rejected.reason


def test_nanosecond_timestamps_and_mixed_forms_are_read_one_by_one() -> None:
    lines = [json.dumps({"ts": "2026-11-22T03:00:00.123456789Z", "message": "ns"}),
             json.dumps({"ts": 1795316407, "message": "epoch"}), json.dumps({"message": "now"})]
    parsed = parse_batch("\n".join(lines).encode(), source="hmi", now=NOW, max_line_bytes=1000)
    assert not parsed.rejected
    assert [r.ts for r in parsed.records] == [datetime(2026, 11, 22, 3, 0, 0, 123456, tzinfo=UTC),
                                              datetime(2026, 11, 22, 3, 0, 7, tzinfo=UTC), NOW]


def test_one_bad_line_in_a_clean_looking_batch_costs_only_itself() -> None:
    body = b'{"message": "a"}\n{"message": "b", "level": true}\n{"message": "c"\n{"message": "d"}'
    parsed = parse_batch(body, source="hmi", now=NOW, max_line_bytes=1000)
    assert [r.message for r in parsed.records] == ["a", "d"]
    assert [(r.line, r.kind) for r in parsed.rejected] == [
        (2, RejectReason.UNKNOWN_LEVEL), (3, RejectReason.MALFORMED_JSON)]
    assert parsed.accepted_bytes == len(b'{"message": "a"}') + len(b'{"message": "d"}')
