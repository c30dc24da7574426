"""Packing samples into per-point time blocks ("chunks") and back: the archive's storage unit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from skyops.records import SampleBatch, ValueKind
from skyops.timeutil import US_PER_DAY, US_PER_S


@dataclass(frozen=True, slots=True)
class Chunk:
    """The samples of one point inside one block, from one write, as stored blobs.

    The clustering key is (start_us, chunk_id) where chunk_id is a digest of the content: the same
    samples written twice (a replayed bus entry) land on the same row, so re-writes never duplicate.
    """

    point: str
    day: int
    start_us: int
    end_us: int
    chunk_id: int
    n: int
    ts: bytes
    kind: bytes
    bits: bytes
    quality: bytes
    strings: tuple[str, ...]


def check_block_seconds(block_seconds: int) -> int:
    if block_seconds <= 0 or 86_400 % block_seconds:
        raise ValueError(f"block length {block_seconds} s must divide a day (86400 s)")
    return block_seconds


def chunk_batch(point: str, series: SampleBatch, block_seconds: int) -> Iterator[Chunk]:
    """Split one point's time-sorted, de-duplicated samples at block boundaries (never across a UTC day)."""
    if not len(series):
        return
    block_us = check_block_seconds(block_seconds) * US_PER_S
    block = series.ts_us // block_us
    cuts = np.flatnonzero(np.diff(block)) + 1
    for rows in np.split(np.arange(len(series)), cuts):
        yield _pack(point, series.select(rows))


def _pack(point: str, part: SampleBatch) -> Chunk:
    bits = part.bits
    strings: tuple[str, ...] = ()
    is_str = part.kind == ValueKind.STR
    if is_str.any():
        used, inverse = np.unique(bits[is_str], return_inverse=True)
        strings = tuple(part.strings[int(i)] for i in used)
        bits = bits.copy()
        bits[is_str] = inverse
    ts = part.ts_us.astype("<i8", copy=False).tobytes()
    kind = part.kind.tobytes()
    bits_b = bits.astype("<i8", copy=False).tobytes()
    quality = part.quality.tobytes()
    digest = hashlib.blake2b(digest_size=8)
    for blob in (ts, kind, bits_b, quality, "\x00".join(strings).encode()):
        digest.update(len(blob).to_bytes(8, "little"))
        digest.update(blob)
    start = int(part.ts_us[0])
    return Chunk(
        point=point,
        day=start // US_PER_DAY,
        start_us=start,
        end_us=int(part.ts_us[-1]),
        chunk_id=int.from_bytes(digest.digest(), "little", signed=True),
        n=len(part),
        ts=ts,
        kind=kind,
        bits=bits_b,
        quality=quality,
        strings=strings,
    )


def unpack(chunks: Iterable[Chunk], start_us: int | None = None, end_us: int | None = None) -> SampleBatch:
    """Merge chunks into one time-sorted series, keeping one sample per timestamp, within [start, end)."""
    ordered = sorted(chunks, key=lambda c: (c.start_us, c.chunk_id))
    parts: list[SampleBatch] = []
    for c in ordered:
        n = c.n
        parts.append(
            SampleBatch(
                points=(c.point,),
                point_idx=np.zeros(n, dtype=np.uint32),
                ts_us=np.frombuffer(c.ts, dtype="<i8").astype(np.int64),
                kind=np.frombuffer(c.kind, dtype=np.uint8),
                bits=np.frombuffer(c.bits, dtype="<i8").astype(np.int64),
                quality=np.frombuffer(c.quality, dtype=np.uint8),
                strings=c.strings,
            )
        )
    merged = SampleBatch.concat(parts).dedupe_sorted()
    if start_us is not None or end_us is not None:
        lo = -(2**63) if start_us is None else start_us
        hi = 2**63 - 1 if end_us is None else end_us
        merged = merged.select((merged.ts_us >= lo) & (merged.ts_us < hi))
    return merged


def days_between(start_us: int, end_us: int) -> Sequence[int]:
    """The UTC day numbers that [start, end) touches."""
    if end_us <= start_us:
        return []
    return range(start_us // US_PER_DAY, (end_us - 1) // US_PER_DAY + 1)
