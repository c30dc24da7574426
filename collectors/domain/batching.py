"""Cutting sample batches into bus-sized pieces that carry only the point and string tables they use."""

from __future__ import annotations

import numpy as np

from skyops.records import K_STR, SampleBatch


def compact(batch: SampleBatch) -> SampleBatch:
    """The same samples with point and string tables holding only what they use.

    A slice of a batch keeps the whole tables; on the bus every name costs bytes to send and work to
    decode and look up, per entry, so a slice of 5,000 samples of a 20,000-point sweep would carry
    four times more names than samples.
    """
    used, idx = np.unique(batch.point_idx, return_inverse=True)
    bits = batch.bits
    strings: tuple[str, ...] = ()
    is_str = batch.kind == K_STR
    if batch.strings and is_str.any():
        sused, sidx = np.unique(bits[is_str], return_inverse=True)
        strings = tuple(batch.strings[i] for i in sused.tolist())
        bits = bits.copy()
        bits[is_str] = sidx
    return SampleBatch._derived(
        points=tuple(batch.points[i] for i in used.tolist()),
        point_idx=idx.astype(np.uint32).reshape(-1),
        ts_us=batch.ts_us,
        kind=batch.kind,
        bits=bits,
        quality=batch.quality,
        strings=strings,
    )


def split(batch: SampleBatch, size: int) -> list[SampleBatch]:
    """Consecutive pieces of at most `size` samples, each compacted (one bus entry each)."""
    if size <= 0:
        raise ValueError(f"piece size must be positive, got {size}")
    if len(batch) <= size and len(batch.points) == len(np.unique(batch.point_idx)) and not batch.strings:
        return [batch] if len(batch) else []
    return [compact(batch.select(slice(i, i + size))) for i in range(0, len(batch), size)]
