"""Record types shared by every service: monitoring samples (single and columnar), log records, alarm events."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from skyops.errors import InvalidRecordError
from skyops.timeutil import from_us, require_utc, to_us

Value = float | int | bool | str | None

POINT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Quality(IntEnum):
    """OPC-UA style quality: GOOD values are trusted, BAD ones are kept but never used as data."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class ValueKind(IntEnum):
    """How a sample's 64-bit value column is to be read."""

    NULL = 0
    FLOAT = 1
    INT = 2
    BOOL = 3
    STR = 4


# Plain ints for numpy comparisons in hot paths (enum attribute lookups are slow).
K_NULL, K_FLOAT, K_INT, K_BOOL, K_STR = 0, 1, 2, 3, 4
Q_BAD = 2


def check_point_name(point: str) -> str:
    """A point name is dotted lowercase (`lasilla.asm.wind_speed`); anything else is refused."""
    if not isinstance(point, str) or not POINT_NAME.match(point) or len(point) > 200:
        raise InvalidRecordError(
            f"bad point name {point!r}: use dotted lowercase words like 'lasilla.asm.wind_speed'"
        )
    return point


def check_value(value: object, *, point: str = "?") -> Value:
    """Accept float/int/bool/str/None; refuse NaN/inf (send None with BAD quality) and other types."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRecordError(f"{point}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecordError(
                f"{point}: value {value} is not finite; send value=None with quality BAD instead"
            )
        return value
    if isinstance(value, np.generic):
        return check_value(value.item(), point=point)
    raise InvalidRecordError(
        f"{point}: value of type {type(value).__name__} is not one of float, int, bool, str, None"
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one monitoring point at one UTC instant."""

    point: str
    ts: datetime
    value: Value
    quality: Quality = Quality.GOOD

    def __post_init__(self) -> None:
        check_point_name(self.point)
        object.__setattr__(self, "ts", require_utc(self.ts, what=f"{self.point} timestamp"))
        object.__setattr__(self, "value", check_value(self.value, point=self.point))
        try:
            object.__setattr__(self, "quality", Quality(self.quality))
        except ValueError:
            raise InvalidRecordError(f"{self.point}: unknown quality {self.quality!r}") from None


