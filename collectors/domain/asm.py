"""Turning one ASM JSON answer into samples: every configured field becomes a sample, a bad one BAD with a reason."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

from config_db.monitoring import AsmSource
from skyops.records import Quality, Sample
from skyops.timeutil import require_utc


@dataclass(frozen=True)
class ParsedReading:
    """The samples of one poll and the problems found on the way (each becomes a log record)."""

    samples: list[Sample]
    problems: list[str] = field(default_factory=list)
    measured_at: datetime | None = None


def _number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def _describe(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _timestamp(payload: dict[str, object], polled_at: datetime) -> tuple[datetime | None, str | None]:
    raw = payload.get("timestamp")
    if not isinstance(raw, str):
        return None, f"timestamp missing or not text ({_describe(raw)}): samples stamped with the poll time"
    try:
        ts = datetime.fromisoformat(raw)
        return require_utc(ts), None
    except (ValueError, TypeError) as exc:
        return None, f"timestamp {_describe(raw)} unusable ({exc}): samples stamped with the poll time"


def all_bad(source: AsmSource, polled_at: datetime, reason: str) -> ParsedReading:
    """A failed poll: every point gets a BAD sample (value None), so consumers see the gap at once."""
    samples = [Sample(p, polled_at, None, Quality.BAD) for p in source.fields.values()]
    return ParsedReading(samples=samples, problems=[reason])


def parse_reading(source: AsmSource, body: bytes, polled_at: datetime) -> ParsedReading:
    """Samples for every configured field of `source` from an HTTP body received at `polled_at`."""
    polled_at = require_utc(polled_at)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return all_bad(source, polled_at, f"answer is not JSON ({exc})")
    if not isinstance(payload, dict):
        return all_bad(source, polled_at, f"answer is a JSON {type(payload).__name__}, not an object")
    problems: list[str] = []
    measured, problem = _timestamp(payload, polled_at)
    if problem:
        problems.append(problem)
    ts = measured or polled_at
    base_quality = Quality.UNCERTAIN if measured is None else Quality.GOOD
    age_s = (polled_at - measured).total_seconds() if measured is not None else None
    if age_s is not None and age_s > source.max_data_age_s:
        base_quality = Quality.UNCERTAIN
        problems.append(f"reading is {age_s:.0f} s old (limit {source.max_data_age_s:.0f} s): marked UNCERTAIN")
    if age_s is not None and age_s < -5.0:
        base_quality = Quality.UNCERTAIN
        problems.append(f"reading is stamped {-age_s:.0f} s in the future: marked UNCERTAIN")
    samples: list[Sample] = []
    for name, point in source.fields.items():
        if name not in payload:
            problems.append(f"field {name!r} missing")
            samples.append(Sample(point, ts, None, Quality.BAD))
            continue
        value = _number(payload[name])
        if value is None:
            problems.append(f"field {name!r} is not a finite number: {_describe(payload[name])}")
            samples.append(Sample(point, ts, None, Quality.BAD))
            continue
        samples.append(Sample(point, ts, value, base_quality))
    if source.age_point is not None and age_s is not None:
        samples.append(Sample(source.age_point, polled_at, max(age_s, 0.0)))
    return ParsedReading(samples=samples, problems=problems, measured_at=measured)
