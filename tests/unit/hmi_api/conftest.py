"""Builders for HMI tests: an operational DB in a temp dir, users of each group, an app with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from hmi_api.app import create_app
from hmi_api.auth import Authenticator
from hmi_api.graphql.context import HmiServices
from hmi_api.live import LiveFeeds
from planner.config import load_site
from planner.store import ObStore
from skyops.bus import Bus
from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate, UserStore
from skyops.timeutil import FakeClock
from ves_sync.store import VesSyncStore

PASSWORD = "correct horse battery"


@dataclass
class Hmi:
    clock: FakeClock
    users: UserStore
    sessions: sessionmaker[Session]
    auth: Authenticator
    services: HmiServices
    audited: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def app(self):  # type: ignore[no-untyped-def]
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        return create_app(health=health, services=self.services)


@pytest.fixture
def hmi(tmp_path: Path) -> Iterator[Hmi]:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    clock = FakeClock(datetime(2026, 11, 22, 3, 0, tzinfo=UTC))
    users = UserStore(sessions, bcrypt_rounds=4)
    for name, group in (("ada", Group.ADMINISTRATOR), ("sam", Group.SCIENCE), ("otto", Group.OPERATOR)):
        users.create(data=UserCreate(username=name, full_name=name.title(), group=group,
                                     password=SecretStr(PASSWORD)), now=clock.now())
    auth = Authenticator(users=users, sessions=sessions, clock=clock)
    h = Hmi(clock=clock, users=users, sessions=sessions, auth=auth,
            services=HmiServices(auth=auth, clock=clock))

    async def audit(user: str, action: str, details: dict[str, str]) -> None:
        h.audited.append((user, action, details))

    h.services.audit = audit
    yield h
    engine.dispose()


@pytest.fixture
def planning(hmi: Hmi) -> Hmi:
    """The HMI with the bus (fakeredis), live feeds, the planner's OB store, the site and the VES-sync store."""
    bus = Bus(fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()), clock=hmi.clock)
    site = load_site()
    hmi.services.bus = bus
    hmi.services.live = LiveFeeds.on(bus, block_ms=50)
    hmi.services.obs = ObStore(hmi.sessions, site=site)
    hmi.services.site = site
    hmi.services.ves = VesSyncStore(hmi.sessions)
    return hmi