def _u8(values: Any) -> npt.NDArray[np.uint8]:
    return np.asarray(values, dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class SampleBatch:
    """Many samples as columns: what the bus carries and the archive packs.

    `bits` holds each value in 64 bits, read through `kind`: a float's IEEE bits, an int, 0/1 for a
    bool, the index into `strings` for a str, 0 for None. That keeps every type exact while numeric
    work (`numeric()`) stays a numpy view.
    """

    points: tuple[str, ...]
    point_idx: npt.NDArray[np.uint32]
    ts_us: npt.NDArray[np.int64]
    kind: npt.NDArray[np.uint8]
    bits: npt.NDArray[np.int64]
    quality: npt.NDArray[np.uint8]
    strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.ts_us)
        for name in ("point_idx", "kind", "bits", "quality"):
            if len(getattr(self, name)) != n:
                raise InvalidRecordError(f"sample batch column {name} has {len(getattr(self, name))} rows, not {n}")
        if n and int(self.point_idx.max()) >= len(self.points):
            raise InvalidRecordError("sample batch refers to a point index outside its point list")
        if n and int(self.kind.max()) > ValueKind.STR:
            raise InvalidRecordError("sample batch has an unknown value kind")
        if n and int(self.quality.max()) > Quality.BAD:
            raise InvalidRecordError("sample batch has an unknown quality code")
        is_str = self.kind == K_STR
        if is_str.any():
            idx = self.bits[is_str]
            if int(idx.min()) < 0 or int(idx.max()) >= len(self.strings):
                raise InvalidRecordError("sample batch refers to a string outside its string table")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def _derived(
        cls,
        points: tuple[str, ...],
        point_idx: npt.NDArray[np.uint32],
        ts_us: npt.NDArray[np.int64],
        kind: npt.NDArray[np.uint8],
        bits: npt.NDArray[np.int64],
        quality: npt.NDArray[np.uint8],
        strings: tuple[str, ...],
    ) -> SampleBatch:
        """A batch cut from already validated columns: skips validation, which dominates hot paths."""
        out = object.__new__(cls)
        for name, value in (("points", points), ("point_idx", point_idx), ("ts_us", ts_us), ("kind", kind),
                            ("bits", bits), ("quality", quality), ("strings", strings)):
            object.__setattr__(out, name, value)
        return out

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls.from_samples(())

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> SampleBatch:
        points: dict[str, int] = {}
        strings: dict[str, int] = {}
        idx: list[int] = []
        ts: list[int] = []
        kinds: list[int] = []
        bits: list[int] = []
        quality: list[int] = []
        f2i = np.array([0.0], dtype=np.float64)
        i_view = f2i.view(np.int64)
        for s in samples:
            idx.append(points.setdefault(s.point, len(points)))
            ts.append(to_us(s.ts))
            quality.append(int(s.quality))
            v = s.value
            if v is None:
                kinds.append(ValueKind.NULL)
                bits.append(0)
            elif isinstance(v, bool):
                kinds.append(ValueKind.BOOL)
                bits.append(int(v))
            elif isinstance(v, int):
                kinds.append(ValueKind.INT)
                bits.append(v)
            elif isinstance(v, float):
                kinds.append(ValueKind.FLOAT)
                f2i[0] = v
                bits.append(int(i_view[0]))
            else:
                kinds.append(ValueKind.STR)
                bits.append(strings.setdefault(v, len(strings)))
        return cls(
            points=tuple(points),
            point_idx=np.asarray(idx, dtype=np.uint32),
            ts_us=np.asarray(ts, dtype=np.int64),
            kind=_u8(kinds),
            bits=np.asarray(bits, dtype=np.int64),
            quality=_u8(quality),
            strings=tuple(strings),
        )

    @classmethod
    def from_floats(
        cls,
        points: Sequence[str],
        point_idx: npt.ArrayLike,
        ts_us: npt.ArrayLike,
        values: npt.ArrayLike,
        quality: npt.ArrayLike | None = None,
    ) -> SampleBatch:
        """The fast path for numeric collectors: NaN becomes None with BAD quality (never a value)."""
        for p in points:
            check_point_name(p)
        vals = np.ascontiguousarray(values, dtype=np.float64)
        nan = ~np.isfinite(vals)
        q = _u8(np.zeros(len(vals)) if quality is None else quality).copy()
        q[nan] = Quality.BAD
        kind = np.where(nan, ValueKind.NULL, ValueKind.FLOAT).astype(np.uint8)
        bits = np.where(nan, 0.0, vals).view(np.int64)
        return cls(
            points=tuple(points),
            point_idx=np.asarray(point_idx, dtype=np.uint32),
            ts_us=np.asarray(ts_us, dtype=np.int64),
            kind=kind,
            bits=np.ascontiguousarray(bits),
            quality=q,
        )

    @classmethod
    def concat(cls, batches: Sequence[SampleBatch]) -> SampleBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        points: dict[str, int] = {}
        strings: dict[str, int] = {}
        idx_parts, bits_parts = [], []
        for b in batches:
            remap = np.asarray([points.setdefault(p, len(points)) for p in b.points], dtype=np.uint32)
            idx_parts.append(remap[b.point_idx])
            bits = b.bits
            if b.strings:
                smap = np.asarray([strings.setdefault(s, len(strings)) for s in b.strings], dtype=np.int64)
                is_str = b.kind == ValueKind.STR
                bits = bits.copy()
                bits[is_str] = smap[bits[is_str]]
            bits_parts.append(bits)
        return cls(
            points=tuple(points),
            point_idx=np.concatenate(idx_parts),
            ts_us=np.concatenate([b.ts_us for b in batches]),
            kind=np.concatenate([b.kind for b in batches]),
            bits=np.concatenate(bits_parts),
            quality=np.concatenate([b.quality for b in batches]),
            strings=tuple(strings),
        )

    # --- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ts_us)

    def numeric(self) -> npt.NDArray[np.float64]:
        """Values as float64; NaN where the value is None or a string."""
        kind = self.kind
        if len(kind) and (kind == K_FLOAT).all():
            view = self.bits.view(np.float64)
            view.flags.writeable = False  # a view of the stored bits: callers must not change them
            return view
        out = np.full(len(self), np.nan)
        f = kind == K_FLOAT
        out[f] = self.bits[f].view(np.float64)
        n = (kind == K_INT) | (kind == K_BOOL)
        out[n] = self.bits[n].astype(np.float64)
        return out

    def usable(self) -> npt.NDArray[np.bool_]:
        """Samples whose value can be used as data: numeric and not of BAD quality."""
        usable: npt.NDArray[np.bool_] = (self.kind != K_NULL) & (self.kind != K_STR) & (self.quality != Q_BAD)
        return usable

    def value_at(self, i: int) -> Value:
        k = int(self.kind[i])
        b = int(self.bits[i])
        if k == ValueKind.NULL:
            return None
        if k == ValueKind.FLOAT:
            return float(self.bits[i : i + 1].view(np.float64)[0])
        if k == ValueKind.INT:
            return b
        if k == ValueKind.BOOL:
            return bool(b)
        return self.strings[b]

    def values(self) -> list[Value]:
        return [self.value_at(i) for i in range(len(self))]

    def samples(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield Sample(
                point=self.points[int(self.point_idx[i])],
                ts=from_us(int(self.ts_us[i])),
                value=self.value_at(i),
                quality=Quality(int(self.quality[i])),
            )

    def select(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | slice) -> SampleBatch:
        """The rows picked by a mask, index array or slice (string and point tables are kept whole)."""
        return SampleBatch._derived(
            self.points, self.point_idx[rows], self.ts_us[rows], self.kind[rows], self.bits[rows],
            self.quality[rows], self.strings,
        )

    def by_point(self) -> Iterator[tuple[str, SampleBatch]]:
        """One time-sorted batch per point, each carrying only its own point name."""
        if not len(self):
            return
        order = np.lexsort((self.ts_us, self.point_idx))
        idx = self.point_idx[order]
        cuts = np.flatnonzero(np.diff(idx)) + 1
        for rows in np.split(order, cuts):
            name = self.points[int(self.point_idx[rows[0]])]
            part = self.select(rows)
            yield name, SampleBatch._derived(
                (name,), np.zeros(len(rows), dtype=np.uint32), part.ts_us, part.kind, part.bits, part.quality,
                part.strings,
            )

    def dedupe_sorted(self) -> SampleBatch:
        """Sort by (point, time) and keep the last of samples sharing point and timestamp."""
        if not len(self):
            return self
        order = np.lexsort((np.arange(len(self)), self.ts_us, self.point_idx))
        p, t = self.point_idx[order], self.ts_us[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = (p[1:] != p[:-1]) | (t[1:] != t[:-1])
        return self.select(order[last])


class AlarmSeverity(IntEnum):
    """Alarm severities, ordered so that max() is the latched one."""

    NONE = 0
    WARNING = 1
    SERIOUS = 2
    CRITICAL = 3


LOG_LEVELS: Mapping[str, int] = MappingProxyType(
    {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
     "CRITICAL": logging.CRITICAL}
)


def parse_level(level: int | str) -> int:
    """A log level by name (any case) or number; anything else is refused by name."""
    if isinstance(level, bool):
        raise InvalidRecordError(f"unknown log level {level!r}")
    if isinstance(level, int):
        if 0 <= level <= 100:
            return level
        raise InvalidRecordError(f"log level {level} is outside 0..100")
    if isinstance(level, str):
        name = level.strip().upper()
        name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
        if name in LOG_LEVELS:
            return LOG_LEVELS[name]
    raise InvalidRecordError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")


def _check_text(value: object, what: str, *, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRecordError(f"{what} must be text, got {type(value).__name__}")
    if not allow_empty and not value:
        raise InvalidRecordError(f"{what} is empty")
    if len(value) > max_len:
        raise InvalidRecordError(f"{what} is {len(value)} characters long; the limit is {max_len}")
    return value


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line from any part of the system, in the archive's shape."""

    ts: datetime
    level: int
    source: str
    message: str
    component: str = ""
    host: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    trace_id: str | None = None
    ob_id: str | None = None

    MAX_MESSAGE = 64 * 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", require_utc(self.ts, what="log timestamp"))
        object.__setattr__(self, "level", parse_level(self.level))
        _check_text(self.source, "log source", max_len=100)
        _check_text(self.message, "log message", max_len=self.MAX_MESSAGE, allow_empty=True)
        _check_text(self.component, "log component", max_len=200, allow_empty=True)
        _check_text(self.host, "log host", max_len=255, allow_empty=True)
        if not isinstance(self.attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.attributes.items()
        ):
            raise InvalidRecordError("log attributes must map text to text")
        object.__setattr__(self, "attributes", dict(self.attributes))
        for name in ("trace_id", "ob_id"):
            v = getattr(self, name)
            if v is not None:
                _check_text(v, f"log {name}", max_len=100)

    @property
    def ts_us(self) -> int:
        return to_us(self.ts)


# Microseconds that `from_us` can turn into a datetime (years 1..9999).
_TS_US_MIN, _TS_US_MAX = -62_135_596_800_000_000, 253_402_300_799_999_999


@dataclass(frozen=True, slots=True, eq=False)
class LogBatch:
    """Many log records as columns: what intakes build, the bus carries and archives write, with no object per record.

    The text columns are trusted to hold `str` (intakes build them from typed decoders, the codec from
    Avro); everything else a LogRecord checks is checked here over whole columns at once.
    """

    ts_us: npt.NDArray[np.int64]
    level: npt.NDArray[np.uint8]
    source: list[str]
    component: list[str]
    host: list[str]
    message: list[str]
    attributes: list[dict[str, str]]
    trace_id: list[str | None]
    ob_id: list[str | None]

    def __post_init__(self) -> None:
        n = len(self.ts_us)
        columns = (self.level, self.source, self.component, self.host, self.message, self.attributes,
                   self.trace_id, self.ob_id)
        if any(len(c) != n for c in columns):
            raise InvalidRecordError("log batch columns differ in length")
        if n == 0:
            return
        if int(self.ts_us.min()) < _TS_US_MIN or int(self.ts_us.max()) > _TS_US_MAX:
            raise InvalidRecordError("log batch holds a timestamp outside years 1..9999")
        if int(self.level.max()) > 100:
            raise InvalidRecordError(f"log level {int(self.level.max())} is outside 0..100")
        for what, col, lo, hi in (("log source", self.source, 1, 100),
                                  ("log message", self.message, 0, LogRecord.MAX_MESSAGE),
                                  ("log component", self.component, 0, 200), ("log host", self.host, 0, 255)):
            lengths = list(map(len, col))
            if min(lengths) < lo:
                raise InvalidRecordError(f"{what} is empty")
            if max(lengths) > hi:
                raise InvalidRecordError(f"{what} is {max(lengths)} characters long; the limit is {hi}")
        for what, ids in (("log trace_id", self.trace_id), ("log ob_id", self.ob_id)):
            if ids.count(None) == n:  # the usual case, counted in C
                continue
            lengths = [len(v) for v in ids if v is not None]
            if min(lengths) < 1 or max(lengths) > 100:
                raise InvalidRecordError(f"{what} must be 1..100 characters long")

    def __len__(self) -> int:
        return len(self.ts_us)

    @classmethod
    def empty(cls) -> LogBatch:
        return cls(ts_us=np.zeros(0, np.int64), level=np.zeros(0, np.uint8), source=[], component=[], host=[],
                   message=[], attributes=[], trace_id=[], ob_id=[])

    @classmethod
    def from_records(cls, records: Sequence[LogRecord]) -> LogBatch:
        return cls(
            ts_us=np.fromiter((r.ts_us for r in records), np.int64, len(records)),
            level=np.fromiter((r.level for r in records), np.uint8, len(records)),
            source=[r.source for r in records],
            component=[r.component for r in records],
            host=[r.host for r in records],
            message=[r.message for r in records],
            attributes=[dict(r.attributes) for r in records],
            trace_id=[r.trace_id for r in records],
            ob_id=[r.ob_id for r in records],
        )

    @classmethod
    def concat(cls, batches: Sequence[LogBatch]) -> LogBatch:
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return cls.empty()
        return cls(
            ts_us=np.concatenate([b.ts_us for b in batches]),
            level=np.concatenate([b.level for b in batches]),
            source=[v for b in batches for v in b.source],
            component=[v for b in batches for v in b.component],
            host=[v for b in batches for v in b.host],
            message=[v for b in batches for v in b.message],
            attributes=[v for b in batches for v in b.attributes],
            trace_id=[v for b in batches for v in b.trace_id],
            ob_id=[v for b in batches for v in b.ob_id],
        )

    def part(self, start: int, stop: int) -> LogBatch:
        """Records `start` to `stop` (a slice of every column; no copy of the numbers)."""
        if start == 0 and stop >= len(self):
            return self
        return LogBatch(ts_us=self.ts_us[start:stop], level=self.level[start:stop], source=self.source[start:stop],
                        component=self.component[start:stop], host=self.host[start:stop],
                        message=self.message[start:stop], attributes=self.attributes[start:stop],
                        trace_id=self.trace_id[start:stop], ob_id=self.ob_id[start:stop])

    def parts(self, size: int) -> list[LogBatch]:
        """Consecutive parts of at most `size` records (what one bus entry carries)."""
        return [self.part(i, i + size) for i in range(0, len(self), size)]

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> LogBatch:
        """The records at `index` (positions, or a boolean mask), in that order."""
        idx = np.flatnonzero(index) if index.dtype == np.bool_ else index
        if len(idx) == len(self) and (len(idx) == 0 or bool((idx == np.arange(len(idx))).all())):
            return self
        pick = idx.tolist()
        return LogBatch(
            ts_us=self.ts_us[idx],
            level=self.level[idx],
            source=[self.source[i] for i in pick],
            component=[self.component[i] for i in pick],
            host=[self.host[i] for i in pick],
            message=[self.message[i] for i in pick],
            attributes=[self.attributes[i] for i in pick],
            trace_id=[self.trace_id[i] for i in pick],
            ob_id=[self.ob_id[i] for i in pick],
        )

    def records(self) -> list[LogRecord]:
        return [
            LogRecord(ts=from_us(ts), level=lvl, source=src, message=msg, component=comp, host=host,
                      attributes=attrs, trace_id=tid, ob_id=ob)
            for ts, lvl, src, comp, host, msg, attrs, tid, ob in zip(
                self.ts_us.tolist(), self.level.tolist(), self.source, self.component, self.host, self.message,
                self.attributes, self.trace_id, self.ob_id, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A transition of an alarm or an operator action on it (ack, shelve, comment...), as archived."""

    alarm_id: str
    ts: datetime
    seq: int
    action: str
    severity: AlarmSeverity
    latched: AlarmSeverity = AlarmSeverity.NONE
    state: str = ""
    acked: bool = False
    user: str | None = None
    comment: str | None = None
    reason: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_text(self.alarm_id, "alarm id", max_len=200)
        object.__setattr__(self, "ts", require_utc(self.ts, what="alarm event timestamp"))
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise InvalidRecordError(f"alarm event sequence must be a non-negative integer, got {self.seq!r}")
        _check_text(self.action, "alarm action", max_len=40)
        for name in ("severity", "latched"):
            try:
                object.__setattr__(self, name, AlarmSeverity(getattr(self, name)))
            except ValueError:
                raise InvalidRecordError(f"unknown alarm {name} {getattr(self, name)!r}") from None
        if not isinstance(self.attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.attributes.items()
        ):
            raise InvalidRecordError("alarm attributes must map text to text")
        object.__setattr__(self, "attributes", dict(self.attributes))

    @property
    def ts_us(self) -> int:
        return to_us(self.ts)
