"""Configuration of the GCN alert consumer: Kafka topics, what a notice must satisfy, and the ToO OB it becomes."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config_db.loader import default_path, load_model

# Kafka's legal topic characters and length.
TOPIC_NAME = r"^[A-Za-z0-9._-]{1,249}$"
# librdkafka properties the consumer sets itself: offsets are committed only after the OB is stored.
RESERVED_PROPERTIES = frozenset(
    {
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.secret",
    }
)
Scalar = str | int | float | bool


class NoticeKind(StrEnum):
    """The JSON notice schemas the consumer understands (nasa-gcn/gcn-schema)."""

    SWIFT_BAT_GUANO = "swift_bat_guano"
    EINSTEIN_PROBE_WXT = "einstein_probe_wxt"
    ICECUBE_TRACK = "icecube_track"
    ICECUBE_LVK_NU_TRACK = "icecube_lvk_nu_track"
    IGWN_ALERT = "igwn_alert"
    SVOM = "svom"


class TopicCriteria(BaseModel):
    """One subscribed topic: its notice schema and the thresholds a notice on it must meet.

    A threshold left unset is not applied; a threshold set for a quantity the notice does not carry rejects it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: NoticeKind
    max_far_hz: float | None = Field(default=None, gt=0, description="false-alarm rate the team accepts")
    min_snr: float | None = Field(default=None, gt=0, description="image (else rate) signal-to-noise")
    max_pvalue: float | None = Field(default=None, gt=0, le=1)
    min_p_astro: float | None = Field(default=None, ge=0, le=1)
    max_error_radius_deg: float | None = Field(default=None, gt=0, le=180, description="overrides the global limit")
    priority: int | None = Field(default=None, ge=1, le=10, description="overrides the ToO OB's priority")


class GcnCriteria(BaseModel):
    """What every notice must satisfy, whatever its topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_radius_deg: float = Field(
        default=0.05, gt=0, le=180, description="SOXS acquires in a 3.5′ field: a 3′ error circle still fits"
    )
    max_notice_age_h: float | None = Field(
        default=24.0, gt=0, description="a notice about an older trigger (e.g. replayed after an outage) is refused"
    )


class ToOTemplate(BaseModel):
    """The ToO OB a notice becomes: exposure, priority and constraints of an NTT/SOXS GRB-afterglow follow-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exposure_s: float = Field(default=1800.0, gt=0, le=12 * 3600)
    priority: int = Field(default=1, ge=1, le=10)
    max_airmass: float = Field(default=2.0, ge=1, le=10)
    twilight: Literal["astronomical", "nautical", "civil"] = "nautical"
    min_moon_separation_deg: float = Field(default=20.0, ge=0, le=180)
    max_moon_illumination: float = Field(default=1.0, ge=0, le=1)
    max_seeing_arcsec: float = Field(default=2.0, gt=0, le=10)
    programme: str = Field(default="SOXS-ToO-GCN", min_length=1, max_length=64)
    time_share: Literal["GTO", "ESO"] = "GTO"
    lifetime_h: float = Field(default=48.0, gt=0, description="the OB's expiry after the notice")


class KafkaConfig(BaseModel):
    """How the consumer reaches GCN Kafka. Credentials come from the environment (GcnSettings), never from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: Literal["gcn.nasa.gov", "test.gcn.nasa.gov", "dev.gcn.nasa.gov"] = "gcn.nasa.gov"
    group_id: str = Field(
        default="skyops-ntt-gcn", min_length=1, max_length=200, description="stable, so offsets survive restarts"
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    poll_timeout_s: float = Field(default=1.0, gt=0, le=60)
    max_batch: int = Field(default=50, ge=1, le=10_000)
    retry_backoff_s: float = Field(default=5.0, gt=0, description="wait after a failed store or bus write")
    properties: dict[str, Scalar] = Field(
        default_factory=dict, description="extra librdkafka properties, e.g. bootstrap.servers of a local broker"
    )

    @field_validator("properties")
    @classmethod
    def _not_reserved(cls, properties: dict[str, Scalar]) -> dict[str, Scalar]:
        clash = sorted(RESERVED_PROPERTIES & properties.keys())
        if clash:
            raise ValueError(f"{', '.join(clash)} are set by the consumer (group_id, manual commits, environment)")
        return properties


class GcnConfig(BaseModel):
    """The whole GCN consumer configuration (config_db/defaults/gcn.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kafka: KafkaConfig = KafkaConfig()
    criteria: GcnCriteria = GcnCriteria()
    too: ToOTemplate = ToOTemplate()
    topics: dict[str, TopicCriteria] = Field(min_length=1)

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, topics: dict[str, TopicCriteria]) -> dict[str, TopicCriteria]:
        bad = [name for name in topics if not re.match(TOPIC_NAME, name)]
        if bad:
            raise ValueError(f"not Kafka topic names: {', '.join(bad)}")
        return topics


class GcnSettings(BaseSettings):
    """Environment of the GCN consumer (SKYOPS_GCN_ prefix): the GCN client credentials and the config file."""

    model_config = SettingsConfigDict(env_prefix="SKYOPS_GCN_", extra="forbid", frozen=True)

    client_id: str | None = Field(default=None, description="GCN Kafka client credentials (gcn.nasa.gov/quickstart)")
    client_secret: SecretStr | None = None
    config_file: Path | None = Field(default=None, description="gcn YAML; absent → config_db defaults")


def load_gcn_config(path: Path | str | None = None) -> GcnConfig:
    """The GCN consumer configuration from `path`, or the shipped default."""
    return load_model(path if path is not None else default_path("gcn.yaml"), GcnConfig)
