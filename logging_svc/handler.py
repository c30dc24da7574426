"""The `logging` handler every skyops process installs: queued, never blocking, shipped to the bus in batches."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta

import numpy as np
from redis.exceptions import RedisError

from config_db.logging import HandlerConfig, LogFilters
from logging_svc.domain.filters import ComponentLevels
from skyops import codec, streams
from skyops.bus import Bus, StreamRetention
from skyops.errors import SkyopsError
from skyops.records import LogBatch, LogRecord
from skyops.timeutil import Clock, SystemClock, from_us

# Attributes every `logging.LogRecord` has; anything else on a record came from `extra=` and is kept.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_MAX_ATTR = 1024
# How many attributes a record made by logging itself has: more means `extra=` context (or a formatter's
# cached text, which _context skips).
_PLAIN_SIZE = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


def _context(rec: logging.LogRecord) -> tuple[dict[str, str], str | None, str | None]:
    """What a record carries beyond the standard attributes (from `extra=`): attributes, trace id, OB id."""
    attributes: dict[str, str] = {}
    trace_id = ob_id = None
    for key, value in vars(rec).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        if key == "trace_id" and value is not None:
            trace_id = str(value)[:100] or None
        elif key == "ob_id" and value is not None:
            ob_id = str(value)[:100] or None
        else:
            attributes[key] = str(value)[:_MAX_ATTR]
    return attributes, trace_id, ob_id


def to_log_batch(items: Sequence[tuple[logging.LogRecord, str]], *, source: str, host: str) -> LogBatch:
    """Queued `logging` records (each with its message, formatted by the caller) as one LogBatch.

    Column by column: most records carry no `extra=` context, which the size of their attribute dict
    tells, so only the few that do pay for reading their attributes.
    """
    n = len(items)
    recs = [r for r, _ in items]
    messages = [m for _, m in items]
    attributes: list[dict[str, str]] = [{} for _ in range(n)]
    trace_ids: list[str | None] = [None] * n
    ob_ids: list[str | None] = [None] * n
    for i in [i for i, r in enumerate(recs) if len(r.__dict__) != _PLAIN_SIZE]:
        attributes[i], trace_ids[i], ob_ids[i] = _context(recs[i])
    if n and max(map(len, messages)) > LogRecord.MAX_MESSAGE:
        for i, m in enumerate(messages):
            if len(m) > LogRecord.MAX_MESSAGE:
                attributes[i] = {**attributes[i], "truncated_from": str(len(m))}
                messages[i] = m[: LogRecord.MAX_MESSAGE]
    created = np.fromiter((r.created for r in recs), np.float64, n)
    levels = np.fromiter((r.levelno for r in recs), np.int64, n)
    return LogBatch(
        ts_us=np.rint(created * 1_000_000).astype(np.int64),
        level=np.clip(levels, 0, 100).astype(np.uint8),
        source=[source] * n,
        component=[r.name[:200] for r in recs],
        host=[host] * n,
        message=messages,
        attributes=attributes,
        trace_id=trace_ids,
        ob_id=ob_ids,
    )


class BusLogHandler(logging.Handler):
    """Puts records on a bounded in-memory queue and returns at once; a full queue drops and counts.

    Records below their component's minimum level are dropped here, before any formatting cost.
    The message is formatted here, in the caller's thread (its arguments may change afterwards);
    everything else is left for the shipper. Records made by the shipper's own thread are ignored: a
    bus failure reported through logging must not feed the very queue that cannot drain.
    """

    def __init__(self, *, levels: ComponentLevels, max_buffer: int) -> None:
        super().__init__()
        # A deque's append and popleft are atomic; the bound is checked before appending, so a race
        # between threads can overshoot it by at most one record per thread.
        self._q: deque[tuple[logging.LogRecord, str]] = deque()
        self.max_buffer = max_buffer
        self.levels = levels
        self.ignored_thread: int | None = None
        self._lock = threading.Lock()
        self._dropped = 0
        self.dropped_total = 0  # records lost to a full queue, for /metrics

    def handle(self, record: logging.LogRecord) -> bool:
        # logging.Handler.handle takes the handler's lock around emit(); nothing here needs it.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread is not None and record.thread == self.ignored_thread:
            return
        if not self.levels.allows(record.name, record.levelno):
            return
        try:
            if record.exc_info or record.exc_text or record.stack_info or self.formatter is not None:
                message = self.format(record)  # the traceback goes with the message, as QueueHandler does
            else:
                message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        if len(self._q) >= self.max_buffer:
            with self._lock:
                self._dropped += 1
                self.dropped_total += 1
            return
        self._q.append((record, message))

    def take_dropped(self) -> int:
        """Drops since the last call (the shipper reports them once the bus is back)."""
        with self._lock:
            n, self._dropped = self._dropped, 0
        return n

    def drain(self, limit: int) -> list[tuple[logging.LogRecord, str]]:
        q = self._q
        n = min(limit, len(q))
        return [q.popleft() for _ in range(n)]

    def queued(self) -> int:
        return len(self._q)


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
        self._pending: LogBatch | None = None
        self._unreported_drops = 0
        self.published = 0
        self.publish_failures = 0
        self.bus_up = True

    async def flush_once(self) -> int:
        """Publish what is pending and queued (up to one round); returns how many records went out."""
        if self._pending is None:
            items = self.handler.drain(self.round_size)
            if items:
                self._pending = to_log_batch(items, source=self.source, host=self.host)
        self._unreported_drops += self.handler.take_dropped()
        sent = 0
        if self._pending is not None:
            batch = self._pending
            if not await self._publish([codec.encode_log_batch(part) for part in batch.parts(self.batch_size)]):
                return 0
            self._pending = None
            sent = len(batch)
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
        return (len(self._pending) if self._pending is not None else 0) + self.handler.queued()

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
        self.restore_caller_info: Callable[[], None] = lambda: None

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


def set_caller_info(enabled: bool) -> Callable[[], None]:
    """Turn `logging`'s per-call caller lookups on or off for the process; returns what restores them.

    These are the switches of the logging HOWTO's "Optimization" section: without them a record has
    no file, line, function or process id, which the bus and the archive never carry anyway.
    """
    saved = (logging._srcfile, logging.logProcesses, logging.logMultiprocessing)
    if not enabled:
        logging._srcfile = None
        logging.logProcesses = logging.logMultiprocessing = False

    def restore() -> None:
        logging._srcfile, logging.logProcesses, logging.logMultiprocessing = saved

    return restore


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
    thread.restore_caller_info = set_caller_info(config.caller_info)
    (logger or logging.getLogger()).addHandler(handler)
    thread.start()
    return thread


def uninstall_bus_logging(thread: ShipperThread, logger: logging.Logger | None = None, timeout: float = 5.0) -> None:
    (logger or logging.getLogger()).removeHandler(thread.handler)
    thread.stop(timeout)
    thread.restore_caller_info()
