"""The GCN consumer loop: poll, decide, commit each offset only after its decision is stored; retry on failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from planner.gcn.service import Decision, GcnMessage, GcnTriggerService

log = logging.getLogger(__name__)


class SourceFailedError(RuntimeError):
    """The notice source cannot go on (e.g. a fatal Kafka client error): the process should restart."""


class NoticeSource(Protocol):
    """Where notices come from (GcnKafkaSource)."""

    def poll(self, max_messages: int, timeout_s: float) -> list[GcnMessage]: ...

    def commit(self, message: GcnMessage) -> bool: ...

    def rewind(self, messages: Sequence[GcnMessage]) -> None: ...

    def lag(self) -> int: ...

    def close(self) -> None: ...


class GcnConsumer:
    """Feeds polled notices to the service in order; a message is committed only once its outcome is durable."""

    def __init__(
        self,
        source: NoticeSource,
        service: GcnTriggerService,
        *,
        max_batch: int,
        poll_timeout_s: float,
        retry_backoff_s: float,
    ) -> None:
        self._source = source
        self._service = service
        self._max_batch = max_batch
        self._poll_timeout_s = poll_timeout_s
        self._retry_backoff_s = retry_backoff_s
        self.failures = 0

    async def run_once(self) -> list[Decision]:
        """One poll and its decisions. On a store or bus failure the rest of the batch is rewound and the error
        raised: nothing after the failed message is committed, so nothing is skipped."""
        messages = await asyncio.to_thread(self._source.poll, self._max_batch, self._poll_timeout_s)
        decisions: list[Decision] = []
        for i, message in enumerate(messages):
            try:
                decision = await self._service.handle(message)
            except Exception:
                self._source.rewind(messages[i:])
                raise
            self._source.commit(message)
            decisions.append(decision)
        return decisions

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; failures are logged and retried after the backoff."""
        while not stop.is_set():
            try:
                await self.run_once()
            except SourceFailedError:
                raise
            except Exception:
                self.failures += 1
                log.exception("GCN consumer: handling failed; retrying in %.1f s", self._retry_backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._retry_backoff_s)
