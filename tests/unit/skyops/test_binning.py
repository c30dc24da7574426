"""Aggregation and binning: numpy results checked against a plain Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyops.archive.binning import Resolution, aggregate, plan_bins, reaggregate, to_bins
from skyops.archive.blocks import chunk_batch, unpack
from skyops.records import SampleBatch
from skyops.timeutil import US_PER_DAY

MIN = 60_000_000
HOUR = 60 * MIN


def series(ts: list[int], vals: list[float]) -> SampleBatch:
    order = np.argsort(ts, kind="stable")
    return SampleBatch.from_floats(["a.b"], np.zeros(len(ts)), np.asarray(ts)[order], np.asarray(vals)[order])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * HOUR), st.one_of(st.floats(-1e6, 1e6), st.just(math.nan))),
                min_size=1, max_size=300, unique_by=lambda x: x[0]))
def test_aggregate_matches_a_python_reference(rows: list[tuple[int, float]]) -> None:
    s = series([t for t, _ in rows], [v for _, v in rows])
    agg = aggregate(s, 0, MIN)
    ref: dict[int, list[tuple[int, float]]] = {}
    for t, v in sorted(rows):
        ref.setdefault(t // MIN, []).append((t, v))
    assert agg.bucket_us.tolist() == [k * MIN for k in sorted(ref)]
    for i, k in enumerate(sorted(ref)):
        good = [v for _, v in ref[k] if not math.isnan(v)]
        assert agg.count[i] == len(good)
        assert agg.bad_count[i] == len(ref[k]) - len(good)
        if good:
            assert agg.vmin[i] == min(good)
            assert agg.vmax[i] == max(good)
            assert agg.first[i] == good[0]
            assert agg.last[i] == good[-1]
            assert math.isclose(agg.vsum[i], sum(good), rel_tol=1e-9, abs_tol=1e-6)
        else:
            assert math.isnan(agg.vmin[i])
            assert math.isnan(agg.first[i])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5 * HOUR), st.floats(-1e3, 1e3)), min_size=1, max_size=300,
                unique_by=lambda x: x[0]))
def test_minutes_merged_into_hours_equal_hours_computed_directly(rows: list[tuple[int, float]]) -> None:
    s = series([t for t, _ in rows], [v for _, v in rows])
    direct = aggregate(s, 0, HOUR)
    merged = reaggregate(aggregate(s, 0, MIN), 0, HOUR)
    for name in ("bucket_us", "count", "bad_count", "vmin", "vmax", "first", "last", "first_us", "last_us"):
        assert np.array_equal(getattr(direct, name), getattr(merged, name), equal_nan=True), name
    assert np.allclose(direct.vsum, merged.vsum)


@pytest.mark.parametrize(("span", "bins", "res"), [
    (HOUR, 1000, Resolution.RAW),
    (HOUR, 30, Resolution.MINUTE),
    (US_PER_DAY, 100, Resolution.MINUTE),
    (30 * US_PER_DAY, 1000, Resolution.HOUR),
    (365 * US_PER_DAY, 1000, Resolution.HOUR),
])
def test_plan_picks_the_source_and_never_exceeds_the_bins(span: int, bins: int, res: Resolution) -> None:
    start = 1_795_000_123_456_789
    plan = plan_bins(start, start + span, bins)
    assert plan.resolution is res
    assert 1 <= plan.bins <= bins
    assert plan.origin_us <= start
    assert plan.end_us >= start + span
    assert plan.width_us % res.us == 0


def test_plan_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bins"):
        plan_bins(0, 10, 0)
    with pytest.raises(ValueError, match="after"):
        plan_bins(10, 10, 5)


def test_bins_fill_gaps_with_nan() -> None:
    s = series([0, MIN * 5], [1.0, 2.0])
    plan = plan_bins(0, 10 * MIN, 10)
    b = to_bins("a.b", plan, aggregate(s, plan.origin_us, plan.width_us))
    assert b.count.tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert b.gap.tolist() == [False, True, True, True, True, False, True, True, True, True]
    assert np.isnan(b.mean[1])
    assert b.mean[5] == 2.0


def test_chunks_split_on_block_and_day_boundaries_and_unpack_exactly() -> None:
    ts = list(range(US_PER_DAY - 120_000_000, US_PER_DAY + 120_000_000, 7_000_000))
    s = series(ts, [float(i) for i in range(len(ts))])
    chunks = list(chunk_batch("a.b", s, 60))
    assert {c.day for c in chunks} == {0, 1}
    assert all(c.end_us - c.start_us < 60_000_000 for c in chunks)
    assert unpack(chunks).ts_us.tolist() == ts
    # The same content gives the same chunk key: re-writes overwrite instead of adding.
    assert [c.chunk_id for c in chunks] == [c.chunk_id for c in chunk_batch("a.b", s, 60)]


def test_block_length_must_divide_a_day() -> None:
    with pytest.raises(ValueError, match="divide a day"):
        list(chunk_batch("a.b", series([0], [1.0]), 7))
