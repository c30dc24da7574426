"""The composition root on real servers: Redis, Cassandra and PostgreSQL all answer the health probe."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from deploy.factory import open_platform
from skyops.archive.cassandra import CassandraArchive
from skyops.settings import Settings

pytestmark = pytest.mark.integration


async def test_distributed_platform_is_healthy(
    tmp_path: Path, redis_url: str, cassandra_hosts: list[str], postgres_url: str
) -> None:
    settings = Settings(var_dir=tmp_path, redis_url=redis_url, cassandra_hosts=cassandra_hosts,
                        cassandra_keyspace=f"t_{uuid.uuid4().hex[:12]}", sql_url=postgres_url)
    platform = await open_platform(settings)
    try:
        assert isinstance(platform.archive, CassandraArchive)
        assert platform.mode == "distributed"
        report = await platform.health()
        assert report["components"] == {"bus": "ok", "archive": "ok", "opdb": "ok"}
    finally:
        await platform.archive.drop_keyspace()  # type: ignore[attr-defined]
        await platform.close()
