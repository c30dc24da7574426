"""The monitoring configuration: site, data sources (ASM over HTTP, telescope over OPC-UA, health) and points."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config_db.loader import default_path, load_model
from skyops.archive.port import DEFAULT_RETENTION
from skyops.bus import StreamRetention
from skyops.records import POINT_NAME

RETENTION_CLASSES: tuple[str, ...] = tuple(r.name for r in DEFAULT_RETENTION)
PointKind = Literal["float", "int", "bool", "str"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Strict):
    """Where the telescope stands (geodetic, WGS84)."""

    name: str = Field(min_length=1)
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    elevation_m: float = Field(ge=-500, le=9000)
    timezone: str = "UTC"


class Limits(_Strict):
    """The physically possible range of a point: values outside it are kept but marked BAD."""

    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class WindowFilter(_Strict):
    """A moving filter over the last `size` samples of a point, applied before the deadband."""

    kind: Literal["mean", "median"]
    size: int = Field(ge=2, le=1000)


class Processing(_Strict):
    """What the collector does to a point's samples before they go on the bus."""

    deadband: float = Field(default=0.0, ge=0, description="absolute change needed to publish again")
    suppress_duplicates: bool = Field(default=True, description="drop a sample equal to the last one sent")
    max_silence_s: float = Field(
        default=60.0, gt=0, description="a suppressed point is still published this often (a heartbeat)"
    )
    window: WindowFilter | None = None


class PointConfig(_Strict):
    """One monitoring point: name, unit, kind, limits, retention class and processing."""

    name: str
    unit: str = ""
    kind: PointKind = "float"
    description: str = ""
    limits: Limits = Limits()
    retention: str = "standard"
    processing: Processing = Processing()

    @field_validator("name")
    @classmethod
    def _point_name(cls, v: str) -> str:
        if not POINT_NAME.match(v) or len(v) > 200:
            raise ValueError(f"{v!r} is not a point name: use dotted lowercase words like 'lasilla.asm.wind_speed'")
        return v

    @field_validator("retention")
    @classmethod
    def _known_class(cls, v: str) -> str:
        if v not in RETENTION_CLASSES:
            raise ValueError(f"unknown retention class {v!r}; use one of {', '.join(RETENTION_CLASSES)}")
        return v

    @model_validator(mode="after")
    def _numeric_only(self) -> PointConfig:
        numeric = self.kind in ("float", "int")
        if not numeric and (self.limits.low is not None or self.limits.high is not None):
            raise ValueError(f"limits only apply to numeric points, not to kind {self.kind!r}")
        if not numeric and (self.processing.deadband > 0 or self.processing.window is not None):
            raise ValueError(f"deadband and window filters only apply to numeric points, not to kind {self.kind!r}")
        return self


class Backoff(_Strict):
    """Retry/reconnect delays: `initial_s`, doubling up to `max_s`."""

    initial_s: float = Field(default=0.5, gt=0)
    max_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return float(min(self.initial_s * 2 ** max(0, min(attempt - 1, 30)), self.max_s))


class AsmSource(_Strict):
    """The Astronomical Site Monitor's HTTP JSON service, polled every `poll_period_s`."""

    name: str = "asm"
    url: str = Field(pattern=r"^https?://")
    poll_period_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=3.0, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    backoff: Backoff = Backoff(initial_s=0.5, max_s=5.0)
    max_data_age_s: float = Field(default=120.0, gt=0, description="older readings are UNCERTAIN")
    fields: dict[str, str] = Field(min_length=1, description="JSON field → point name")
    age_point: str | None = Field(default=None, description="point receiving the age of the reading, in s")


class OpcUaNode(_Strict):
    """One subscribed OPC-UA variable: its node id, the point it feeds and how it is sampled."""

    node_id: str = Field(min_length=1, description="e.g. 'ns=2;s=NTT.TCS.Altitude'")
    point: str
    sampling_interval_ms: int = Field(default=1000, ge=0, le=3_600_000)
    unit: str = ""
    deadband: float = Field(default=0.0, ge=0, description="absolute data-change deadband asked of the server")


class OpcUaSource(_Strict):
    """The telescope control system's OPC-UA server."""

    name: str = "tcs"
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    connected_point: str | None = Field(default=None, description="bool point: the session is up")
    timeout_s: float = Field(default=5.0, gt=0)
    reconnect: Backoff = Backoff(initial_s=1.0, max_s=30.0)
    nodes: list[OpcUaNode] = Field(min_length=1)


class HealthSource(_Strict):
    """A component that publishes its own health points (heartbeat ages, failure counts, lags)."""

    name: str = Field(min_length=1)
    points: list[str] = Field(min_length=1)
    expected_period_s: float = Field(default=60.0, gt=0)
    alive_point: str | None = Field(
        default=None, description="bool point the health collector sets: heard from within 2 periods"
    )


class Sources(_Strict):
    asm: list[AsmSource] = []
    opcua: list[OpcUaSource] = []
    health: list[HealthSource] = []


