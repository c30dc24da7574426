"""Priority filters changed at run time reach the handler and the consumer without a restart."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from config_db.loader import ConfigError
from config_db.logging import LogFilters
from logging_svc.domain.filters import ComponentLevels
from logging_svc.filter_store import FILTERS_KEY, FilterStore, FilterWatcher
from skyops.bus import Bus


async def test_saved_filters_are_applied_on_reload(bus: Bus) -> None:
    levels = ComponentLevels(LogFilters())
    seen: list[LogFilters] = []
    store = FilterStore(bus)
    watcher = FilterWatcher(store, [levels.update, seen.append], LogFilters())
    assert not await watcher.reload()  # nothing stored yet
    new = LogFilters(components={"collectors": "ERROR"}, sources={"devices": "WARNING"})
    await store.save(new)
    assert await watcher.reload()
    assert not await watcher.reload()  # unchanged
    assert levels.minimum("collectors.asm") == 40
    assert seen == [new] and seen[0].source_level("devices") == 30


async def test_invalid_stored_filters_are_refused_and_the_current_ones_kept(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    store = FilterStore(bus)
    current = LogFilters(default_level="INFO")
    watcher = FilterWatcher(store, [], current)
    await bus.redis.set(FILTERS_KEY, b'{"sources": {"devices": "LOUD"}, "colour": 1}')
    with pytest.raises(ConfigError, match=r"sources\.devices") as err:
        await store.load()
    assert "colour" in str(err.value)
    assert not await watcher.reload()
    assert watcher.current is current and watcher.invalid == 1
    assert "ignoring invalid log filters" in caplog.text


async def test_the_watcher_follows_announcements(bus: Bus) -> None:
    store = FilterStore(bus)
    changed = asyncio.Event()
    watcher = FilterWatcher(store, [lambda _: changed.set()], LogFilters())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(watcher.run(stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        await store.save(LogFilters(default_level="ERROR"))
        await asyncio.wait_for(changed.wait(), 5)
        assert watcher.current.default_level == 40
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
