"""Priority filters changed at run time: stored in Redis, announced on a channel, applied without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from config_db.loader import ConfigError
from config_db.logging import LogFilters
from skyops.bus import Bus

log = logging.getLogger(__name__)

FILTERS_KEY = "config.logging.filters"
FILTERS_CHANNEL = "config.logging.filters"

Apply = Callable[[LogFilters], None]


class FilterStore:
    """The current filters of the running system (the config file supplies them until someone changes them)."""

    def __init__(self, bus: Bus, *, key: str = FILTERS_KEY, channel: str = FILTERS_CHANNEL) -> None:
        self.bus = bus
        self.key = key
        self.channel = channel

    async def save(self, filters: LogFilters) -> None:
        """Store new filters and tell every process to pick them up."""
        data = filters.model_dump_json().encode()
        await self.bus.redis.set(self.key, data)
        await self.bus.broadcast(self.channel, data)

    async def load(self) -> LogFilters | None:
        """The stored filters, or None when none were ever stored; invalid ones raise ConfigError."""
        raw = await self.bus.redis.get(self.key)
        if raw is None:
            return None
        try:
            return LogFilters.model_validate_json(raw)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
            raise ConfigError(f"redis key {self.key}", problems) from None


class FilterWatcher:
    """Applies stored filters to the handler and the consumer of this process when they change."""

    def __init__(self, store: FilterStore, targets: Sequence[Apply], current: LogFilters) -> None:
        self.store = store
        self.targets = list(targets)
        self.current = current
        self.reloads = 0
        self.invalid = 0

    async def reload(self) -> bool:
        """Read the stored filters and apply them if they differ; True when something changed."""
        try:
            filters = await self.store.load()
        except ConfigError as exc:
            self.invalid += 1
            log.error("ignoring invalid log filters, keeping the current ones: %s", exc)
            return False
        if filters is None or filters == self.current:
            return False
        self.current = filters
        for apply in self.targets:
            apply(filters)
        self.reloads += 1
        log.info("log filters changed: %s", filters.model_dump(mode="json"))
        return True

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        """Reload on every announcement until `stop`; a reload at start catches changes made while down.

        A lost subscription (Redis gone) raises, so the owner's supervision restarts the watcher.
        """
        subscribed = ready or asyncio.Event()

        async def listen() -> None:
            async for _ in self.store.bus.subscribe(self.store.channel, ready=subscribed):
                await self.reload()

        async def started_then_stopped() -> None:
            await subscribed.wait()
            await self.reload()
            await stop.wait()

        listener = asyncio.create_task(listen())
        main = asyncio.create_task(started_then_stopped())
        try:
            done, _ = await asyncio.wait({listener, main}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (listener, main):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
