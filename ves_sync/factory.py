"""Wiring of the VES sync: its configuration and the `build` function `deploy` calls."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.orm import Session, sessionmaker

from config_db.monitoring import SiteConfig, load_site
from skyops.bus import Bus, StreamRetention
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.timeutil import AcceleratedClock, Clock
from ves_sync.consumer import VesSyncConsumer
from ves_sync.emulator.seed import default_seed
from ves_sync.executor import ExecutorSettings, Pace, ScaledPace, VesExecutor
from ves_sync.p2 import P2Account, P2Client, register_environment
from ves_sync.service import RetryPolicy, VesSyncService
from ves_sync.store import VesSyncStore
from ves_sync.telescope import TelescopeClient

log = logging.getLogger(__name__)

ESO_ENVIRONMENTS = ("production", "production_lasilla", "demo")
EMULATOR_PASSWORD = "p2-emulator"


class VesSyncConfig(BaseSettings):
    """Where P2 is, who the sync logs in as, and how patient it is (environment: SKYOPS_VES_*)."""

    model_config = SettingsConfigDict(env_prefix="SKYOPS_VES_", extra="forbid", frozen=True)

    environment: str = Field(default="local", description="an ESO environment, or a name for api_url/login_url")
    api_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8081/api/v1 for the emulator")
    login_url: str | None = None
    owner_username: str = "soxs"
    owner_password: SecretStr = SecretStr(EMULATOR_PASSWORD)
    operator_username: str = "operator"
    operator_password: SecretStr = SecretStr(EMULATOR_PASSWORD)
    container_id: int | None = Field(default=None, gt=0,
                                     description="the SOXS container for the night's OBs (emulator: its SOXS run)")
    instrument: str = "SOXS"
    consumer_name: str = "ves_sync-1"
    health_interval_s: float = Field(default=10.0, gt=0)
    retry_attempts: int = Field(default=4, ge=1)
    retry_initial_wait_s: float = Field(default=0.2, ge=0)
    retry_max_wait_s: float = Field(default=5.0, ge=0)
    samples_max_len: int = Field(default=100_000, gt=0)
    samples_max_age: timedelta = timedelta(hours=6)

    @model_validator(mode="after")
    def _urls(self) -> VesSyncConfig:
        if self.environment in ESO_ENVIRONMENTS:
            if self.api_url or self.login_url:
                raise ValueError(f"environment {self.environment!r} is ESO's own: api_url/login_url must be unset")
            if self.container_id is None:
                raise ValueError(f"environment {self.environment!r} needs the container_id of the SOXS container")
            for who, secret in (("owner", self.owner_password), ("operator", self.operator_password)):
                if secret.get_secret_value() == EMULATOR_PASSWORD:
                    raise ValueError(f"the {who} password for ESO's P2 must be set (not the emulator's)")
        elif not (self.api_url and self.login_url):
            raise ValueError(f"environment {self.environment!r} is local: set api_url and login_url")
        elif self.container_id is None and self.owner_username not in {u.username for u in default_seed().users}:
            raise ValueError(f"owner {self.owner_username!r} is not an emulator account: set container_id")
        return self

    @property
    def effective_container_id(self) -> int:
        if self.container_id is not None:
            return self.container_id
        return default_seed().run_of(self.owner_username).container_id


def build_service(config: VesSyncConfig, *, sessions: sessionmaker[Session], clock: Clock) -> VesSyncService:
    _register(config)
    owner = P2Client(P2Account(config.environment, config.owner_username, config.owner_password.get_secret_value()))
    operator = P2Client(
        P2Account(config.environment, config.operator_username, config.operator_password.get_secret_value())
    )
    retry = RetryPolicy(attempts=config.retry_attempts, initial_wait_s=config.retry_initial_wait_s,
                        max_wait_s=config.retry_max_wait_s)
    return VesSyncService(owner=owner, operator=operator, store=VesSyncStore(sessions),
                          container_id=config.effective_container_id, instrument=config.instrument, clock=clock,
                          retry=retry)


def build(config: VesSyncConfig, *, bus: Bus, sessions: sessionmaker[Session], clock: Clock) -> VesSyncConsumer:
    """The VES sync consumer, ready to `run(stop)`; the operational DB must already be migrated."""
    retention = StreamRetention(max_len=config.samples_max_len, max_age=config.samples_max_age)
    return VesSyncConsumer(bus=bus, service=build_service(config, sessions=sessions, clock=clock), clock=clock,
                           samples_retention=retention, consumer_name=config.consumer_name,
                           health_interval_s=config.health_interval_s)


def _register(config: VesSyncConfig) -> None:
    if config.environment not in ESO_ENVIRONMENTS:
        assert config.api_url is not None and config.login_url is not None
        register_environment(config.environment, config.api_url, config.login_url)


def build_executor(config: VesSyncConfig, *, telescope_endpoint: str, clock: Clock, pace: Pace,
                   sessions: sessionmaker[Session] | None = None, site: SiteConfig | None = None,
                   open_dome: bool = False, poll_s: float = 10.0) -> VesExecutor:
    """The VES executor (the operator's BOB), ready to `run(stop)`: it logs in to P2 as the operator.

    `clock` and `pace` must agree (both real, both `speed` times faster, or a FakeClock and its drive);
    the telescope must run on the same time. Its unsent execution reports are kept in the operational DB
    of `sessions` (migrated already); without it, in an in-memory database that a crash loses.
    """
    _register(config)
    if sessions is None:
        log.warning("VES executor without an operational DB: unsent execution reports will not survive a crash")
        engine = make_engine("sqlite://")
        upgrade(engine)
        sessions = make_sessionmaker(engine)
    site = site or load_site()
    operator = P2Client(
        P2Account(config.environment, config.operator_username, config.operator_password.get_secret_value())
    )
    settings = ExecutorSettings(instrument=config.instrument, latitude_deg=site.latitude_deg,
                                longitude_deg=site.longitude_deg, open_dome=open_dome, poll_s=poll_s)
    return VesExecutor(p2=operator, telescope=TelescopeClient(telescope_endpoint), outbox=VesSyncStore(sessions),
                       clock=clock, pace=pace, settings=settings)


def executor_time(speed: float) -> tuple[AcceleratedClock, ScaledPace]:
    """A clock and a pace running `speed` times faster than the wall clock (1: real time)."""
    return AcceleratedClock(datetime.now(UTC), speed), ScaledPace(speed)
