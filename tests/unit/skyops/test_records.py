"""Record validation: bad input gets a clear error; good input round-trips through columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyops.errors import InvalidRecordError, NaiveDatetimeError
from skyops.records import (
    AlarmEvent,
    LogRecord,
    Quality,
    Sample,
    SampleBatch,
    ValueKind,
    parse_level,
)

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point": "Wind Speed", "ts": T0, "value": 1.0}, "bad point name"),
        ({"point": "windspeed", "ts": T0, "value": 1.0}, "bad point name"),
        ({"point": "lasilla.asm.wind", "ts": datetime(2026, 1, 1), "value": 1.0}, "no timezone"),
        ({"point": "lasilla.asm.wind", "ts": T0, "value": math.nan}, "not finite"),
        ({"point": "lasilla.asm.wind", "ts": T0, "value": math.inf}, "not finite"),
        ({"point": "lasilla.asm.wind", "ts": T0, "value": [1, 2]}, "of type list"),
        ({"point": "lasilla.asm.wind", "ts": T0, "value": 2**64}, "64 bits"),
        ({"point": "lasilla.asm.wind", "ts": T0, "value": 1.0, "quality": 7}, "unknown quality"),
        ({"point": "lasilla.asm.wind", "ts": "2026-01-01", "value": 1.0}, "must be a datetime"),
    ],
)
def test_bad_samples_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((InvalidRecordError, TypeError), match=message):
        Sample(**kwargs)  # type: ignore[arg-type]


def test_naive_datetime_has_its_own_error() -> None:
    with pytest.raises(NaiveDatetimeError):
        Sample("lasilla.asm.wind", datetime(2026, 1, 1), 1.0)


def test_sample_time_is_converted_to_utc() -> None:
    s = Sample("lasilla.asm.wind", T0.astimezone(timezone(timedelta(hours=-3))), 3)
    assert s.ts.tzinfo is UTC
    assert s.ts == T0


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@given(st.lists(st.tuples(st.sampled_from(["a.b", "a.c", "x.y.z"]), st.integers(0, 10**12), values,
                          st.sampled_from(list(Quality))), max_size=40))
def test_batch_columns_round_trip_every_value_exactly(rows: list[tuple[str, int, object, Quality]]) -> None:
    samples = [Sample(p, T0 + timedelta(microseconds=us), v, q) for p, us, v, q in rows]  # type: ignore[arg-type]
    back = list(SampleBatch.from_samples(samples).samples())
    assert back == samples
    assert [type(b.value) for b in back] == [type(s.value) for s in samples]


def test_from_floats_turns_nan_into_bad_none() -> None:
    b = SampleBatch.from_floats(["a.b"], [0, 0], [1, 2], [1.5, math.nan])
    assert b.values() == [1.5, None]
    assert b.quality.tolist() == [Quality.GOOD, Quality.BAD]
    assert b.kind.tolist() == [ValueKind.FLOAT, ValueKind.NULL]


def test_numeric_view_and_usable_mask() -> None:
    b = SampleBatch.from_samples([
        Sample("a.b", T0, 2), Sample("a.b", T0, True), Sample("a.b", T0, "x"), Sample("a.b", T0, 1.5, Quality.BAD),
        Sample("a.b", T0, None),
    ])
    assert np.allclose(b.numeric(), [2.0, 1.0, np.nan, 1.5, np.nan], equal_nan=True)
    assert b.usable().tolist() == [True, True, False, False, False]


def test_concat_remaps_points_and_strings() -> None:
    a = SampleBatch.from_samples([Sample("a.b", T0, "one"), Sample("a.c", T0, "two")])
    b = SampleBatch.from_samples([Sample("a.c", T0, "three"), Sample("a.b", T0, "one")])
    joined = SampleBatch.concat([a, b])
    assert list(joined.samples()) == list(a.samples()) + list(b.samples())
    assert joined.points == ("a.b", "a.c")


def test_dedupe_keeps_the_last_of_equal_timestamps() -> None:
    b = SampleBatch.from_samples([Sample("a.b", T0, 1), Sample("a.b", T0, 2), Sample("a.c", T0, 3)])
    assert [s.value for s in b.dedupe_sorted().samples()] == [2, 3]


def test_inconsistent_columns_are_refused() -> None:
    with pytest.raises(InvalidRecordError, match="rows"):
        SampleBatch(("a.b",), np.zeros(2, np.uint32), np.zeros(1, np.int64), np.zeros(1, np.uint8),
                    np.zeros(1, np.int64), np.zeros(1, np.uint8))
    with pytest.raises(InvalidRecordError, match="point index"):
        SampleBatch(("a.b",), np.ones(1, np.uint32), np.zeros(1, np.int64), np.zeros(1, np.uint8),
                    np.zeros(1, np.int64), np.zeros(1, np.uint8))


@pytest.mark.parametrize(("level", "want"), [("warn", 30), ("INFO", 20), (" error ", 40), (10, 10), ("fatal", 50)])
def test_log_levels_by_name_or_number(level: str | int, want: int) -> None:
    assert parse_level(level) == want


@pytest.mark.parametrize("level", ["LOUD", 500, -1, True, None])
def test_unknown_log_levels_are_refused(level: object) -> None:
    with pytest.raises(InvalidRecordError, match="level"):
        parse_level(level)  # type: ignore[arg-type]


def test_log_record_validation() -> None:
    with pytest.raises(InvalidRecordError, match="source is empty"):
        LogRecord(ts=T0, level=20, source="", message="x")
    with pytest.raises(InvalidRecordError, match="limit"):
        LogRecord(ts=T0, level=20, source="p", message="x" * (LogRecord.MAX_MESSAGE + 1))
    with pytest.raises(InvalidRecordError, match="attributes"):
        LogRecord(ts=T0, level=20, source="p", message="x", attributes={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(NaiveDatetimeError):
        LogRecord(ts=datetime(2026, 1, 1), level=20, source="p", message="x")


def test_alarm_event_validation() -> None:
    with pytest.raises(InvalidRecordError, match="sequence"):
        AlarmEvent(alarm_id="Wind.ASM:1", ts=T0, seq=-1, action="ack", severity=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError, match="severity"):
        AlarmEvent(alarm_id="Wind.ASM:1", ts=T0, seq=0, action="ack", severity=9)  # type: ignore[arg-type]