class QueueConfig(_Strict):
    """The "Mon Queue": the `mon.samples` stream's retention and how collectors batch into it.

    The stream is a buffer in front of the consumers, the archive is the history. Entries every
    consumer group has acknowledged are trimmed after `max_age_s`, or at once when the stream
    holds more than `max_mb`; entries a group has not acknowledged (a backlog behind a down
    archive) are kept whatever their age, until a hard cap (`hard_max_mb` or `max_len`) is hit:
    those trims are logged as errors and counted. With `keep_unacknowledged: false` every bound is
    hard (trimming ignores the consumer groups).
    """

    max_len: int = Field(default=200_000, gt=0, description="hard cap: entries kept at most")
    max_age_s: float = Field(default=600, gt=0, description="acknowledged entries are trimmed after this")
    max_mb: float = Field(default=64, gt=0, description="soft budget: above it, acknowledged entries are trimmed")
    hard_max_mb: float = Field(default=1024, gt=0, description="hard cap: above it, the oldest entries go regardless")
    keep_unacknowledged: bool = Field(default=True, description="soft bounds never trim unacknowledged entries")
    flush_interval_s: float = Field(default=0.2, gt=0, description="a collector sends at least this often")
    max_batch: int = Field(default=5000, gt=0, description="samples per bus entry")

    @model_validator(mode="after")
    def _ordered(self) -> QueueConfig:
        if self.hard_max_mb < self.max_mb:
            raise ValueError(f"hard_max_mb ({self.hard_max_mb}) must be >= max_mb ({self.max_mb})")
        return self

    def retention(self) -> StreamRetention:
        mib = 1024 * 1024
        return StreamRetention(
            max_len=self.max_len, max_age=timedelta(seconds=self.max_age_s),
            keep_unacknowledged=self.keep_unacknowledged,
            max_bytes=round(self.max_mb * mib) if self.keep_unacknowledged else None,
            hard_max_bytes=round(self.hard_max_mb * mib),
        )


class DispatcherConfig(_Strict):
    """The monitoring point dispatcher: archive writer and live fan-out.

    The dispatcher holds each point's samples until its archive block is complete (the data has moved
    past the block's end by `block_grace_s`), for at most `hold_s`, so that one archive row carries a
    whole block instead of one bus batch; the bus entries stay pending (unacknowledged) until the write
    that covers all their samples. Latest values are written every `latest_every_s` meanwhile.
    """

    group: str = "archive"
    live_group: str = "live"
    batch_size: int = Field(default=200, gt=0, description="bus entries per read (a backlog is read this many at once)")
    block_ms: int = Field(default=200, gt=0)
    min_idle_ms: int = Field(default=10_000, ge=0, description="a dead dispatcher's entries are taken after this")
    flush_aggregates_every_s: float = Field(default=30.0, gt=0)
    hold_s: float = Field(default=30.0, ge=0, le=3600,
                          description="longest a sample waits for its block to fill; 0 writes every read at once")
    block_grace_s: float = Field(default=2.0, ge=0, description="late data a complete block still waits for")
    max_held_samples: int = Field(default=2_000_000, gt=0,
                                  description="memory bound: beyond it everything held is written at once")
    max_write_samples: int = Field(default=1_000_000, gt=0, description=(
        "samples in one archive write at most: a backlog is written in writes of this size, so the "
        "dispatcher's memory does not grow with it (250,000 halved the Cassandra ingest rate: each write "
        "ramps its requests in flight up and down again)"))
    latest_every_s: float = Field(default=1.0, gt=0, description="how often held samples update the latest values")
    live_fanout: bool = Field(default=False, description=(
        "also re-publish every batch on the live.samples pub/sub channel (group live_group); the HMI "
        "reads mon.samples itself and does not need it"))


class MonitoringConfig(_Strict):
    """The whole monitoring configuration of one site."""

    points: list[PointConfig] = Field(min_length=1)
    sources: Sources = Sources()
    queue: QueueConfig = QueueConfig()
    dispatcher: DispatcherConfig = DispatcherConfig()

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringConfig:
        names = [p.name for p in self.points]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"points defined twice: {', '.join(dup)}")
        by_name = {p.name: p for p in self.points}
        problems: list[str] = []
        fed: dict[str, str] = {}

        def feeds(point: str | None, source: str, *, kind: PointKind | None = None, unit: str | None = None) -> None:
            if point is None:
                return
            p = by_name.get(point)
            if p is None:
                problems.append(f"source {source} feeds undefined point {point!r}")
                return
            if point in fed:
                problems.append(f"point {point!r} is fed by both {fed[point]} and {source}")
            fed[point] = source
            if kind is not None and p.kind != kind:
                problems.append(f"source {source} feeds {point!r} with {kind} values but the point is {p.kind}")
            if unit is not None and unit != p.unit:
                problems.append(f"source {source} gives {point!r} in {unit!r} but the point is in {p.unit!r}")

        for a in self.sources.asm:
            for point in a.fields.values():
                feeds(point, f"asm {a.name}")
            feeds(a.age_point, f"asm {a.name}", kind="float", unit="s")
        for o in self.sources.opcua:
            feeds(o.connected_point, f"opcua {o.name}", kind="bool")
            for n in o.nodes:
                feeds(n.point, f"opcua {o.name} node {n.node_id}", unit=n.unit)
        for h in self.sources.health:
            for point in h.points:
                feeds(point, f"health {h.name}")
            feeds(h.alive_point, f"health collector for {h.name}", kind="bool")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def point(self, name: str) -> PointConfig:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"no monitoring point {name!r}")

    def retention_classes(self) -> dict[str, str]:
        """Point → archive retention class, what `Archive.register_points` takes."""
        return {p.name: p.retention for p in self.points}


def load_site(path: Path | str | None = None) -> SiteConfig:
    """The observing site from `path`, or the shipped `site.yaml` (La Silla NTT)."""
    return load_model(path if path is not None else default_path("site.yaml"), SiteConfig)


def load_monitoring(path: Path | str | None = None) -> MonitoringConfig:
    """The monitoring configuration from `path`, or the shipped La Silla / NTT defaults."""
    return load_model(path if path is not None else default_path("monitoring.yaml"), MonitoringConfig)


def retention_classes(config: MonitoringConfig | None = None) -> dict[str, str]:
    """Point → retention class for the archive (of the shipped defaults when no config is given)."""
    return (config if config is not None else load_monitoring()).retention_classes()
