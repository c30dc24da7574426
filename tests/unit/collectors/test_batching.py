"""Bus-sized pieces carry only their own point and string tables, and survive the bus encoding exactly."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import fastavro
import numpy as np
import pytest

from collectors.domain.batching import compact, split
from skyops import codec
from skyops.errors import CodecError
from skyops.records import Sample, SampleBatch

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def sweep() -> SampleBatch:
    samples = [Sample(f"ntt.p{i:02d}.value", T0 + timedelta(seconds=i), float(i)) for i in range(10)]
    samples += [Sample("ntt.tcs.state", T0 + timedelta(seconds=s), state)
                for s, state in enumerate(["SLEWING", "TRACKING", "PARKED", "TRACKING"])]
    return SampleBatch.from_samples(samples)


def test_pieces_hold_every_sample_in_order_with_only_the_names_they_use() -> None:
    batch = sweep()
    pieces = split(batch, 4)
    assert [len(p) for p in pieces] == [4, 4, 4, 2]
    assert [len(p.points) for p in pieces] == [4, 4, 3, 1]
    assert pieces[-1].points == ("ntt.tcs.state",) and set(pieces[-1].strings) == {"PARKED", "TRACKING"}
    assert [s for p in pieces for s in p.samples()] == list(batch.samples())


def test_compact_keeps_samples_and_values() -> None:
    batch = sweep().select(np.array([0, 11, 12, 13]))
    small = compact(batch)
    assert small.points == ("ntt.p00.value", "ntt.tcs.state")
    assert set(small.strings) == {"PARKED", "TRACKING"}
    assert list(small.samples()) == list(batch.samples())


def test_a_small_batch_is_one_piece_and_an_empty_one_none() -> None:
    batch = SampleBatch.from_samples([Sample("ntt.a.b", T0, 1.0)])
    assert split(batch, 10) == [batch]
    assert split(SampleBatch.empty(), 10) == []
    with pytest.raises(ValueError, match="positive"):
        split(batch, 0)


def test_pieces_round_trip_through_the_bus_encoding() -> None:
    for piece in split(sweep(), 5):
        back = codec.decode_samples(codec.encode_samples(piece))
        assert back.points == piece.points
        assert list(back.samples()) == list(piece.samples())


def test_a_v1_payload_still_in_a_stream_after_an_upgrade_decodes() -> None:
    batch = sweep()
    buf = io.BytesIO()
    buf.write(bytes((codec.SAMPLES_V1,)))
    fastavro.schemaless_writer(buf, codec._SAMPLES_SCHEMA, {
        "points": list(batch.points), "point_idx": batch.point_idx.astype("<u4").tobytes(),
        "ts_us": batch.ts_us.astype("<i8").tobytes(), "kind": batch.kind.tobytes(),
        "bits": batch.bits.astype("<i8").tobytes(), "quality": batch.quality.tobytes(),
        "strings": list(batch.strings),
    })
    assert list(codec.decode_samples(buf.getvalue()).samples()) == list(batch.samples())


def test_point_names_that_are_not_utf8_are_a_codec_error() -> None:
    good = codec.encode_samples(SampleBatch.from_samples([Sample("ntt.a.b", T0, 1.0)]))
    bad = good.replace(b"ntt.a.b", b"ntt.\xff.b")
    with pytest.raises(CodecError, match="UTF-8"):
        codec.decode_samples(bad)
