"""Execution tracking: OB states follow the telescope's monitoring points (current OB, exposure state)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np

from skyops.records import Quality, Sample, SampleBatch

OB_POINT = "ntt.exposure.ob_id"
STATE_POINT = "ntt.exposure.state"
TRACKED_POINTS = (OB_POINT, STATE_POINT)


class Outcome(StrEnum):
    STARTED = "started"
    OBSERVED = "observed"
    FAILED = "failed"


@dataclass(frozen=True)
class ExecutionEvent:
    ob_id: int
    outcome: Outcome
    ts: datetime


class ExecutionTracker:
    """Turns the exposure points into OB outcomes: EXPOSING starts an OB, back to IDLE completes it,
    ABORTED fails it. Samples of bad quality are ignored (the telescope's word is not known then)."""

    def __init__(self) -> None:
        self.ob_id = 0
        self.state = "IDLE"
        self._exposed = False

    def feed_batch(self, batch: SampleBatch) -> list[ExecutionEvent]:
        """The tracked points of a monitoring batch, in time order; everything else is skipped with numpy."""
        if not len(batch):
            return []
        wanted = np.asarray([name in TRACKED_POINTS for name in batch.points], dtype=bool)
        rows = np.flatnonzero(wanted[batch.point_idx] & (batch.quality == Quality.GOOD))
        if rows.size == 0:
            return []
        part = batch.select(rows[np.argsort(batch.ts_us[rows], kind="stable")])
        return self.feed(part.samples())

    def feed(self, samples: Iterable[Sample]) -> list[ExecutionEvent]:
        events: list[ExecutionEvent] = []
        for sample in samples:
            if sample.quality is not Quality.GOOD:
                continue
            if sample.point == OB_POINT and isinstance(sample.value, int) and not isinstance(sample.value, bool):
                if sample.value != self.ob_id:
                    self.ob_id, self._exposed = sample.value, False
            elif sample.point == STATE_POINT and isinstance(sample.value, str):
                events.extend(self._on_state(sample.value.upper(), sample.ts))
        return events

    def _on_state(self, state: str, ts: datetime) -> list[ExecutionEvent]:
        previous, self.state = self.state, state
        if self.ob_id <= 0 or state == previous:
            return []
        if state == "EXPOSING" and not self._exposed:
            self._exposed = True
            return [ExecutionEvent(self.ob_id, Outcome.STARTED, ts)]
        if state == "ABORTED" and self._exposed:
            self._exposed = False
            return [ExecutionEvent(self.ob_id, Outcome.FAILED, ts)]
        if state == "IDLE" and self._exposed and previous in ("EXPOSING", "READOUT"):
            self._exposed = False
            return [ExecutionEvent(self.ob_id, Outcome.OBSERVED, ts)]
        return []
