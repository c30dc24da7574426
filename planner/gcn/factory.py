"""Wiring of the GCN consumer (`skyops run gcn`): Kafka source, OB store, bus and the trigger service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from config_db.gcn import GcnConfig, GcnSettings, load_gcn_config
from planner.config import SchedulerConfig, load_site
from planner.gcn.consumer import GcnConsumer, NoticeSource
from planner.gcn.kafka import GcnKafkaSource
from planner.gcn.service import GcnTriggerService, NightSource
from planner.gcn.store import GcnObIndex
from planner.store import ObStore
from skyops.bus import Bus
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.settings import Settings
from skyops.timeutil import Clock


class GcnConfigError(ValueError):
    """The consumer cannot be built as configured; the message says what to set."""


@dataclass
class GcnTriggers:
    """The GCN consumer's parts, built but not started."""

    service: GcnTriggerService
    consumer: GcnConsumer
    source: NoticeSource
    engine: Engine

    async def run(self, stop: asyncio.Event) -> None:
        """Consume notices until `stop` is set."""
        await self.consumer.run(stop)

    async def lag(self) -> int:
        """Notices waiting on the broker for this consumer (for `skyops status`)."""
        return await asyncio.to_thread(self.source.lag)

    def close(self) -> None:
        self.source.close()
        self.engine.dispose()


def kafka_source(config: GcnConfig, gcn: GcnSettings) -> GcnKafkaSource:
    """The GCN Kafka consumer: GCN credentials, or a broker of our own named in `kafka.properties`."""
    local = "bootstrap.servers" in config.kafka.properties
    if gcn.client_id is None and not local:
        raise GcnConfigError(
            "SKYOPS_GCN_CLIENT_ID and SKYOPS_GCN_CLIENT_SECRET must be set (gcn.nasa.gov), "
            "or kafka.properties must name bootstrap.servers of a local broker"
        )
    secret = gcn.client_secret.get_secret_value() if gcn.client_secret is not None else None
    return GcnKafkaSource.connect(config.kafka, list(config.topics), client_id=gcn.client_id, client_secret=secret)


def build(
    settings: Settings,
    *,
    bus: Bus,
    clock: Clock,
    gcn: GcnSettings | None = None,
    config: GcnConfig | None = None,
    source: NoticeSource | None = None,
    site_path: Path | None = None,
    scheduler: SchedulerConfig | None = None,
    nights: NightSource | None = None,
) -> GcnTriggers:
    """The GCN consumer on the operational DB of `settings` (migrated here) and the given bus."""
    gcn = gcn or GcnSettings()
    config = config or load_gcn_config(gcn.config_file)
    site = load_site(site_path)
    engine = make_engine(settings.effective_sql_url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        service = GcnTriggerService(
            config=config,
            store=ObStore(sessions, site=site),
            index=GcnObIndex(sessions),
            bus=bus,
            site=site,
            scheduler=scheduler or SchedulerConfig(),
            clock=clock,
            nights=nights,
        )
        source = source or kafka_source(config, gcn)
    except BaseException:
        engine.dispose()
        raise
    consumer = GcnConsumer(
        source,
        service,
        max_batch=config.kafka.max_batch,
        poll_timeout_s=config.kafka.poll_timeout_s,
        retry_backoff_s=config.kafka.retry_backoff_s,
    )
    return GcnTriggers(service=service, consumer=consumer, source=source, engine=engine)
