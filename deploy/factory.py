"""The composition root: builds the kernel's adapters from settings (embedded or distributed)."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter
from sqlalchemy import Engine, text

from alarms.factory import build_service as build_alarm_service
from config_db.logging import load_logging_config
from config_db.monitoring import retention_classes
from hmi_api.auth import Authenticator, ensure_initial_admin
from hmi_api.graphql.context import HmiServices
from hmi_api.live import LiveFeeds
from hmi_api.marshall import marshall_router
from hmi_api.obchanges import replan_if_planned
from logging_svc.http_intake import HttpIntake
from logging_svc.http_intake import make_router as make_log_router
from planner.config import load_site
from planner.marshall import MarshallApi
from planner.store import ObStore
from skyops.archive.cassandra import CassandraArchive
from skyops.archive.port import Archive
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus, StreamRetention, open_redis
from skyops.codec import encode_logs
from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade
from skyops.opdb.users import UserStore
from skyops.records import LogRecord
from skyops.settings import Settings
from skyops.streams import LOG_RECORDS
from skyops.timeutil import Clock, SystemClock
from ves_sync.store import VesSyncStore

log = logging.getLogger(__name__)


@dataclass
class Platform:
    """The opened kernel: bus, archive and operational database, shared by the services of one process."""

    settings: Settings
    clock: Clock
    redis: aioredis.Redis
    bus: Bus
    archive: Archive
    engine: Engine
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "distributed" if self.settings.redis_url or self.settings.cassandra_hosts else "embedded"

    async def health(self) -> dict[str, Any]:
        """Each backend answers a cheap request; the platform is healthy when all of them do."""
        checks: dict[str, str] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                await asyncio.wait_for(probe, timeout=5)
                checks[name] = "ok"
            except Exception as exc:  # a health check reports every failure instead of raising
                checks[name] = f"error: {type(exc).__name__}: {exc}"

        await check("bus", self.redis.ping())
        await check("archive", self.archive.ping())
        await check("opdb", asyncio.to_thread(_ping_sql, self.engine))
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "degraded", "mode": self.mode, "time": self.clock.now().isoformat(),
                "components": checks}

    async def close(self) -> None:
        await self.archive.close()
        await self.redis.aclose()
        self.engine.dispose()


async def build_hmi_services(platform: Platform) -> tuple[HmiServices, str | None]:
    """The HMI's collaborators; on a first start also the generated admin password (to print once)."""
    sessions = make_sessionmaker(platform.engine)
    users = UserStore(sessions)
    auth = Authenticator(users=users, sessions=sessions, clock=platform.clock)
    password = await asyncio.to_thread(ensure_initial_admin, users, now=platform.clock.now())
    retention = StreamRetention(max_len=1_000_000, max_age=timedelta(days=2))
    host = socket.gethostname()

    async def audit(user: str, action: str, details: dict[str, str]) -> None:
        # Every user action is a log record of source "hmi", component "audit": it reaches the log archive.
        record = LogRecord(ts=platform.clock.now(), level=logging.INFO, source="hmi", component="audit", host=host,
                           message=f"{user}: {action}", attributes={"user": user, "action": action, **details})
        await platform.bus.publish(LOG_RECORDS, encode_logs([record]), retention=retention)

    live = LiveFeeds.on(platform.bus)
    alarm_service = build_alarm_service(platform.bus, platform.archive, platform.clock)
    site = load_site()
    return HmiServices(auth=auth, clock=platform.clock, audit=audit, archive=platform.archive, live=live,
                       alarms=alarm_service, bus=platform.bus, obs=ObStore(sessions, site=site), site=site,
                       ves=VesSyncStore(sessions)), password


def build_marshall(platform: Platform) -> APIRouter | None:
    """The Marshall REST API over the planner's OB store, when keys are configured."""
    keys = platform.settings.marshall_keys
    if not keys:
        log.info("no SKYOPS_MARSHALL_KEYS: the Marshall REST API is not served")
        return None
    store = ObStore(make_sessionmaker(platform.engine), site=load_site())

    async def on_change(ob_id: int, reason: str) -> None:
        await replan_if_planned(platform.bus, ob_id=ob_id, reason=reason, now=platform.clock.now())

    return marshall_router(MarshallApi(store, platform.clock), keys, on_change=on_change)


def build_log_intake(platform: Platform) -> APIRouter:
    """The HTTP log intake (JSON lines, a key per source from config_db) for the HMI app to mount."""
    config = load_logging_config()
    intake = HttpIntake(platform.bus, config.http, retention=config.retention, clock=platform.clock)
    return make_log_router(intake)


def _ping_sql(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def build_archive(settings: Settings) -> Archive:
    """Cassandra when contact points are configured, else the embedded SQLite file under var/."""
    if settings.cassandra_hosts:
        return CassandraArchive(
            settings.cassandra_hosts,
            port=settings.cassandra_port,
            keyspace=settings.cassandra_keyspace,
            replication_factor=settings.cassandra_replication_factor,
            max_in_flight=settings.cassandra_max_in_flight,
        )
    return SqliteArchive(settings.archive_path)


async def open_platform(settings: Settings, *, clock: Clock | None = None, migrate: bool = True) -> Platform:
    """Open every backend the settings name (embedded ones for whatever is absent) and migrate the DB.

    `migrate=False` is for readers (`skyops status`) that must not change a schema others run on.
    """
    clock = clock or SystemClock()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    redis = open_redis(settings.redis_url)
    archive = build_archive(settings)
    archive.register_points(retention_classes())  # the configured monitoring points (config_db defaults)
    await archive.open()
    engine = make_engine(settings.effective_sql_url)
    if migrate:
        await asyncio.to_thread(upgrade, engine)
    log.info("platform open: bus=%s archive=%s opdb=%s", settings.redis_url or "embedded",
             type(archive).__name__, engine.url.render_as_string(hide_password=True))
    return Platform(settings=settings, clock=clock, redis=redis, bus=Bus(redis, clock=clock), archive=archive,
                    engine=engine)
