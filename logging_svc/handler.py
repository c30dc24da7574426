"""The `logging` handler every skyops process installs: queued, never blocking, shipped to the bus in batches."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from redis.exceptions import RedisError

from config_db.logging import HandlerConfig, LogFilters
from logging_svc.domain.filters import ComponentLevels
from skyops import codec, streams
from skyops.bus import Bus, StreamRetention
from skyops.errors import InvalidRecordError, SkyopsError
from skyops.records import LogRecord
from skyops.timeutil import Clock, SystemClock, from_us

# Attributes every `logging.LogRecord` has; anything else on a record came from `extra=` and is kept.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_MAX_ATTR = 1024


def to_log_record(rec: logging.LogRecord, *, source: str, host: str) -> LogRecord:
    """A `logging` record (already formatted by the handler) in the archive's shape."""
    message = rec.getMessage()
    attributes: dict[str, str] = {}
    trace_id = ob_id = None
    for key, value in vars(rec).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        if key == "trace_id" and value is not None:
            trace_id = str(value)[:100]
        elif key == "ob_id" and value is not None:
            ob_id = str(value)[:100]
        else:
            attributes[key] = str(value)[:_MAX_ATTR]
    if len(message) > LogRecord.MAX_MESSAGE:
        attributes["truncated_from"] = str(len(message))
        message = message[: LogRecord.MAX_MESSAGE]
    return LogRecord(
        ts=from_us(round(rec.created * 1_000_000)),
        level=max(0, min(100, rec.levelno)),
        source=source,
        message=message,
        component=rec.name[:200],
        host=host,
        attributes=attributes,
        trace_id=trace_id,
        ob_id=ob_id,
    )


