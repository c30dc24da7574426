"""Holding samples per point until their archive block is complete, and which bus entries a write completes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyops.records import K_STR, SampleBatch

_NEVER = np.iinfo(np.int64).max
_BEFORE_ALL = np.iinfo(np.int64).min
_COMPACT_STRINGS_ABOVE = 1024
SEGMENT_ROWS = 65_536
# Emptied segments kept for reuse: enough for the churn of a steady hold, few enough to give a burst back.
_SPARE_SEGMENTS = 2


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """How long samples may wait, in microseconds, how many may wait at once, and how many one write carries.

    `max_release` bounds a single release (0: no bound), so that the transient copy an archive write
    makes stays the same size however far behind the archive is.
    """

    hold_us: int
    grace_us: int
    max_samples: int
    max_release: int = 0

    def __post_init__(self) -> None:
        if self.hold_us < 0 or self.grace_us < 0 or self.max_samples <= 0 or self.max_release < 0:
            raise ValueError("hold, grace and max_release must be >= 0 and max_samples > 0")

    @classmethod
    def from_seconds(cls, hold_s: float, grace_s: float, max_samples: int, max_release: int = 0) -> HoldPolicy:
        return cls(hold_us=round(hold_s * 1e6), grace_us=round(grace_s * 1e6), max_samples=max_samples,
                   max_release=max_release)


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """A bus entry whose samples are (partly) held: acknowledge it once all of them are written."""

    entry_id: str
    produced_us: int | None
    arrived_us: int


class _Segment:
    """A fixed-capacity block of held rows in columns; emptied segments are reused, so holding allocates little."""

    __slots__ = ("bits", "block_end", "gidx", "kind", "live", "live_count", "n", "quality", "seq", "ts")

    def __init__(self, capacity: int) -> None:
        self.gidx = np.zeros(capacity, dtype=np.uint32)
        self.ts = np.zeros(capacity, dtype=np.int64)
        self.kind = np.zeros(capacity, dtype=np.uint8)
        self.bits = np.zeros(capacity, dtype=np.int64)
        self.quality = np.zeros(capacity, dtype=np.uint8)
        self.seq = np.zeros(capacity, dtype=np.int64)
        self.block_end = np.zeros(capacity, dtype=np.int64)
        self.live = np.zeros(capacity, dtype=bool)
        self.n = 0  # rows filled
        self.live_count = 0  # filled rows not written yet

    @property
    def capacity(self) -> int:
        return len(self.ts)

    def reset(self) -> _Segment:
        self.n = self.live_count = 0
        return self

    def fill(self, src: slice, batch: _Incoming) -> None:
        a, b = self.n, self.n + (src.stop - src.start)
        self.gidx[a:b] = batch.gidx[src]
        self.ts[a:b] = batch.ts[src]
        self.kind[a:b] = batch.kind[src]
        self.bits[a:b] = batch.bits[src]
        self.quality[a:b] = batch.quality[src]
        self.seq[a:b] = batch.seq
        self.block_end[a:b] = batch.block_end[src]
        self.live[a:b] = True
        self.n = b
        self.live_count += b - a


@dataclass(frozen=True, slots=True)
class _Incoming:
    gidx: npt.NDArray[np.uint32]
    ts: npt.NDArray[np.int64]
    kind: npt.NDArray[np.uint8]
    bits: npt.NDArray[np.int64]
    quality: npt.NDArray[np.uint8]
    block_end: npt.NDArray[np.int64]
    seq: int


@dataclass(frozen=True, slots=True)
class Release:
    """Held samples picked for one archive write; `SampleHold.commit` it once the write succeeded."""

    batch: SampleBatch
    picks: tuple[tuple[_Segment, npt.NDArray[np.bool_]], ...]  # per segment: which of its filled rows it carries
    everything: bool
    generation: int


class SampleHold:
    """Samples of many bus entries, held until each point's archive block is complete.

    A point's block is complete once the point's newest sample lies `grace_us` past the block's
    end; a sample also leaves after waiting `hold_us` (a point, or the whole stream, went quiet), and
    everything leaves when more than `max_samples` wait. `block_us_of` gives a point's block length,
    or None for a point the archive does not know. Each entry is remembered with how many of
    its samples are still held, so the caller acknowledges an entry only after the write that
    covered its last sample. The newest value of every point is tracked apart (`latest`), so the
    latest values need not wait for the blocks.

    Rows live in fixed-size column segments filled in arrival order: a written row is only marked
    dead, and a segment whose rows are all written is recycled. Since every row leaves within
    `hold_us` of its arrival, the segments in use stay about `hold_us` × rate rows, and a steady
    stream is held without allocating new arrays (growing and re-concatenating arrays of hundreds of
    thousands of rows at every write is what made the process's memory creep).
    """

    def __init__(self, block_us_of: Callable[[str], int | None], policy: HoldPolicy, *,
                 segment_rows: int = SEGMENT_ROWS) -> None:
        if segment_rows <= 0:
            raise ValueError("segment_rows must be > 0")
        self.policy = policy
        self._segment_rows = segment_rows
        self._block_us_of = block_us_of
        self._points: list[str] = []
        self._point_index: dict[str, int] = {}
        self._block_us = np.zeros(0, dtype=np.int64)
        self._strings: list[str] = []
        self._string_index: dict[str, int] = {}
        self._segments: list[_Segment] = []
        self._spare: list[_Segment] = []
        self._entries: dict[int, HeldEntry] = {}
        self._remaining: dict[int, int] = {}
        self._seq_of: dict[str, int] = {}
        self.unknown_samples = 0
        self.last_unknown: tuple[str, ...] = ()
        self._next_seq = 0
        self._generation = 0  # bumped by every release and commit: only the newest release may commit
        self._held = 0
        self._watermark_us = int(_BEFORE_ALL)
        self._next_block_end_us = int(_NEVER)
        # The newest sample of each point (by global index) and whether the archive has it yet.
        self._lt_ts = np.full(0, _BEFORE_ALL, dtype=np.int64)
        self._lt_kind = np.zeros(0, dtype=np.uint8)
        self._lt_bits = np.zeros(0, dtype=np.int64)
        self._lt_quality = np.zeros(0, dtype=np.uint8)
        self._lt_dirty = np.zeros(0, dtype=bool)

    # --- state --------------------------------------------------------------------------------
    @property
    def held_samples(self) -> int:
        return self._held

    @property
    def held_entries(self) -> int:
        return len(self._entries)

    @property
    def segments(self) -> int:
        """Row segments allocated now (in use and spare): what the held samples cost in memory."""
        return len(self._segments) + len(self._spare)

    @property
    def held_bytes(self) -> int:
        """Bytes of the row segments allocated now."""
        return sum(_segment_bytes(s) for s in (*self._segments, *self._spare))

    def holds(self, entry_id: str) -> bool:
        return entry_id in self._seq_of

    def entry_ids(self) -> list[str]:
        return list(self._seq_of)

    # --- in -----------------------------------------------------------------------------------
    def add(self, entry_id: str, batch: SampleBatch, *, now_us: int, produced_us: int | None = None) -> int:
        """Hold the samples of one bus entry; returns how many are held (0: acknowledge the entry at once).

        Samples of points the archive does not know (`block_us_of` gives None) are dropped, counted in
        `unknown_samples` and named in `last_unknown`. An entry already held (delivered again, e.g.
        reclaimed) is not added twice.
        """
        self.last_unknown = ()
        seq = self._seq_of.get(entry_id)
        if seq is not None:
            return self._remaining[seq]
        if not len(batch):
            return 0
        local = self._indexes(batch.points)
        gidx = local[batch.point_idx]
        if (local < 0).any():
            known = gidx >= 0
            if not known.all():
                self.unknown_samples += int((~known).sum())
                self.last_unknown = tuple(sorted(batch.points[i] for i in np.unique(batch.point_idx[~known]).tolist()))
                batch = batch.select(known)
                gidx = gidx[known]
        n = len(batch)
        if not n:
            return 0
        points = gidx.astype(np.uint32)
        bits = batch.bits
        if batch.strings:
            is_str = batch.kind == K_STR
            if is_str.any():
                smap = np.fromiter((self._string(s) for s in batch.strings), dtype=np.int64,
                                   count=len(batch.strings))
                bits = bits.copy()
                bits[is_str] = smap[bits[is_str]]
        block = self._block_us[points]
        block_end = (batch.ts_us // block + 1) * block
        seq = self._next_seq
        self._next_seq += 1
        incoming = _Incoming(points, batch.ts_us, batch.kind, bits, batch.quality, block_end, seq)
        self._append(incoming, n)
        self._entries[seq] = HeldEntry(entry_id, produced_us, now_us)
        self._remaining[seq] = n
        self._seq_of[entry_id] = seq
        self._held += n
        self._watermark_us = max(self._watermark_us, int(batch.ts_us.max()))
        self._next_block_end_us = min(self._next_block_end_us, int(block_end.min()))
        self._track_latest(incoming)
        return n

    def _append(self, incoming: _Incoming, n: int) -> None:
        start = 0
        while start < n:
            seg = self._segments[-1] if self._segments else None
            if seg is None or seg.n == seg.capacity:
                seg = self._new_segment()
            take = min(n - start, seg.capacity - seg.n)
            seg.fill(slice(start, start + take), incoming)
            start += take

    def _new_segment(self) -> _Segment:
        seg = self._spare.pop().reset() if self._spare else _Segment(self._segment_rows)
        self._segments.append(seg)
        return seg

    def _indexes(self, names: Sequence[str]) -> npt.NDArray[np.int64]:
        """Global indexes of point names (-1 for points the archive does not know), registering new ones."""
        index = self._point_index
        try:
            # The common case, every name seen before, runs without a Python frame per name.
            return np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
        except KeyError:
            pass
        new = [p for p in dict.fromkeys(names) if p not in index]
        blocks = [(p, self._block_us_of(p)) for p in new]
        known = [(p, b) for p, b in blocks if b is not None]
        if known:
            for p, _ in known:
                index[p] = len(self._points)
                self._points.append(p)
            k = len(known)
            self._block_us = np.concatenate([self._block_us, np.asarray([b for _, b in known], dtype=np.int64)])
            self._lt_ts = np.concatenate([self._lt_ts, np.full(k, _BEFORE_ALL, dtype=np.int64)])
            self._lt_kind = np.concatenate([self._lt_kind, np.zeros(k, dtype=np.uint8)])
            self._lt_bits = np.concatenate([self._lt_bits, np.zeros(k, dtype=np.int64)])
            self._lt_quality = np.concatenate([self._lt_quality, np.zeros(k, dtype=np.uint8)])
            self._lt_dirty = np.concatenate([self._lt_dirty, np.zeros(k, dtype=bool)])
        return np.fromiter((index.get(p, -1) for p in names), dtype=np.int64, count=len(names))

    def _string(self, text: str) -> int:
        i = self._string_index.get(text)
        if i is None:
            i = self._string_index[text] = len(self._strings)
            self._strings.append(text)
        return i

    def _track_latest(self, rows: _Incoming) -> None:
        order = np.lexsort((rows.ts, rows.gidx))
        g = rows.gidx[order]
        last = order[np.r_[g[1:] != g[:-1], True]]
        g, ts = rows.gidx[last], rows.ts[last]
        newer = ts >= self._lt_ts[g]
        g, last = g[newer], last[newer]
        self._lt_ts[g] = rows.ts[last]
        self._lt_kind[g] = rows.kind[last]
        self._lt_bits[g] = rows.bits[last]
        self._lt_quality[g] = rows.quality[last]
        self._lt_dirty[g] = True

    # --- out ----------------------------------------------------------------------------------
    def _everything_due(self) -> bool:
        return self._held >= self.policy.max_samples or self.policy.hold_us == 0

    def due(self, now_us: int) -> bool:
        """Whether `release(now_us)` may have something to write: a block completed, a wait ran out, or memory.

        Cheap and cautious: it may say yes while no point's own samples complete a block yet (the
        release is then None).
        """
        if not self._held:
            return False
        if self._everything_due():
            return True
        if self._next_block_end_us + self.policy.grace_us <= self._watermark_us:
            return True  # some block may be complete (the newest sample of all is past the earliest end)
        oldest = min(e.arrived_us for e in self._entries.values())
        return oldest + self.policy.hold_us <= now_us

    def release(self, now_us: int, *, everything: bool = False) -> Release | None:
        """The samples due for writing now (all of them with `everything`), oldest first, or None.

        At most `policy.max_release` samples go in one release: `everything` then takes several.
        """
        if not self._held:
            return None
        everything = everything or self._everything_due()
        expired = np.zeros(0, dtype=np.int64)
        if not everything:
            expired = np.fromiter((s for s, e in self._entries.items() if e.arrived_us + self.policy.hold_us <= now_us),
                                  dtype=np.int64)
        budget = self.policy.max_release or self._held
        picks: list[tuple[_Segment, npt.NDArray[np.bool_]]] = []
        taken = 0
        for seg in self._segments:
            if not seg.live_count:
                continue
            n = seg.n
            mask = seg.live[:n].copy()
            if not everything:
                # A point's own newest sample says whether its block is complete: one source's clock
                # running ahead must not flush every other point's blocks early.
                due = seg.block_end[:n] + self.policy.grace_us <= self._lt_ts[seg.gidx[:n]]
                if len(expired):
                    due |= np.isin(seg.seq[:n], expired)
                mask &= due
            count = int(np.count_nonzero(mask))
            if not count:
                continue
            if taken + count > budget:
                # The oldest rows first: cut the mask after the budget's last row.
                cut = int(np.flatnonzero(mask)[budget - taken - 1]) + 1
                mask[cut:] = False
                count = budget - taken
            picks.append((seg, mask))
            taken += count
            if taken >= budget:
                break
        if not picks:
            return None
        batch = SampleBatch._derived(
            tuple(self._points),
            np.concatenate([s.gidx[: len(m)][m] for s, m in picks]),
            np.concatenate([s.ts[: len(m)][m] for s, m in picks]),
            np.concatenate([s.kind[: len(m)][m] for s, m in picks]),
            np.concatenate([s.bits[: len(m)][m] for s, m in picks]),
            np.concatenate([s.quality[: len(m)][m] for s, m in picks]),
            tuple(self._strings),
        )
        self._generation += 1
        return Release(batch=batch, picks=tuple(picks), everything=taken == self._held, generation=self._generation)

    def commit(self, release: Release) -> list[HeldEntry]:
        """Forget the samples `release` carried (they are archived); the entries now completely written."""
        if release.generation != self._generation:
            raise ValueError("this release does not match the held samples (released twice?)")
        self._generation += 1
        seq_parts: list[npt.NDArray[np.int64]] = []
        for seg, mask in release.picks:
            n = len(mask)
            seq_parts.append(seg.seq[:n][mask])
            seg.live[:n] &= ~mask
            seg.live_count -= int(np.count_nonzero(mask))
        seqs, counts = np.unique(np.concatenate(seq_parts), return_counts=True)
        done: list[HeldEntry] = []
        for seq, count in zip(seqs.tolist(), counts.tolist(), strict=True):
            left = self._remaining[seq] - count
            if left:
                self._remaining[seq] = left
                continue
            del self._remaining[seq]
            entry = self._entries.pop(seq)
            del self._seq_of[entry.entry_id]
            done.append(entry)
        self._recycle()
        self._held = sum(s.live_count for s in self._segments)
        self._next_block_end_us = min(
            (int(s.block_end[: s.n][s.live[: s.n]].min()) for s in self._segments if s.live_count), default=int(_NEVER)
        )
        if len(self._strings) > _COMPACT_STRINGS_ABOVE:
            self._compact_strings()
        return done

    def _recycle(self) -> None:
        """Segments whose rows are all written go to the spares (the one being filled is simply rewound)."""
        keep: list[_Segment] = []
        last = self._segments[-1] if self._segments else None
        for seg in self._segments:
            if seg.live_count:
                keep.append(seg)
            elif seg is last:
                keep.append(seg.reset())
            elif len(self._spare) < _SPARE_SEGMENTS:
                self._spare.append(seg)
        self._segments = keep

    def _compact_strings(self) -> None:
        """Drop strings no held sample or pending latest value refers to any more (the table only grows)."""
        in_latest = self._lt_kind == K_STR
        used_parts = [self._lt_bits[in_latest]]
        for seg in self._segments:
            n = seg.n
            used_parts.append(seg.bits[:n][seg.live[:n] & (seg.kind[:n] == K_STR)])
        used = np.unique(np.concatenate(used_parts))
        remap = np.full(len(self._strings), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        for seg in self._segments:
            n = seg.n
            rows = seg.live[:n] & (seg.kind[:n] == K_STR)
            seg.bits[:n][rows] = remap[seg.bits[:n][rows]]
        self._lt_bits[in_latest] = remap[self._lt_bits[in_latest]]
        self._strings = [self._strings[i] for i in used.tolist()]
        self._string_index = {s: i for i, s in enumerate(self._strings)}

    # --- latest values ------------------------------------------------------------------------
    def latest(self) -> SampleBatch | None:
        """The newest sample of every point updated since the last `latest_written`, or None."""
        g = np.flatnonzero(self._lt_dirty)
        if not len(g):
            return None
        return SampleBatch._derived(tuple(self._points), g.astype(np.uint32), self._lt_ts[g].copy(),
                                    self._lt_kind[g].copy(), self._lt_bits[g].copy(), self._lt_quality[g].copy(),
                                    tuple(self._strings))

    def latest_written(self, batch: SampleBatch) -> None:
        """`batch` (from `latest`) is archived: its points are clean unless a newer sample came since."""
        g = batch.point_idx
        same = self._lt_ts[g] == batch.ts_us
        self._lt_dirty[g[same]] = False


def _segment_bytes(seg: _Segment) -> int:
    return sum(getattr(seg, c).nbytes for c in ("gidx", "ts", "kind", "bits", "quality", "seq", "block_end", "live"))
