"""Wiring of the alarm service: what `deploy` calls to build the supervisor, the dispatcher and the public API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alarms.api import AlarmService
from alarms.config import AlarmsConfig, load_alarms
from alarms.dispatcher import AlarmDispatcher, NotificationService
from alarms.domain.engine import AlarmEngine
from alarms.domain.notify import NotificationPolicy, Outbox
from alarms.notify import EmailSender, Sender, SmtpSettings, WebhookSender
from alarms.store import AlarmStateStore
from alarms.supervisor import AlarmSupervisor, SupervisorOptions
from skyops.archive.port import Archive
from skyops.bus import Bus
from skyops.records import AlarmSeverity
from skyops.timeutil import US_PER_S, Clock


class AlarmSettings(BaseSettings):
    """Environment settings of the alarm service (SKYOPS_ALARMS_ prefix)."""

    model_config = SettingsConfigDict(env_prefix="SKYOPS_ALARMS_", extra="forbid")

    rules_file: Path | None = Field(default=None, description="alarms YAML; absent → config_db defaults")
    state_file: Path | None = Field(default=None, description="JSON mirror of alarm state (embedded mode)")
    consumer: str = "supervisor-1"
    tick_s: float = Field(default=1.0, gt=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, gt=0, lt=65536)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0)


def build_engine(config: AlarmsConfig, clock: Clock) -> AlarmEngine:
    return AlarmEngine(config.build_rules(), started=clock.now(), max_shelve=timedelta(hours=config.max_shelve_h),
                       max_future=timedelta(seconds=config.max_future_s))


def build_supervisor(
    bus: Bus, clock: Clock, *, config: AlarmsConfig | None = None, settings: AlarmSettings | None = None,
) -> AlarmSupervisor:
    settings = settings or AlarmSettings()
    config = config or load_alarms(settings.rules_file)
    store = AlarmStateStore(bus.redis, mirror=settings.state_file)
    options = SupervisorOptions(consumer=settings.consumer, tick_s=settings.tick_s)
    return AlarmSupervisor(build_engine(config, clock), bus, store, clock, options)


def build_notifications(
    bus: Bus, clock: Clock, http: httpx.AsyncClient, *, config: AlarmsConfig, settings: AlarmSettings,
) -> NotificationService:
    n = config.notifications
    policy = NotificationPolicy(
        min_severity=AlarmSeverity[n.min_severity], email_to=n.email_to,
        webhook_urls=tuple(str(u) for u in n.webhook_urls), escalation_to=n.escalation_to,
        escalation_delay_us=round(n.escalation_delay_s * US_PER_S),
    )
    smtp = SmtpSettings(host=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_username,
                        password=settings.smtp_password, starttls=settings.smtp_starttls, sender=n.email_from)
    senders: dict[str, Sender] = {"email": EmailSender(smtp), "webhook": WebhookSender(http)}
    outbox = Outbox(initial_us=round(n.retry_initial_s * US_PER_S), max_us=round(n.retry_max_s * US_PER_S))
    return NotificationService(policy, outbox, senders, bus.redis, clock)


def build_dispatcher(
    bus: Bus, archive: Archive, clock: Clock, http: httpx.AsyncClient, *, config: AlarmsConfig | None = None,
    settings: AlarmSettings | None = None, consumer: str = "dispatcher-1",
) -> AlarmDispatcher:
    """The caller owns `http` (an httpx.AsyncClient) and closes it on shutdown."""
    settings = settings or AlarmSettings()
    config = config or load_alarms(settings.rules_file)
    notifications = build_notifications(bus, clock, http, config=config, settings=settings)
    return AlarmDispatcher(bus, archive, notifications, consumer=consumer)


def build_service(bus: Bus, archive: Archive | None, clock: Clock, *, timeout_s: float = 5.0) -> AlarmService:
    return AlarmService(bus, AlarmStateStore(bus.redis), archive, clock, timeout_s=timeout_s)
