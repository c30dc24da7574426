"""The consumer-group loop every stream consumer runs: recover, read, handle, then acknowledge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from skyops import codec
from skyops.bus.streams import Bus, Entry, NoSuchGroupError, Recovered

log = logging.getLogger(__name__)

# A handler returns None to acknowledge every entry it was given, or the ids to acknowledge now: a
# handler that holds entries (to write them later, in fuller batches) acknowledges them in a later call.
Handler = Callable[[list[Entry]], Awaitable[Sequence[str] | None]]
Sleep = Callable[[float], Awaitable[None]]

_VERSIONED = bytes((codec.VERSIONED,))
OUTDATED_RECLAIM_FACTOR = 4


class StreamConsumer:
    """Feeds batches of a stream to `handler` as one consumer of a consumer group.

    Each `run_once` first takes over entries a dead consumer left pending for `min_idle_ms`, then
    retries this consumer's own unacknowledged entries (after a handler failure or a restart under
    the same name), and only then reads new ones: a failing handler holds back its own consumer
    instead of pulling an ever larger backlog out of the stream, where retention protects it.
    Entries are acknowledged only after the handler returned; a handler that raises leaves them
    pending. Handlers must therefore be idempotent (archive writes are, by primary key). A handler
    may keep entries pending on purpose by returning the ids it is done with: those it holds are
    then walked past (not re-read forever) when the consumer goes through its own pending list,
    and should be kept fresh with `Bus.touch` so that the group does not reclaim them.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        batch_size: int = 100,
        block_ms: int = 1000,
        min_idle_ms: int = 60_000,
        group_start: str = "0",
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        sleep: Sleep | None = None,
    ) -> None:
        if batch_size <= 0 or block_ms <= 0 or min_idle_ms < 0:
            raise ValueError("batch_size and block_ms must be positive, min_idle_ms must be >= 0")
        if backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("backoff_s must be >= 0 and max_backoff_s must be >= backoff_s")
        self.bus = bus
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.group_start = group_start
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep

        # Counters for /metrics: they only ever grow.
        self.processed = 0  # entries handled and acknowledged
        self.handler_failures = 0  # handler calls that raised
        self.bus_failures = 0  # run_once calls the bus made fail (Redis unreachable, ...)
        self.reclaimed = 0  # entries taken over from idle consumers
        self.lost = 0  # pending entries trimmed by retention before they were handled
        self.consecutive_failures = 0
        self.last_latency_us: int | None = None  # producer → acknowledged, newest entry of the last batch
        self.too_new = 0  # deliveries of entries left pending because a newer codec wrote them
        self._too_new_reasons: dict[tuple[codec.PayloadKind, int], str] = {}

        self._group_ready = False
        # A consumer restarted under the same name starts by finishing what it was given before.
        self._own_pending = True
        self._own_after = "0"  # where the walk through this consumer's own pending entries stands

    async def run_once(self) -> int:
        """One round: recover, read, handle, acknowledge. Returns how many entries were acknowledged.

        Handler errors are logged and counted, never raised; bus errors propagate.
        """
        try:
            return await self._round()
        except NoSuchGroupError:
            # The stream key went away (deleted, or a Redis without persistence restarted): recreate.
            log.warning("%s/%s: consumer group missing, creating it again", self.stream, self.group)
            self._group_ready = False
            return await self._round()

    async def _round(self) -> int:
        if not self._group_ready:
            await self.bus.ensure_group(self.stream, self.group, start=self.group_start)
            self._group_ready = True
        acked = 0

        stale = await self.bus.reclaim(
            self.stream, self.group, self.consumer, min_idle_ms=self.reclaim_idle_ms, count=self.batch_size
        )
        self._count_lost(stale)
        self.reclaimed += len(stale.entries)
        # Entries only a newer consumer can read come back here every min_idle_ms; they are no work
        # done, so they must not turn the blocking read below into a busy loop.
        stale_usable = self._usable(stale.entries)
        if stale_usable:
            ok, n = await self._handle(stale_usable, "reclaimed")
            acked += n
            if not ok:
                return acked

        if self._own_pending:
            own = await self.bus.read_own_pending(
                self.stream, self.group, self.consumer, count=self.batch_size, after=self._own_after
            )
            self._count_lost(own)
            if own.entries:
                ok, n = await self._handle(self._usable(own.entries), "retried")
                if ok:
                    self._own_after = own.entries[-1].id
                return acked + n
            if own.deleted_ids:
                return acked  # more of our own may follow the trimmed ones
            self._own_pending = False
            self._own_after = "0"

        # Blocking only when idle keeps a reclaimed backlog draining at full speed.
        fresh = await self.bus.read(
            self.stream,
            self.group,
            self.consumer,
            count=self.batch_size,
            block_ms=None if stale_usable else self.block_ms,
        )
        usable = self._usable(fresh)
        if usable:
            _, n = await self._handle(usable, "new")
            acked += n
        return acked

    @property
    def reclaim_idle_ms(self) -> int:
        """How long an entry must sit idle before this consumer takes it over.

        An outdated consumer (one that met entries of a newer codec) waits OUTDATED_RECLAIM_FACTOR times
        longer, so that the upgraded consumers of the group, reclaiming at `min_idle_ms`, take those
        entries first instead of losing a race against it every `min_idle_ms`.
        """
        return self.min_idle_ms * OUTDATED_RECLAIM_FACTOR if self._too_new_reasons else self.min_idle_ms

    def _usable(self, entries: list[Entry]) -> list[Entry]:
        """`entries` without those a newer codec wrote, which are left pending (logged once per version)."""
        if not any(e.payload[:1] == _VERSIONED for e in entries):
            return entries
        usable: list[Entry] = []
        for entry in entries:
            newer = codec.newer_version(entry.payload)
            if newer is None:
                usable.append(entry)
                continue
            self.too_new += 1
            key = (newer.kind, newer.version)
            if key not in self._too_new_reasons:
                self._too_new_reasons[key] = str(newer)
                log.error(
                    "%s/%s/%s: entry %s left pending for a newer consumer of the group: %s",
                    self.stream,
                    self.group,
                    self.consumer,
                    entry.id,
                    newer,
                )
        return usable

    def health(self) -> tuple[bool, str]:
        """(healthy, why not): failing now, or outdated (entries of a newer codec met and left pending)."""
        problems: list[str] = []
        where = f"{self.stream}/{self.group}"
        if self.consecutive_failures:
            problems.append(f"{where}: {self.consecutive_failures} consecutive failures")
        if self._too_new_reasons:
            reasons = "; ".join(self._too_new_reasons.values())
            problems.append(f"{where}: {self.too_new} deliveries left pending for a newer consumer ({reasons})")
        return not problems, "; ".join(problems)

    async def _handle(self, entries: list[Entry], kind: str) -> tuple[bool, int]:
        if not entries:
            return True, 0
        try:
            done = await self.handler(entries)
        except Exception as exc:  # a handler error must not stop the consumer; the entries wait
            self.handler_failures += 1
            self.consecutive_failures += 1
            self._own_pending = True
            self._own_after = "0"
            log.warning(
                "%s/%s/%s: handler failed on %d %s entries (%s … %s), left pending for retry: %s: %s",
                self.stream,
                self.group,
                self.consumer,
                len(entries),
                kind,
                entries[0].id,
                entries[-1].id,
                type(exc).__name__,
                exc,
            )
            return False, 0
        ids = [e.id for e in entries] if done is None else list(done)
        acked = await self.bus.ack(self.stream, self.group, ids)
        self.processed += len(ids)
        self.consecutive_failures = 0
        produced = [e.produced_us for e in entries if e.produced_us is not None]
        if produced:
            self.last_latency_us = self.bus.latency_us(Entry(entries[-1].id, b"", max(produced)))
        return True, acked

    def _count_lost(self, recovered: Recovered) -> None:
        self.lost += len(recovered.deleted_ids)

    def backoff_delay(self) -> float:
        """Seconds to wait after the current run of consecutive failures (doubling, capped)."""
        if self.consecutive_failures == 0:
            return 0.0
        return float(min(self.backoff_s * 2 ** min(self.consecutive_failures - 1, 30), self.max_backoff_s))

    async def run(self, stop: asyncio.Event) -> None:
        """Call `run_once` until `stop` is set, surviving handler and bus failures with backoff."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # Redis down or the like: keep trying, the entries are safe in Redis
                self.bus_failures += 1
                self.consecutive_failures += 1
                log.warning(
                    "%s/%s/%s: bus error, retrying: %s: %s",
                    self.stream,
                    self.group,
                    self.consumer,
                    type(exc).__name__,
                    exc,
                )
            delay = self.backoff_delay()
            if delay > 0 and not stop.is_set():
                await self._pause(delay, stop)

    async def _pause(self, delay: float, stop: asyncio.Event) -> None:
        if self._sleep is not None:
            await self._sleep(delay)
            return
        # The default pause ends early on stop, so shutting down never waits out a backoff.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
