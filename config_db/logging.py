"""Configuration of the logging service: priority filters, intake keys per source, intake limits."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from config_db.loader import default_path, load_model
from skyops.bus import StreamRetention
from skyops.records import parse_level

SOURCE_NAME = r"^[a-z][a-z0-9_.-]{0,99}$"


def _level(value: object) -> int:
    try:
        return parse_level(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(str(exc)) from None


Level = Annotated[int, BeforeValidator(_level)]


class LogFilters(BaseModel):
    """Minimum levels: per component where records are made, per source where they are archived.

    Component names are logger names; the longest configured dotted prefix wins, so
    `collectors.asm: WARNING` also covers `collectors.asm.poller`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_level: Level = Field(default=0, description="minimum level of a source not listed")
    sources: dict[str, Level] = Field(default_factory=dict, description="central filter, per source")
    default_component_level: Level = Field(default=0, description="minimum level of a component not listed")
    components: dict[str, Level] = Field(default_factory=dict, description="filter at the source, per component")

    def source_level(self, source: str) -> int:
        return self.sources.get(source, self.default_level)

    def component_level(self, component: str) -> int:
        name = component
        while True:
            if name in self.components:
                return self.components[name]
            if "." not in name:
                return self.default_component_level
            name = name.rpartition(".")[0]


class HttpIntakeConfig(BaseModel):
    """JSON-lines intake over HTTP: one key per source, and the limits a batch must respect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: dict[str, SecretStr] = Field(default_factory=dict, description="source name → its intake key")
    max_line_bytes: int = Field(default=64 * 1024 + 1024, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    records_per_entry: int = Field(default=1000, gt=0, description="log records per bus entry")

    @field_validator("keys")
    @classmethod
    def _keys(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        seen: dict[str, str] = {}
        for source, key in keys.items():
            if not re.match(SOURCE_NAME, source):
                raise ValueError(f"source name {source!r} must be lowercase words like 'planner' or 'ves_sync'")
            secret = key.get_secret_value()
            if len(secret) < 16:
                raise ValueError(f"the key of source {source!r} is shorter than 16 characters")
            if secret in seen:
                raise ValueError(f"sources {seen[secret]!r} and {source!r} share one key")
            seen[secret] = source
        return keys


class SyslogConfig(BaseModel):
    """Syslog intake (RFC 5424 and RFC 3164) for devices and firmware."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    udp_port: int = Field(default=5514, ge=0, le=65535)
    tcp_port: int = Field(default=5514, ge=0, le=65535)
    source: str = Field(default="devices", pattern=SOURCE_NAME, description="source of hosts not listed")
    hosts: dict[str, str] = Field(default_factory=dict, description="sending host → source name")
    max_message_bytes: int = Field(default=64 * 1024, gt=0)


class HandlerConfig(BaseModel):
    """The `logging` handler of every process: how much it buffers and how it batches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_buffer: int = Field(default=50_000, gt=0, description="records held while the bus is unreachable")
    batch_size: int = Field(default=500, gt=0)
    flush_interval: timedelta = Field(default=timedelta(milliseconds=200))
    retry_interval: timedelta = Field(default=timedelta(seconds=1))
    caller_info: bool = Field(
        default=False,
        description="compute each record's file, line, function and process id; the archive stores none of "
                    "them, and leaving them out saves about a third of every logging call in the process",
    )


class LoggingConfig(BaseModel):
    """Everything the logging service reads from the configuration database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filters: LogFilters = Field(default_factory=LogFilters)
    http: HttpIntakeConfig = Field(default_factory=HttpIntakeConfig)
    syslog: SyslogConfig = Field(default_factory=SyslogConfig)
    handler: HandlerConfig = Field(default_factory=HandlerConfig)
    retention: StreamRetention = Field(
        default_factory=lambda: StreamRetention(max_len=2_000_000, max_age=timedelta(hours=24))
    )


def load_logging_config(path: Path | str | None = None) -> LoggingConfig:
    """The logging configuration from `path`, or the shipped defaults."""
    return load_model(path if path is not None else default_path("logging.yaml"), LoggingConfig)
