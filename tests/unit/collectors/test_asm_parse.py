"""Validating ASM answers: every configured field gives a sample; a bad one is BAD with a stated reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from collectors.domain.asm import parse_reading
from config_db.monitoring import AsmSource
from skyops.records import Quality

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
SOURCE = AsmSource(
    url="http://127.0.0.1:1/asm/current",
    fields={"seeing": "lasilla.asm.seeing", "wind_speed": "lasilla.asm.wind_speed"},
    age_point="lasilla.asm.data_age_s",
    max_data_age_s=120,
)


def body(**kw: object) -> bytes:
    return json.dumps({"timestamp": (T0 - timedelta(seconds=5)).isoformat(), "seeing": 0.8, "wind_speed": 4.0,
                       **kw}).encode()


def by_point(reading: object) -> dict[str, tuple[object, Quality]]:
    return {s.point: (s.value, s.quality) for s in reading.samples}  # type: ignore[attr-defined]


def test_good_answer() -> None:
    r = parse_reading(SOURCE, body(), T0)
    assert r.problems == []
    assert by_point(r) == {"lasilla.asm.seeing": (0.8, Quality.GOOD), "lasilla.asm.wind_speed": (4.0, Quality.GOOD),
                           "lasilla.asm.data_age_s": (5.0, Quality.GOOD)}
    assert all(s.ts == T0 - timedelta(seconds=5) for s in r.samples if s.point != "lasilla.asm.data_age_s")


def test_missing_string_nan_null_and_bool_fields_become_bad_with_a_reason() -> None:
    cases = {
        b'{"timestamp": "2026-11-22T02:59:55+00:00", "wind_speed": 4.0}': "field 'seeing' missing",
        body(seeing="n/a"): "field 'seeing' is not a finite number: 'n/a'",
        body(seeing=None): "field 'seeing' is not a finite number: None",
        body(seeing=True): "field 'seeing' is not a finite number: True",
        body().replace(b"0.8", b"NaN"): "field 'seeing' is not a finite number: nan",
        body().replace(b"0.8", b"Infinity"): "field 'seeing' is not a finite number: inf",
    }
    for payload, reason in cases.items():
        r = parse_reading(SOURCE, payload, T0)
        assert r.problems == [reason]
        got = by_point(r)
        assert got["lasilla.asm.seeing"] == (None, Quality.BAD)
        assert got["lasilla.asm.wind_speed"] == (4.0, Quality.GOOD)  # the good field is not lost


def test_not_json_or_not_an_object_makes_every_field_bad() -> None:
    for payload, reason in ((b"<html>", "not JSON"), (b"[1, 2]", "JSON list")):
        r = parse_reading(SOURCE, payload, T0)
        assert reason in r.problems[0]
        assert {q for _, q in by_point(r).values()} == {Quality.BAD}
        assert all(s.ts == T0 for s in r.samples)


def test_stale_naive_or_missing_timestamps_make_values_uncertain() -> None:
    old = parse_reading(SOURCE, body(timestamp=(T0 - timedelta(minutes=10)).isoformat()), T0)
    assert "600 s old" in old.problems[0]
    assert by_point(old)["lasilla.asm.seeing"] == (0.8, Quality.UNCERTAIN)
    assert by_point(old)["lasilla.asm.data_age_s"] == (600.0, Quality.GOOD)
    naive = parse_reading(SOURCE, body(timestamp="2026-11-22T02:59:55"), T0)
    assert "no timezone" in naive.problems[0]
    assert by_point(naive)["lasilla.asm.seeing"] == (0.8, Quality.UNCERTAIN)
    assert "lasilla.asm.data_age_s" not in by_point(naive)
    missing = parse_reading(SOURCE, body(timestamp=17), T0)
    assert "timestamp missing or not text" in missing.problems[0]
