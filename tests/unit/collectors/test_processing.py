"""Processing per point: limits, window filter, deadband and duplicate suppression, heartbeats, statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from collectors.domain.processing import PointProcessor, statistics
from config_db.monitoring import PointConfig
from skyops.records import Quality, Sample, SampleBatch

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def cfg(name: str, **kw: object) -> PointConfig:
    return PointConfig.model_validate({"name": name, **kw})


def values(batch: SampleBatch) -> list[tuple[str, float, object, Quality]]:
    return [(s.point, (s.ts - T0).total_seconds(), s.value, s.quality) for s in batch.samples()]


def test_deadband_publishes_only_moves_beyond_it_measured_from_the_last_sent_value() -> None:
    p = PointProcessor([cfg("a.b.c", processing={"deadband": 0.5, "max_silence_s": 1000})])
    series = [10.0, 10.2, 10.4, 10.7, 10.4, 9.9]
    out = p.process(SampleBatch.from_samples(Sample("a.b.c", at(i), v) for i, v in enumerate(series)))
    # 10.4 is only 0.3 from 10.7 (sent), 9.9 is 0.8 from it.
    assert [v for _, _, v, _ in values(out)] == [10.0, 10.7, 9.9]


def test_state_carries_over_between_batches_and_heartbeat_republishes_a_silent_point() -> None:
    p = PointProcessor([cfg("a.b.c", processing={"max_silence_s": 10})])
    assert len(p.process(SampleBatch.from_samples([Sample("a.b.c", at(0), 1.0)]))) == 1
    assert len(p.process(SampleBatch.from_samples([Sample("a.b.c", at(5), 1.0)]))) == 0
    assert len(p.process(SampleBatch.from_samples([Sample("a.b.c", at(10), 1.0)]))) == 1
    assert p.counters.suppressed == 1


def test_quality_change_is_always_published_and_strings_compare_across_batches() -> None:
    p = PointProcessor([cfg("t.tcs.state", kind="str", processing={"max_silence_s": 1000})])
    b1 = SampleBatch.from_samples([Sample("t.tcs.state", at(0), "TRACKING"), Sample("t.tcs.state", at(1), "TRACKING")])
    b2 = SampleBatch.from_samples([Sample("t.tcs.state", at(2), "PARKED"), Sample("t.tcs.state", at(3), "TRACKING"),
                                   Sample("t.tcs.state", at(4), "TRACKING", Quality.UNCERTAIN)])
    got = values(p.process(b1)) + values(p.process(b2))
    assert [(t, v) for _, t, v, _ in got] == [(0, "TRACKING"), (2, "PARKED"), (3, "TRACKING"), (4, "TRACKING")]


def test_values_outside_limits_are_kept_but_bad() -> None:
    p = PointProcessor([cfg("a.hum", limits={"low": 0, "high": 100}, processing={"suppress_duplicates": False})])
    out = p.process(SampleBatch.from_samples([Sample("a.hum", at(0), 50.0), Sample("a.hum", at(1), 130.0)]))
    assert [(v, q) for _, _, v, q in values(out)] == [(50.0, Quality.GOOD), (130.0, Quality.BAD)]
    assert p.counters.out_of_limits == 1


@pytest.mark.parametrize(("kind", "expected"), [("mean", [1.0, 2.0, 4.0, 4.0]), ("median", [1.0, 2.0, 3.0, 3.0])])
def test_window_filter(kind: str, expected: list[float]) -> None:
    p = PointProcessor([cfg("a.m", processing={"suppress_duplicates": False, "window": {"kind": kind, "size": 3}})])
    out = p.process(SampleBatch.from_samples(Sample("a.m", at(i), v) for i, v in enumerate([1.0, 3.0, 5.0, 7.0])))
    assert [v for _, _, v, _ in values(out)] == pytest.approx([1.0, 2.0, 3.0, 5.0])
    p2 = PointProcessor([cfg("a.m", processing={"suppress_duplicates": False, "window": {"kind": kind, "size": 3}})])
    out2 = p2.process(SampleBatch.from_samples(Sample("a.m", at(i), v) for i, v in enumerate([1.0, 3.0, 8.0, 1.0])))
    assert [v for _, _, v, _ in values(out2)] == pytest.approx(expected)


def test_many_points_interleaved_and_unknown_points_dropped() -> None:
    names = [f"p.x{i}" for i in range(500)]
    p = PointProcessor([cfg(n, processing={"max_silence_s": 1000}) for n in names])
    rng = np.random.default_rng(1)
    idx = np.tile(np.arange(500), 4)
    ts = np.repeat(np.arange(4), 500) * 1_000_000 + 1_800_000_000_000_000
    vals = np.where(np.repeat(np.arange(4), 500) % 2 == 0, 1.0, rng.normal(size=2000))
    batch = SampleBatch.from_floats([*names], idx, ts, vals)
    out = p.process(SampleBatch.concat([batch, SampleBatch.from_samples([Sample("not.configured", at(0), 1.0)])]))
    assert p.counters.unknown_point == 1
    assert "not.configured" not in {out.points[i] for i in out.point_idx}
    # Rounds 0 and 2 repeat 1.0; rounds 1 and 3 are random: a point is sent 4 times (1, r1, 1, r3).
    assert len(out) == 2000


def test_nan_becomes_bad_none_and_is_published_once() -> None:
    p = PointProcessor([cfg("a.b.c")])
    out = p.process(SampleBatch.from_floats(["a.b.c"], [0, 0, 0], [1, 2, 3], [1.0, np.nan, np.nan]))
    assert [(v, q) for _, _, v, q in values(out)] == [(1.0, Quality.GOOD), (None, Quality.BAD)]


def test_statistics_per_point() -> None:
    batch = SampleBatch.from_samples([
        Sample("a.b", at(0), 1.0), Sample("a.b", at(1), 3.0), Sample("a.b", at(2), None, Quality.BAD),
        Sample("c.d", at(0), "x"),
    ])
    st = statistics(batch)
    assert (st["a.b"].count, st["a.b"].bad, st["a.b"].min, st["a.b"].max, st["a.b"].mean) == (3, 1, 1.0, 3.0, 2.0)
    assert st["a.b"].std == pytest.approx(1.0)
    assert st["c.d"].count == 1
    assert np.isnan(st["c.d"].mean)
