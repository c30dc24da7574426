"""The health collector: watches the heartbeat points components publish and says which ones went silent."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
import numpy.typing as npt

from collectors.publisher import SamplePublisher
from config_db.monitoring import HealthSource
from skyops import codec
from skyops.bus import Bus, Entry, StreamConsumer
from skyops.errors import CodecError
from skyops.records import Sample
from skyops.streams import MON_SAMPLES
from skyops.timeutil import Clock, SystemClock, from_us, to_us

log = logging.getLogger(__name__)

NEVER = -(2**62)


class HeartbeatTracker:
    """Pure state: the newest sample time per health source, and who is alive at a given instant."""

    def __init__(self, sources: list[HealthSource]) -> None:
        self.sources = sources
        self.owner = {p: i for i, s in enumerate(sources) for p in s.points}
        self.last_us = np.full(len(sources), NEVER, dtype=np.int64)
        self.period_us = np.array([int(s.expected_period_s * 1e6) for s in sources], dtype=np.int64)

    def observe(self, points: tuple[str, ...], point_idx: npt.NDArray[np.uint32], ts_us: npt.NDArray[np.int64]) -> None:
        owner = np.array([self.owner.get(p, -1) for p in points], dtype=np.int64)
        rows = owner[point_idx]
        mine = rows >= 0
        if mine.any():
            np.maximum.at(self.last_us, rows[mine], ts_us[mine])

    def alive(self, now_us: int) -> list[bool]:
        """A source is alive when it was heard from within two of its expected periods."""
        ok = (now_us - self.last_us) <= 2 * self.period_us
        return [bool(x) for x in ok]


class HealthCollector:
    """Consumes `mon.samples` in its own group ("health") and publishes each source's `alive_point`."""

    def __init__(self, bus: Bus, publisher: SamplePublisher, sources: list[HealthSource], *, consumer: str,
                 clock: Clock | None = None, group: str = "health", stream: str = MON_SAMPLES,
                 report_every_s: float = 10.0) -> None:
        self.tracker = HeartbeatTracker(sources)
        self.publisher = publisher
        self.clock: Clock = clock or SystemClock()
        self.report_every_s = report_every_s
        # A new group starts at the stream's end: only fresh heartbeats say a component is alive.
        self.consumer = StreamConsumer(bus, stream=stream, group=group, consumer=consumer, handler=self.handle,
                                       block_ms=200, group_start="$")

    async def handle(self, entries: list[Entry]) -> None:
        for e in entries:
            try:
                b = codec.decode_samples(e.payload)
            except CodecError:
                continue  # the archive dispatcher reports poison entries; here they carry no heartbeat
            self.tracker.observe(b.points, b.point_idx, b.ts_us)

    async def report(self) -> list[Sample]:
        now = self.clock.now()
        alive = self.tracker.alive(to_us(now))
        samples = []
        for src, ok in zip(self.tracker.sources, alive, strict=True):
            if src.alive_point is None:
                continue
            samples.append(Sample(src.alive_point, now, ok))
            if not ok:
                last = self.tracker.last_us[self.tracker.sources.index(src)]
                since = "never" if last == NEVER else from_us(int(last)).isoformat()
                log.warning("health: %s silent (last heard %s)", src.name, since)
        await self.publisher.publish(samples)
        return samples

    async def run(self, stop: asyncio.Event) -> None:
        reporter = asyncio.create_task(self._report_loop(stop))
        try:
            await self.consumer.run(stop)
        finally:
            await reporter

    async def _report_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.report_every_s)
            try:
                await self.report()
            except Exception as exc:  # the bus may be down: next round
                log.warning("health: cannot publish: %s", exc)
