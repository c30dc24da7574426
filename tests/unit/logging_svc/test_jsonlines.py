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
    with pytest.raises(InvalidRecordError, match="message is missing"):
        record_from_json({"level": "INFO"}, source="hmi", now=NOW)


def test_export_form_reads_back_to_the_same_record() -> None:
    r = LogRecord(ts=NOW, level=30, source="hmi", message="ack ✓", component="hmi.alarms", host="ops1",
                  attributes={"user": "anna"}, trace_id="t1", ob_id="OB-1")
    obj = json.loads(json.dumps(record_to_json(r)))
    assert obj["level"] == "WARNING" and obj["ts"] == "2026-11-22T03:30:00Z"
    assert record_from_json(obj, source="hmi", now=NOW) == r
