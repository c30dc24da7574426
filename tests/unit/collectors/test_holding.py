"""Holding samples until their block is complete: what is released when, and which entries a write completes."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.domain.holding import HoldPolicy, SampleHold
from skyops.archive.blocks import chunk_sorted
from skyops.records import K_STR, SampleBatch

S = 1_000_000
T0 = 1_795_000_020 * S  # a whole minute: blocks of 10 s and 60 s start here
BLOCK = {"a.fast.x": 10 * S, "a.slow.y": 60 * S}
POLICY = HoldPolicy.from_seconds(hold_s=30, grace_s=2, max_samples=10_000)


def sweep(t_s: int, points: tuple[str, ...] = ("a.fast.x", "a.slow.y"), value: float = 1.0) -> SampleBatch:
    """One sample of each point at T0 + t_s seconds."""
    n = len(points)
    return SampleBatch.from_floats(list(points), np.arange(n), np.full(n, T0 + t_s * S), np.full(n, value + t_s))


def hold(policy: HoldPolicy = POLICY) -> SampleHold:
    return SampleHold(BLOCK.__getitem__, policy)


def test_nothing_is_released_before_a_block_is_complete() -> None:
    h = hold()
    for t in range(9):
        assert h.add(f"e{t}", sweep(t), now_us=T0 + t * S)
    assert not h.due(T0 + 9 * S)
    assert h.release(T0 + 9 * S) is None
    assert (h.held_samples, h.held_entries) == (18, 9)


def test_a_complete_block_is_released_whole_and_its_entries_complete_only_when_all_their_samples_are_written() -> None:
    h = hold()
    for t in range(13):  # the data reaches 12 s: the 10-s block [0, 10) is complete (2 s grace)
        h.add(f"e{t}", sweep(t), now_us=T0 + t * S)
    assert h.due(T0 + 13 * S)
    r = h.release(T0 + 13 * S)
    assert r is not None
    # Only the fast point's first block: the slow point's minute is still open.
    assert r.batch.points[0] == "a.fast.x"
    assert len(r.batch) == 10 and set(r.batch.point_idx.tolist()) == {0}
    chunks = list(chunk_sorted(r.batch.dedupe_sorted(), np.asarray([10 * S, 60 * S])))
    assert len(chunks) == 1 and chunks[0].n == 10
    # Every entry also carries a slow sample still held: none is complete yet.
    assert h.commit(r) == []
    assert h.held_samples == 16
    assert not h.due(T0 + 13 * S)


def test_entries_complete_in_the_write_that_covers_their_last_sample() -> None:
    h = hold()
    h.add("fast-only", sweep(1, ("a.fast.x",)), now_us=T0)
    h.add("both", sweep(2), now_us=T0)
    h.add("later", sweep(12, ("a.fast.x",)), now_us=T0)
    r = h.release(T0)
    assert r is not None
    done = h.commit(r)
    assert [d.entry_id for d in done] == ["fast-only"]
    assert h.holds("both") and h.holds("later") and not h.holds("fast-only")
    r = h.release(T0, everything=True)
    assert r is not None and r.everything
    assert [d.entry_id for d in h.commit(r)] == ["both", "later"]
    assert h.held_samples == 0 and h.entry_ids() == []


def test_a_quiet_stream_is_written_after_the_longest_hold() -> None:
    h = hold()
    h.add("e0", sweep(0), now_us=T0)
    h.add("e1", sweep(1), now_us=T0 + 20 * S)
    assert not h.due(T0 + 29 * S)
    assert h.due(T0 + 30 * S)
    r = h.release(T0 + 30 * S)
    assert r is not None and len(r.batch) == 2  # only the entry that waited 30 s
    assert [d.entry_id for d in h.commit(r)] == ["e0"]


def test_the_memory_bound_releases_everything() -> None:
    h = hold(HoldPolicy.from_seconds(hold_s=30, grace_s=2, max_samples=6))
    for t in range(2):
        h.add(f"e{t}", sweep(t), now_us=T0)
    assert not h.due(T0)
    h.add("e2", sweep(2), now_us=T0)
    h.add("e3", sweep(3), now_us=T0)  # 8 held > 6
    r = h.release(T0)
    assert r is not None and r.everything and len(r.batch) == 8


def test_zero_hold_writes_every_read() -> None:
    h = hold(HoldPolicy.from_seconds(hold_s=0, grace_s=2, max_samples=6))
    h.add("e0", sweep(0), now_us=T0)
    assert h.due(T0)
    r = h.release(T0)
    assert r is not None and len(r.batch) == 2


def test_an_entry_delivered_again_is_held_once_and_an_empty_one_is_not_held() -> None:
    h = hold()
    assert h.add("e0", sweep(0), now_us=T0)
    assert h.add("e0", sweep(0), now_us=T0)
    assert h.held_samples == 2
    assert not h.add("empty", SampleBatch.empty(), now_us=T0)
    assert not h.holds("empty")


def test_a_release_committed_twice_is_refused() -> None:
    h = hold()
    h.add("e0", sweep(0), now_us=T0)
    r = h.release(T0, everything=True)
    assert r is not None
    h.commit(r)
    with pytest.raises(ValueError, match="released twice"):
        h.commit(r)


def test_latest_values_are_the_newest_per_point_whatever_the_arrival_order_and_are_cleared_when_written() -> None:
    h = hold()
    h.add("e1", sweep(5, value=10.0), now_us=T0)
    h.add("e0", sweep(1, value=10.0), now_us=T0)  # late: older than what is known
    latest = h.latest()
    assert latest is not None
    assert {s.point: s.value for s in latest.samples()} == {"a.fast.x": 15.0, "a.slow.y": 15.0}
    h.latest_written(latest)
    assert h.latest() is None
    h.add("e2", sweep(6, ("a.slow.y",), value=0.0), now_us=T0)
    again = h.latest()
    assert again is not None and [s.point for s in again.samples()] == ["a.slow.y"]


def test_strings_survive_holding_and_the_string_table_is_compacted() -> None:
    h = hold(HoldPolicy.from_seconds(hold_s=30, grace_s=0, max_samples=100_000))
    for t in range(1500):  # more distinct strings than the table keeps before compacting
        b = SampleBatch(points=("a.fast.x",), point_idx=np.zeros(1, np.uint32), ts_us=np.full(1, T0 + t * S // 100),
                        kind=np.full(1, K_STR, np.uint8), bits=np.zeros(1, np.int64),
                        quality=np.zeros(1, np.uint8), strings=(f"OB-{t}",))
        h.add(f"e{t}", b, now_us=T0)
    h.add("slow", sweep(12, ("a.slow.y",)), now_us=T0)
    r = h.release(T0)  # the fast point's block [0, 10) is complete: its first 1,000 strings
    assert r is not None
    written = r.batch.select(np.argsort(r.batch.ts_us))
    assert len(written) == 1000 and written.values()[:3] == ["OB-0", "OB-1", "OB-2"]
    h.commit(r)
    rest = h.release(T0, everything=True)
    assert rest is not None
    fast = rest.batch.select(rest.batch.point_idx == 0)
    values = fast.select(np.argsort(fast.ts_us)).values()
    assert values == [f"OB-{t}" for t in range(1000, 1500)]
    assert len(rest.batch.strings) == 500  # the written 1,000 were dropped from the table
    latest = h.latest()
    assert latest is not None and {s.point: s.value for s in latest.samples()} == {"a.fast.x": "OB-1499",
                                                                                    "a.slow.y": 13.0}


def test_a_steady_stream_is_held_in_a_bounded_number_of_reused_segments() -> None:
    """An hour of a steady stream, written as blocks complete: the row segments stop growing once the hold is full."""
    points = tuple(f"a.fast.p{i}" for i in range(50))
    h = SampleHold(lambda p: 10 * S, POLICY, segment_rows=512)
    segments = []
    for t in range(3600):
        h.add(f"e{t}", sweep(t, points), now_us=T0 + t * S)
        if h.due(T0 + t * S):
            r = h.release(T0 + t * S)
            assert r is not None
            h.commit(r)
        segments.append(h.segments)
    # 12 s of 50 points wait at most (a 10 s block and its 2 s grace): 600 rows, 2-3 segments and the spares.
    assert max(segments[60:]) == max(segments[60:120]) <= 6
    assert h.held_samples <= 12 * 50
    assert h.held_bytes <= 6 * 512 * 39


def test_a_write_carries_at_most_max_release_samples_oldest_first() -> None:
    h = hold(HoldPolicy.from_seconds(hold_s=30, grace_s=2, max_samples=10_000, max_release=5))
    for t in range(6):
        h.add(f"e{t}", sweep(t), now_us=T0)
    r = h.release(T0, everything=True)
    assert r is not None and len(r.batch) == 5 and not r.everything
    assert sorted(r.batch.ts_us.tolist()) == [T0, T0, T0 + S, T0 + S, T0 + 2 * S]
    assert [d.entry_id for d in h.commit(r)] == ["e0", "e1"]
    written = 5
    while (r := h.release(T0, everything=True)) is not None:
        assert len(r.batch) <= 5
        written += len(r.batch)
        h.commit(r)
    assert written == 12 and h.held_samples == 0 and h.entry_ids() == []


def test_samples_added_while_a_write_is_in_flight_stay_held_after_its_commit() -> None:
    h = hold(HoldPolicy.from_seconds(hold_s=30, grace_s=2, max_samples=10_000))
    h.add("e0", sweep(0), now_us=T0)
    r = h.release(T0, everything=True)
    assert r is not None
    h.add("e1", sweep(1), now_us=T0)  # arrives during the write
    assert [d.entry_id for d in h.commit(r)] == ["e0"]
    assert h.held_samples == 2 and h.entry_ids() == ["e1"]
    rest = h.release(T0, everything=True)
    assert rest is not None and rest.batch.ts_us.tolist() == [T0 + S, T0 + S]


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="max_release"):
        HoldPolicy.from_seconds(hold_s=30, grace_s=2, max_samples=10, max_release=-1)
    with pytest.raises(ValueError, match="segment_rows"):
        SampleHold(BLOCK.__getitem__, POLICY, segment_rows=0)


def test_a_point_running_ahead_does_not_flush_the_blocks_of_the_others() -> None:
    h = hold()
    for t in range(5):
        h.add(f"e{t}", sweep(t), now_us=T0 + t * S)
    # One source's clock is an hour ahead: its own block is complete, nobody else's is.
    h.add("skewed", sweep(3600, ("a.slow.y",)), now_us=T0 + 5 * S)
    r = h.release(T0 + 5 * S)
    assert r is not None and set(r.batch.points[i] for i in r.batch.point_idx.tolist()) == {"a.slow.y"}
    assert len(r.batch) == 5  # the slow point's first minute, not the fast point's open 10-s block
    h.commit(r)
    assert h.release(T0 + 5 * S) is None
    assert h.held_samples == 6
