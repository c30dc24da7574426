"""Log batches as columns and their bus encoding: round trips, the earlier layout, corrupt payloads refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import msgspec
import numpy as np
import pytest

from skyops import codec
from skyops.errors import CodecError, InvalidRecordError
from skyops.records import LogBatch, LogRecord
from tests.unit.logging_svc.conftest import T0


def records() -> list[LogRecord]:
    return [
        LogRecord(ts=T0, level=30, source="planner", message="re-plan ✓", component="scheduler", host="wt1",
                  attributes={"ob": "17", "why": "wind"}, trace_id="t-1", ob_id="OB-17"),
        LogRecord(ts=T0 + timedelta(microseconds=1), level=10, source="ves_sync", message=""),
        LogRecord(ts=T0 - timedelta(days=400), level=55, source="planner", message="x" * 1000, host="wt1"),
    ]


def test_columns_round_trip_through_the_bus_encoding() -> None:
    batch = LogBatch.from_records(records())
    back = codec.decode_log_batch(codec.encode_log_batch(batch))
    assert back.records() == records()
    assert codec.decode_logs(codec.encode_logs(records())) == records()


def test_absent_trace_ids_and_attributes_round_trip_as_absent() -> None:
    plain = [LogRecord(ts=T0, level=20, source="hmi", message=f"m{i}") for i in range(3)]
    back = codec.decode_log_batch(codec.encode_logs(plain))
    assert back.trace_id == [None] * 3 and back.ob_id == [None] * 3 and back.attributes == [{}, {}, {}]
    back.attributes[0]["k"] = "v"  # each record has its own dict
    assert back.attributes[1] == {}


def test_entries_of_the_earlier_per_record_layout_still_decode() -> None:
    assert codec.decode_logs(codec.encode_logs_v1(records())) == records()
    assert codec.decode_log_batch(codec.encode_logs_v1(records())).records() == records()


@pytest.mark.parametrize("cut", [1, 5, 30, -3])
def test_truncated_payloads_are_refused(cut: int) -> None:
    payload = codec.encode_logs(records())
    with pytest.raises(CodecError):
        codec.decode_log_batch(payload[:cut])


def v2_payload(**override: object) -> bytes:
    """A hand-made V2 payload of two records (what a buggy or hostile producer could send)."""
    columns: dict[str, object] = {
        "ts_us": np.array([1, 2], "<i8").tobytes(), "level": bytes([20, 30]), "names": ["planner", ""],
        "source": np.array([0, 0], "<u4").tobytes(), "component": np.array([1, 1], "<u4").tobytes(),
        "host": np.array([1, 1], "<u4").tobytes(), "message": msgspec.msgpack.encode(["a", "b"]),
        "attributes": b"", "trace_id": [], "ob_id": [],
    }
    columns.update(override)
    return codec._write(codec.LOGS_V2, codec._LOGS_V2_SCHEMA, columns)


def test_payloads_that_do_not_line_up_are_refused() -> None:
    assert [r.message for r in codec.decode_logs(v2_payload())] == ["a", "b"]
    with pytest.raises(CodecError, match="not a log batch"):
        codec.decode_log_batch(b"\x51rest")
    with pytest.raises(CodecError, match="does not index the names"):
        codec.decode_log_batch(v2_payload(source=np.array([0, 7], "<u4").tobytes()))
    with pytest.raises(CodecError, match="differ in length"):
        codec.decode_log_batch(v2_payload(message=msgspec.msgpack.encode(["only one"])))
    with pytest.raises(CodecError, match="whole number"):
        codec.decode_log_batch(v2_payload(ts_us=b"\x00" * 12))
    with pytest.raises(CodecError, match="corrupt log batch"):
        codec.decode_log_batch(v2_payload(attributes=msgspec.msgpack.encode([{"k": 1}, {}])))
    with pytest.raises(CodecError, match=r"outside 0\.\.100"):
        codec.decode_log_batch(v2_payload(level=bytes([20, 250])))


def test_batch_checks_whole_columns() -> None:
    batch = LogBatch.from_records(records())
    with pytest.raises(InvalidRecordError, match=r"outside 0\.\.100"):
        replace(batch, level=np.array([10, 200, 20], np.uint8))
    with pytest.raises(InvalidRecordError, match="log source is empty"):
        replace(batch, source=["planner", "", "hmi"])
    with pytest.raises(InvalidRecordError, match="log host is 300 characters"):
        replace(batch, host=["a", "h" * 300, "b"])
    with pytest.raises(InvalidRecordError, match="differ in length"):
        replace(batch, message=["a"])
    with pytest.raises(InvalidRecordError, match=r"years 1\.\.9999"):
        replace(batch, ts_us=np.array([0, 2**62, 0], np.int64))


def test_take_part_and_concat_keep_records_in_order() -> None:
    batch = LogBatch.from_records(records())
    assert batch.take(batch.level >= 30).records() == [records()[0], records()[2]]
    assert batch.take(np.array([2, 0])).records() == [records()[2], records()[0]]
    assert [len(p) for p in batch.parts(2)] == [2, 1]
    assert LogBatch.concat(batch.parts(2)).records() == records()
    assert len(LogBatch.concat([])) == 0
