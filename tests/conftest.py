"""Fixtures shared by every test: real-server addresses (a missing server fails, never skips)."""

from __future__ import annotations

import os

import pytest

# `make test` starts the servers through deploy/ scripts and exports these; a test that needs one and
# finds it unset fails with the reason instead of skipping, so a broken install step cannot hide.
SERVER_ENV = {
    "redis": "SKYOPS_TEST_REDIS_URL",
    "cassandra": "SKYOPS_TEST_CASSANDRA_HOSTS",
    "postgres": "SKYOPS_TEST_SQL_URL",
}


def _server_address(kind: str) -> str:
    name = SERVER_ENV[kind]
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{kind} is needed but {name} is unset: run `make services-up` and export the URLs "
            f"(`make test` does both)",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server started by deploy/scripts/redis.sh."""
    return _server_address("redis")


@pytest.fixture(scope="session")
def cassandra_hosts() -> list[str]:
    """Contact points of the real Cassandra node started by deploy/scripts/cassandra.sh."""
    return [h.strip() for h in _server_address("cassandra").split(",") if h.strip()]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the real PostgreSQL database started by deploy/scripts/postgres.sh."""
    return _server_address("postgres")
