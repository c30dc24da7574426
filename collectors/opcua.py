"""The OPC-UA collector: subscriptions grouped by sampling interval, reconnect with backoff, status codes → quality."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from asyncua import ua as _ua
from asyncua.client.client import Client

from collectors.publisher import SamplePublisher
from config_db.monitoring import OpcUaNode, OpcUaSource, PointConfig
from skyops.errors import InvalidRecordError
from skyops.records import Quality, Sample
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)

# asyncua's hints use NewTypes (Int32, Double…) that refuse plain Python values.
ua: Any = _ua


def quality_of(status: int) -> Quality:
    """OPC-UA status code severity (its top two bits): 00 good, 01 uncertain, 1x bad."""
    severity = (status >> 30) & 0b11
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


def to_value(raw: object, kind: str) -> float | int | bool | str | None:
    """A node's value as its point's kind; anything that does not fit is refused by name."""
    if raw is None:
        return None
    if kind == "float" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == "bool" and isinstance(raw, bool):
        return raw
    if kind == "str" and isinstance(raw, str):
        return raw
    raise InvalidRecordError(f"value {raw!r} of type {type(raw).__name__} does not fit a {kind} point")


class OpcUaCollector:
    """Subscribes to every configured node of one OPC-UA server and feeds the publisher.

    Nodes are grouped into one subscription per sampling interval (the server samples and queues
    each group at its own rate). When the session drops, every point gets a BAD sample — consumers
    must not keep trusting the last value — and the collector reconnects with backoff.
    """

    def __init__(self, source: OpcUaSource, publisher: SamplePublisher, points: dict[str, PointConfig], *,
                 clock: Clock | None = None, check_every_s: float = 1.0) -> None:
        self.source = source
        self.publisher = publisher
        self.points = points
        self.clock: Clock = clock or SystemClock()
        self.check_every_s = check_every_s
        self.by_node: dict[str, OpcUaNode] = {n.node_id: n for n in source.nodes}
        self._buffer: list[Sample] = []
        self.connected = False
        self.connects = 0
        self.notifications = 0
        self.rejected = 0

    # --- asyncua subscription handler ---------------------------------------------------------
    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.notifications += 1
        self._on_value(node.nodeid.to_string(), val, data.monitored_item.Value)

    def _on_value(self, node_id: str, val: Any, dv: Any) -> None:
        cfg = self.by_node.get(node_id)
        if cfg is None:
            return
        status = int(dv.StatusCode.value) if dv.StatusCode is not None else 0
        quality = quality_of(status)
        ts = _aware(dv.SourceTimestamp) or _aware(dv.ServerTimestamp) or self.clock.now()
        kind = self.points[cfg.point].kind
        try:
            value = None if quality is Quality.BAD else to_value(val, kind)
        except InvalidRecordError as exc:
            self.rejected += 1
            log.warning("OPC-UA %s: node %s: %s", self.source.name, cfg.node_id, exc)
            value, quality = None, Quality.BAD
        if quality is Quality.BAD and status:
            log.warning("OPC-UA %s: node %s reports %s", self.source.name, cfg.node_id, ua.StatusCode(status).name)
        self._buffer.append(Sample(cfg.point, ts, value, Quality.BAD if value is None else quality))

    def status_change_notification(self, status: Any) -> None:
        log.warning("OPC-UA %s: subscription status changed: %s", self.source.name, status)

    # --- loop ----------------------------------------------------------------------------------
    def drain(self) -> int:
        """Hand buffered notifications to the publisher (processing happens there)."""
        samples, self._buffer = self._buffer, []
        return self.publisher.add(samples) if samples else 0

    def _mark(self, connected: bool) -> None:
        self.connected = connected
        now = self.clock.now()
        samples = []
        if self.source.connected_point is not None:
            samples.append(Sample(self.source.connected_point, now, connected))
        if not connected:
            samples.extend(Sample(n.point, now, None, Quality.BAD) for n in self.source.nodes)
        self._buffer.extend(samples)
        self.drain()

    async def _subscribe(self, client: Client) -> None:
        groups: dict[int, list[OpcUaNode]] = defaultdict(list)
        for n in self.source.nodes:
            groups[n.sampling_interval_ms].append(n)
        for interval, nodes in sorted(groups.items()):
            sub: Any = await client.create_subscription(max(interval, 10), self)
            plain = [client.get_node(n.node_id) for n in nodes if n.deadband <= 0]
            if plain:
                await sub.subscribe_data_change(plain, sampling_interval=float(interval))
            for n in nodes:
                if n.deadband > 0:
                    await sub.deadband_monitor(client.get_node(n.node_id), n.deadband)
        # A snapshot after subscribing: asyncua may drop a new subscription's first notification, and
        # consumers should not wait for a slow node's first change to learn its value.
        for n in self.source.nodes:
            dv = await client.get_node(n.node_id).read_data_value(raise_on_bad_status=False)
            self._on_value(n.node_id, dv.Value.Value if dv.Value is not None else None, dv)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until `stop`; reconnect with backoff whenever the session fails."""
        attempt = 0
        flusher = asyncio.create_task(self._flush_loop(stop))
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    attempt = 0
                except Exception as exc:  # any failure of the server or the link: reconnect
                    attempt += 1
                    log.warning("OPC-UA %s: session to %s failed (%s: %s); reconnecting in %.1f s",
                                self.source.name, self.source.endpoint, type(exc).__name__, exc,
                                self.source.reconnect.delay(attempt))
                if self.connected or attempt == 1:
                    self._mark(False)
                if stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.source.reconnect.delay(max(attempt, 1)))
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            self.drain()
            with contextlib.suppress(Exception):
                await self.publisher.flush()

    async def _session(self, stop: asyncio.Event) -> None:
        client = Client(self.source.endpoint, timeout=self.source.timeout_s)
        await client.connect()
        try:
            self.connects += 1
            await self._subscribe(client)
            self._mark(True)
            log.info("OPC-UA %s: subscribed to %d nodes at %s", self.source.name, len(self.source.nodes),
                     self.source.endpoint)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.check_every_s)
                await client.check_connection()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=self.source.timeout_s)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        interval = self.publisher.queue.flush_interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            self.drain()
            try:
                await self.publisher.flush()
            except Exception as exc:  # the publisher keeps the samples for the next round
                log.warning("OPC-UA %s: cannot publish yet: %s", self.source.name, exc)

    async def call(self, object_key: str, method: str, *args: object) -> None:
        """Call a method of the server (e.g. `NTT.TCS`, `Park`) on a short-lived session."""
        async with Client(self.source.endpoint, timeout=self.source.timeout_s) as client:
            obj = client.get_node(f"ns=2;s={object_key}")
            await obj.call_method(f"2:{method}", *args)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    # asyncua hands out UTC, aware or naive depending on the path it took.
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
