"""A dispatcher-sized block write on real Cassandra: thousands of chunks in replica batches, read back exactly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from skyops.archive.cassandra import MAX_CHUNK_BATCH_BYTES, CassandraArchive
from skyops.records import Sample, SampleBatch
from skyops.timeutil import to_us

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

POINTS = 2_000
# A whole minute block of the "standard" class, a day ago (well inside its retention).
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0)


@pytest.fixture
async def archive(cassandra_hosts: list[str]) -> AsyncIterator[CassandraArchive]:
    names = {f"bench.p{i:04d}.value": "standard" for i in range(POINTS)} | {"ntt.tcs.state": "standard"}
    a = CassandraArchive(cassandra_hosts, keyspace=f"t_{uuid.uuid4().hex[:12]}", points=names)
    await a.open()
    yield a
    await a.drop_keyspace()
    await a.close()


async def test_a_minute_of_thousands_of_points_is_written_in_batches_and_read_back_exactly(
    archive: CassandraArchive,
) -> None:
    names = [f"bench.p{i:04d}.value" for i in range(POINTS)]
    idx = np.tile(np.arange(POINTS), 60)
    ts = to_us(T0) + np.repeat(np.arange(60), POINTS).astype(np.int64) * 1_000_000
    values = np.random.default_rng(3).normal(size=len(idx))
    numeric = SampleBatch.from_floats(names, idx, ts, values)
    states = SampleBatch.from_samples(Sample("ntt.tcs.state", T0 + timedelta(seconds=s), ["SLEWING", "TRACKING"][s % 2])
                                      for s in range(60))
    batch = SampleBatch.concat([numeric, states])
    # 2,000 one-minute chunks of ~1.1 kB: far more than one batch holds, so several batches go out.
    assert POINTS * 60 * 18 > 2 * MAX_CHUNK_BATCH_BYTES
    await archive.write_samples(batch, latest=False)
    await archive.write_samples(batch, latest=False)  # a replay stores nothing twice

    end = T0 + timedelta(minutes=1)
    got = await archive.raw_many([names[0], names[-1], "ntt.tcs.state"], T0, end)
    for name in (names[0], names[-1]):
        col = names.index(name)
        assert np.array_equal(got[name].numeric(), values[idx == col])
        assert np.array_equal(got[name].ts_us, ts[idx == col])
    assert got["ntt.tcs.state"].values() == ["SLEWING", "TRACKING"] * 30
    assert await archive.latest(["ntt.tcs.state"]) == {}  # latest values are the caller's (write_latest)
    await archive.write_latest(batch)
    assert (await archive.latest(["ntt.tcs.state"]))["ntt.tcs.state"].value == "TRACKING"
