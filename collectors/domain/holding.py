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


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """How long samples may wait, in microseconds, and how many may wait at once."""

    hold_us: int
    grace_us: int
    max_samples: int

    def __post_init__(self) -> None:
        if self.hold_us < 0 or self.grace_us < 0 or self.max_samples <= 0:
            raise ValueError("hold and grace must be >= 0 and max_samples > 0")

    @classmethod
    def from_seconds(cls, hold_s: float, grace_s: float, max_samples: int) -> HoldPolicy:
        return cls(hold_us=round(hold_s * 1e6), grace_us=round(grace_s * 1e6), max_samples=max_samples)


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """A bus entry whose samples are (partly) held: acknowledge it once all of them are written."""

    entry_id: str
    produced_us: int | None
    arrived_us: int


@dataclass(frozen=True, slots=True)
class Release:
    """Held samples picked for one archive write; `SampleHold.commit` it once the write succeeded."""

    batch: SampleBatch
    rows: npt.NDArray[np.bool_]  # which of the held rows (as consolidated at release time) it carries
    everything: bool
    generation: int


@dataclass(frozen=True, slots=True)
class _Rows:
    gidx: npt.NDArray[np.uint32]
    ts: npt.NDArray[np.int64]
    kind: npt.NDArray[np.uint8]
    bits: npt.NDArray[np.int64]
    quality: npt.NDArray[np.uint8]
    seq: npt.NDArray[np.int64]
    block_end: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ts)

    def select(self, rows: npt.NDArray[np.bool_]) -> _Rows:
        return _Rows(self.gidx[rows], self.ts[rows], self.kind[rows], self.bits[rows], self.quality[rows],
                     self.seq[rows], self.block_end[rows])

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        if len(parts) == 1:
            return parts[0]
        return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Rows.__slots__))


class SampleHold:
    """Samples of many bus entries, held until each point's archive block is complete.

    A block is complete once the newest sample seen (the data watermark) lies `grace_us` past its
    end; a sample also leaves after waiting `hold_us` (a point, or the whole stream, went quiet), and
    everything leaves when more than `max_samples` wait. `block_us_of` gives a point's block length,
    or None for a point the archive does not know. Each entry is remembered with how many of
    its samples are still held, so the caller acknowledges an entry only after the write that
    covered its last sample. The newest value of every point is tracked apart (`latest`), so the
    latest values need not wait for the blocks.
    """

    def __init__(self, block_us_of: Callable[[str], int | None], policy: HoldPolicy) -> None:
        self.policy = policy
        self._block_us_of = block_us_of
        self._points: list[str] = []
        self._point_index: dict[str, int] = {}
        self._block_us = np.zeros(0, dtype=np.int64)
        self._strings: list[str] = []
        self._string_index: dict[str, int] = {}
        self._parts: list[_Rows] = []
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
        rows = _Rows(points, batch.ts_us, batch.kind, bits, batch.quality, np.full(n, seq, dtype=np.int64), block_end)
        self._parts.append(rows)
        self._entries[seq] = HeldEntry(entry_id, produced_us, now_us)
        self._remaining[seq] = n
        self._seq_of[entry_id] = seq
        self._held += n
        self._watermark_us = max(self._watermark_us, int(batch.ts_us.max()))
        self._next_block_end_us = min(self._next_block_end_us, int(block_end.min()))
        self._track_latest(rows)
        return n

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

    def _track_latest(self, rows: _Rows) -> None:
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
    def due(self, now_us: int) -> bool:
        """Whether `release(now_us)` has something to write: a block completed, a wait ran out, or memory."""
        if not self._held:
            return False
        if self._held >= self.policy.max_samples or self.policy.hold_us == 0:
            return True
        if self._next_block_end_us + self.policy.grace_us <= self._watermark_us:
            return True
        oldest = min(e.arrived_us for e in self._entries.values())
        return oldest + self.policy.hold_us <= now_us

    def release(self, now_us: int, *, everything: bool = False) -> Release | None:
        """The samples due for writing now (all of them with `everything`), or None."""
        if not self._held:
            return None
        rows = _Rows.concat(self._parts)
        self._parts = [rows]
        everything = everything or self._held >= self.policy.max_samples or self.policy.hold_us == 0
        if everything:
            mask = np.ones(len(rows), dtype=bool)
        else:
            mask = rows.block_end + self.policy.grace_us <= self._watermark_us
            expired = [s for s, e in self._entries.items() if e.arrived_us + self.policy.hold_us <= now_us]
            if expired:
                mask |= np.isin(rows.seq, np.asarray(expired, dtype=np.int64))
            if not mask.any():
                return None
        batch = SampleBatch._derived(tuple(self._points), rows.gidx[mask], rows.ts[mask], rows.kind[mask],
                                     rows.bits[mask], rows.quality[mask], tuple(self._strings))
        self._generation += 1
        return Release(batch=batch, rows=mask, everything=bool(mask.all()), generation=self._generation)

    def commit(self, release: Release) -> list[HeldEntry]:
        """Forget the samples `release` carried (they are archived); the entries now completely written."""
        if release.generation != self._generation or not self._parts:
            raise ValueError("this release does not match the held samples (released twice?)")
        self._generation += 1
        rows = self._parts[0]
        seqs, counts = np.unique(rows.seq[release.rows], return_counts=True)
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
        keep = rows.select(~release.rows)
        self._parts = ([keep] if len(keep) else []) + self._parts[1:]
        self._held = sum(len(p) for p in self._parts)
        self._next_block_end_us = min((int(p.block_end.min()) for p in self._parts), default=int(_NEVER))
        if len(self._strings) > _COMPACT_STRINGS_ABOVE:
            self._compact_strings()
        return done

    def _compact_strings(self) -> None:
        """Drop strings no held sample or pending latest value refers to any more (the table only grows)."""
        rows = _Rows.concat(self._parts) if self._parts else None
        in_rows = rows.kind == K_STR if rows is not None else np.zeros(0, dtype=bool)
        in_latest = self._lt_kind == K_STR
        held_bits = rows.bits[in_rows] if rows is not None else np.zeros(0, dtype=np.int64)
        used = np.unique(np.concatenate([held_bits, self._lt_bits[in_latest]]))
        remap = np.full(len(self._strings), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        if rows is not None:
            bits = rows.bits.copy()
            bits[in_rows] = remap[bits[in_rows]]
            self._parts = [_Rows(rows.gidx, rows.ts, rows.kind, bits, rows.quality, rows.seq, rows.block_end)]
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