class BusLogHandler(logging.handlers.QueueHandler):
    """Puts records on a bounded in-memory queue and returns at once; a full queue drops and counts.

    Records below their component's minimum level are dropped here, before any formatting cost.
    Records made by the shipper's own thread are ignored: a bus failure reported through logging
    must not feed the very queue that cannot drain.
    """

    def __init__(self, *, levels: ComponentLevels, max_buffer: int) -> None:
        self._q: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=max_buffer)
        super().__init__(self._q)
        self.levels = levels
        self.ignored_thread: int | None = None
        self._lock = threading.Lock()
        self._dropped = 0
        self.dropped_total = 0  # records lost to a full queue, for /metrics

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread is not None and record.thread == self.ignored_thread:
            return
        if not self.levels.allows(record.name, record.levelno):
            return
        super().emit(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self._q.put_nowait(record)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                self.dropped_total += 1

    def take_dropped(self) -> int:
        """Drops since the last call (the shipper reports them once the bus is back)."""
        with self._lock:
            n, self._dropped = self._dropped, 0
        return n

    def drain(self, limit: int) -> list[logging.LogRecord]:
        out: list[logging.LogRecord] = []
        while len(out) < limit:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                break
        return out

    def queued(self) -> int:
        return self._q.qsize()


class LogShipper:
    """Moves queued records to `log.records` in batches; holds them while the bus is down.

    What it took from the queue and could not publish stays here (at most one round's worth) and
    is retried first; meanwhile new records wait in the handler's bounded queue, and beyond that
    bound they are dropped and counted. Once a publish succeeds again, one WARNING record says how
    many were dropped.
    """

    def __init__(
        self,
        handler: BusLogHandler,
        bus: Bus,
        *,
        source: str,
        host: str | None = None,
        retention: StreamRetention,
        batch_size: int = 500,
        batches_per_round: int = 20,
        clock: Clock | None = None,
        stream: str = streams.LOG_RECORDS,
    ) -> None:
        self.handler = handler
        self.bus = bus
        self.source = source
        self.host = host if host is not None else socket.gethostname()
        # Refused now, by name, rather than on every record later.
        LogRecord(ts=from_us(0), level=logging.INFO, source=source, message="", host=self.host)
        self.retention = retention
        self.batch_size = batch_size
        self.round_size = batch_size * batches_per_round
        self.clock: Clock = clock or SystemClock()
        self.stream = stream
        self._pending: deque[LogRecord] = deque()
        self._unreported_drops = 0
        self.published = 0
        self.publish_failures = 0
        self.unconvertible = 0
        self.bus_up = True

    async def flush_once(self) -> int:
        """Publish what is pending and queued (up to one round); returns how many records went out."""
        if not self._pending:
            for rec in self.handler.drain(self.round_size):
                try:
                    self._pending.append(to_log_record(rec, source=self.source, host=self.host))
                except InvalidRecordError:
                    # Cannot be archived as is (e.g. a bad source name); counted with the drops.
                    self._unreported_drops += 1
                    self.unconvertible += 1
        self._unreported_drops += self.handler.take_dropped()
        sent = 0
        if self._pending:
            records = list(self._pending)
            payloads = [codec.encode_logs(records[i : i + self.batch_size])
                        for i in range(0, len(records), self.batch_size)]
            if not await self._publish(payloads):
                return 0
            self._pending.clear()
            sent = len(records)
            self.published += sent
        if self._unreported_drops:
            report = self._drop_report(self._unreported_drops)
            if not await self._publish([codec.encode_logs([report])]):
                return sent
            self._unreported_drops = 0
            self.published += 1
            sent += 1
        return sent

    def _drop_report(self, dropped: int) -> LogRecord:
        return LogRecord(
            ts=self.clock.now(),
            level=logging.WARNING,
            source=self.source,
            component="logging_svc.handler",
            host=self.host,
            message=f"{dropped} log records were dropped while the bus was unreachable (buffer full)",
            attributes={"dropped": str(dropped)},
        )

    async def _publish(self, payloads: list[bytes]) -> bool:
        try:
            await self.bus.publish_many(self.stream, payloads, retention=self.retention)
        except (SkyopsError, RedisError, OSError):
            self.publish_failures += 1
            self.bus_up = False
            return False
        self.bus_up = True
        return True

    @property
    def buffered(self) -> int:
        return len(self._pending) + self.handler.queued()

    @property
    def unreported_drops(self) -> int:
        return self._unreported_drops


class ShipperThread:
    """Runs a LogShipper on its own thread and event loop, so no caller's loop ever waits on the bus.

    `bus_factory` is called on that thread: an asyncio Redis client belongs to the loop that made it.
    """

    def __init__(
        self,
        handler: BusLogHandler,
        bus_factory: Callable[[], Bus],
        *,
        source: str,
        retention: StreamRetention,
        config: HandlerConfig,
        host: str | None = None,
    ) -> None:
        self.handler = handler
        self._bus_factory = bus_factory
        self._source = source
        self._host = host
        self._retention = retention
        self._config = config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="skyops-log-shipper", daemon=True)
        self.shipper: LogShipper | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ship what is queued (bounded by `timeout`) and end the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def _main(self) -> None:
        self.handler.ignored_thread = threading.get_ident()
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # kept for the owner to inspect; a logging thread must not crash loudly
            self.error = exc

    async def _run(self) -> None:
        bus = self._bus_factory()
        shipper = self.shipper = LogShipper(
            self.handler, bus, source=self._source, host=self._host, retention=self._retention,
            batch_size=self._config.batch_size,
        )
        idle_s = self._config.flush_interval / timedelta(seconds=1)
        retry_s = self._config.retry_interval / timedelta(seconds=1)
        try:
            while not self._stop.is_set():
                await shipper.flush_once()
                if not shipper.bus_up:
                    self._stop.wait(retry_s)
                elif shipper.buffered < shipper.batch_size:
                    # This loop has nothing else to do, so blocking it while idle costs nothing.
                    self._stop.wait(idle_s)
            # Last words: one more try for whatever is still queued.
            while shipper.buffered and await shipper.flush_once():
                pass
        finally:
            await bus.redis.aclose()


def install_bus_logging(
    *,
    source: str,
    bus_factory: Callable[[], Bus],
    config: HandlerConfig,
    filters: LogFilters,
    retention: StreamRetention,
    logger: logging.Logger | None = None,
    host: str | None = None,
) -> ShipperThread:
    """Attach a BusLogHandler to `logger` (the root logger by default) and start its shipper thread.

    Call `uninstall_bus_logging` at shutdown; `levels.update` on the handler changes the
    per-component filters at run time.
    """
    handler = BusLogHandler(levels=ComponentLevels(filters), max_buffer=config.max_buffer)
    thread = ShipperThread(handler, bus_factory, source=source, retention=retention, config=config, host=host)
    (logger or logging.getLogger()).addHandler(handler)
    thread.start()
    return thread


def uninstall_bus_logging(thread: ShipperThread, logger: logging.Logger | None = None, timeout: float = 5.0) -> None:
    (logger or logging.getLogger()).removeHandler(thread.handler)
    thread.stop(timeout)
