"""Fixtures of the VES-sync integration tests: the P2 emulator on a free loopback port, reached with real p2api."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.timeutil import FakeClock
from tests.unit.ves_sync.builders import DUSK
from ves_sync.emulator import EmulatorServer, default_seed
from ves_sync.p2 import P2Account, P2Client, register_environment
from ves_sync.service import RetryPolicy, VesSyncService
from ves_sync.store import VesSyncStore

PASSWORD = "p2-emulator"
SOXS_CONTAINER = default_seed().run_of("soxs").container_id


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    server = EmulatorServer(tmp_path / "p2-emulator").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def environment(emulator: EmulatorServer) -> str:
    name = f"skyops-test-{emulator.port}"
    register_environment(name, emulator.api_url, emulator.login_url)
    return name


def client(environment: str, username: str) -> P2Client:
    return P2Client(P2Account(environment, username, PASSWORD))


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DUSK)


class Sleeps:
    """Records the backoff waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_service(environment: str, sessions: sessionmaker[Session], clock: FakeClock, sleeps: Sleeps,
                 operator: P2Client | None = None) -> VesSyncService:
    return VesSyncService(
        owner=client(environment, "soxs"), operator=operator or client(environment, "operator"),
        store=VesSyncStore(sessions), container_id=SOXS_CONTAINER, instrument="SOXS", clock=clock,
        retry=RetryPolicy(attempts=3, initial_wait_s=0.05, max_wait_s=0.2), sleep=sleeps,
    )


@pytest.fixture
def service(environment: str, sessions: sessionmaker[Session], clock: FakeClock, sleeps: Sleeps) -> VesSyncService:
    return make_service(environment, sessions, clock, sleeps)
