"""Priority filters over log records: per component at the source, per source at the centre."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from config_db.logging import LogFilters
from skyops.records import LogBatch, LogRecord


def keep_central(records: Sequence[LogRecord], filters: LogFilters) -> list[LogRecord]:
    """The records whose level reaches their source's minimum."""
    if not filters.sources and filters.default_level <= 0:
        return list(records)
    return [r for r in records if r.level >= filters.source_level(r.source)]


def keep_central_batch(batch: LogBatch, filters: LogFilters) -> LogBatch:
    """`keep_central` over columns: one minimum per distinct source, one comparison for the batch."""
    if not filters.sources and filters.default_level <= 0:
        return batch
    minimum = {s: filters.source_level(s) for s in set(batch.source)}
    floor = np.fromiter((minimum[s] for s in batch.source), np.int16, len(batch))
    return batch.take(batch.level >= floor)


class ComponentLevels:
    """Per-component minimum levels with a cache, swapped whole when the configuration changes.

    Lookups walk logger names by dotted prefix once per name; the cache makes the per-record cost
    one dict read, which matters because every `logging` call in the process goes through it.
    """

    def __init__(self, filters: LogFilters) -> None:
        self._state: tuple[LogFilters, dict[str, int]] = (filters, {})

    @property
    def filters(self) -> LogFilters:
        return self._state[0]

    def update(self, filters: LogFilters) -> None:
        # One assignment: a reader on another thread sees the old pair or the new one, never a mix.
        self._state = (filters, {})

    def minimum(self, component: str) -> int:
        filters, cache = self._state
        level = cache.get(component)
        if level is None:
            level = filters.component_level(component)
            cache[component] = level
        return level

    def allows(self, component: str, level: int) -> bool:
        minimum = self._state[1].get(component)  # the cached answer, without a second call
        return level >= (minimum if minimum is not None else self.minimum(component))
