"""Settings from the environment (SKYOPS_ prefix); an absent server URL selects the embedded backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me"


class Settings(BaseSettings):
    """Where skyops finds its servers. Built once by `deploy`, never at import time."""

    model_config = SettingsConfigDict(env_prefix="SKYOPS_", extra="forbid", env_nested_delimiter="__")

    environment: Literal["development", "test", "production"] = "development"
    var_dir: Path = Field(default=Path("var"), description="state of the embedded backends")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="the services' event loop: uvloop (faster I/O) or the standard asyncio loop"
    )

    redis_url: str | None = Field(default=None, description="redis://host:port/db; absent → embedded fakeredis")

    cassandra_hosts: Annotated[list[str] | None, NoDecode] = Field(
        default=None, description="contact points, comma-separated; absent → SQLite archive"
    )
    cassandra_port: int = 9042
    cassandra_keyspace: str = Field(default="skyops", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    cassandra_replication_factor: int = Field(default=1, ge=1)
    cassandra_max_in_flight: int = Field(default=256, ge=1, description="bound on concurrent requests")

    sql_url: str | None = Field(default=None, description="SQLAlchemy URL; absent → SQLite under var_dir")

    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    marshall_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="comma-separated keys of the Marshall REST API; none → API not served"
    )

    @field_validator("marshall_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @field_validator("cassandra_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: object) -> object:
        if isinstance(v, str):
            hosts = [h.strip() for h in v.split(",") if h.strip()]
            return hosts or None
        return v

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "production" and self.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
            raise ValueError("SKYOPS_SECRET_KEY must be set to a real secret in production")
        return self

    @property
    def archive_path(self) -> Path:
        return self.var_dir / "archive.sqlite3"

    @property
    def effective_sql_url(self) -> str:
        return self.sql_url or f"sqlite:///{(self.var_dir / 'skyops.sqlite3').as_posix()}"
