"""Packing samples into per-point time blocks ("chunks") and back: the archive's storage unit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyops.records import K_STR, SampleBatch
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
    block_us = np.full(1, check_block_seconds(block_seconds) * US_PER_S, dtype=np.int64)
    only = SampleBatch._derived((point,), np.zeros(len(series), np.uint32), series.ts_us, series.kind, series.bits,
                                series.quality, series.strings)
    yield from chunk_sorted(only, block_us)


def chunk_sorted(batch: SampleBatch, block_us: npt.NDArray[np.int64]) -> Iterator[Chunk]:
    """Chunks of a batch sorted by (point, time) and de-duplicated; `block_us[i]` is point i's block length.

    One numpy pass finds every (point, block) run; each run is packed from contiguous slices.
    """
    n = len(batch)
    if not n:
        return
    idx = batch.point_idx
    block = batch.ts_us // block_us[idx]
    cut = np.flatnonzero((idx[1:] != idx[:-1]) | (block[1:] != block[:-1])) + 1
    starts = np.r_[0, cut].tolist()
    ends = np.r_[cut, n].tolist()
    has_str = bool((batch.kind == K_STR).any())
    for s, e in zip(starts, ends, strict=True):
        yield _pack(batch.points[int(idx[s])], batch, s, e, has_str)


def _pack(point: str, b: SampleBatch, s: int, e: int, has_str: bool) -> Chunk:
    bits = b.bits[s:e]
    kind_a = b.kind[s:e]
    strings: tuple[str, ...] = ()
    if has_str:
        is_str = kind_a == K_STR
        if is_str.any():
            used, inverse = np.unique(bits[is_str], return_inverse=True)
            strings = tuple(b.strings[int(i)] for i in used)
            bits = bits.copy()
            bits[is_str] = inverse
    ts_a = b.ts_us[s:e]
    ts = ts_a.astype("<i8", copy=False).tobytes()
    kind = kind_a.tobytes()
    bits_b = bits.astype("<i8", copy=False).tobytes()
    quality = b.quality[s:e].tobytes()
    digest = hashlib.blake2b(digest_size=8)
    for blob in (ts, kind, bits_b, quality, "\x00".join(strings).encode()):
        digest.update(len(blob).to_bytes(8, "little"))
        digest.update(blob)
    start = int(ts_a[0])
    return Chunk(
        point=point,
        day=start // US_PER_DAY,
        start_us=start,
        end_us=int(ts_a[-1]),
        chunk_id=int.from_bytes(digest.digest(), "little", signed=True),
        n=e - s,
        ts=ts,
        kind=kind,
        bits=bits_b,
        quality=quality,
        strings=strings,
    )


def unpack(chunks: Iterable[Chunk], start_us: int | None = None, end_us: int | None = None) -> SampleBatch:
    """Merge chunks into one time-sorted series, keeping one sample per timestamp, within [start, end)."""
    ordered = sorted(chunks, key=lambda c: (c.start_us, c.chunk_id))
    if not ordered:
        return SampleBatch.empty()
    # Only chunks that carry strings need their string indexes remapped; plain numeric chunks are joined
    # with one concatenate per column.
    strings: dict[str, int] = {}
    bits_parts = []
    for c in ordered:
        bits = np.frombuffer(c.bits, dtype="<i8")
        if c.strings:
            kinds = np.frombuffer(c.kind, dtype=np.uint8)
            remap = np.asarray([strings.setdefault(x, len(strings)) for x in c.strings], dtype=np.int64)
            bits = bits.astype(np.int64)
            is_str = kinds == K_STR
            bits[is_str] = remap[bits[is_str]]
        bits_parts.append(bits)
    ts = np.concatenate([np.frombuffer(c.ts, dtype="<i8") for c in ordered]).astype(np.int64)
    merged = SampleBatch._derived(
        (ordered[0].point,),
        np.zeros(len(ts), dtype=np.uint32),
        ts,
        np.concatenate([np.frombuffer(c.kind, dtype=np.uint8) for c in ordered]),
        np.concatenate(bits_parts).astype(np.int64),
        np.concatenate([np.frombuffer(c.quality, dtype=np.uint8) for c in ordered]),
        tuple(strings),
    )
    if len(ordered) > 1 and not bool((np.diff(ts) > 0).all()):
        merged = merged.dedupe_sorted()
    if start_us is not None or end_us is not None:
        lo = -(2**63) if start_us is None else start_us
        hi = 2**63 - 1 if end_us is None else end_us
        merged = merged.select((merged.ts_us >= lo) & (merged.ts_us < hi))
    return merged
