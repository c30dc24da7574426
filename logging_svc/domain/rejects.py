"""Why an intake refused a line, and the per-reason counters every intake keeps."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class RejectReason(StrEnum):
    """The kinds of bad input an intake refuses (the counter labels of /metrics)."""

    MALFORMED_JSON = "malformed_json"
    OVERSIZE = "oversize"
    INVALID_UTF8 = "invalid_utf8"
    UNKNOWN_LEVEL = "unknown_level"
    INVALID_FIELD = "invalid_field"
    SOURCE_MISMATCH = "source_mismatch"
    SYSLOG_GARBAGE = "syslog_garbage"


@dataclass(frozen=True, slots=True)
class Rejected:
    """One refused line: its 1-based number in the batch (or connection), the kind, and a readable reason."""

    line: int
    kind: RejectReason
    reason: str


@dataclass
class IntakeStats:
    """Counters that only grow: accepted records and rejected lines by kind."""

    accepted: int = 0
    accepted_bytes: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)

    def reject(self, items: list[Rejected]) -> None:
        self.rejected.update(r.kind for r in items)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())
