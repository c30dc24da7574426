"""The VES sync's configuration and wiring (no P2 call is made until the first plan arrives)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from p2api import p2api as p2api_module
from pydantic import ValidationError

from skyops.bus import Bus
from skyops.opdb import make_engine, make_sessionmaker, upgrade
from skyops.timeutil import FakeClock
from tests.unit.ves_sync.builders import DUSK
from ves_sync.factory import VesSyncConfig, build
from ves_sync.p2 import register_environment


def config(**changes: object) -> VesSyncConfig:
    fields: dict[str, object] = {
        "environment": "factory-test", "api_url": "http://127.0.0.1:9/api/v1",
        "login_url": "http://127.0.0.1:9/api/login", "owner_password": "secret-1", "operator_password": "secret-2",
        "container_id": 3000001,
    }
    fields.update(changes)
    return VesSyncConfig.model_validate(fields)


def test_a_local_environment_needs_both_urls() -> None:
    with pytest.raises(ValidationError, match="set api_url and login_url"):
        config(api_url=None)


def test_eso_environments_keep_their_own_urls_and_need_real_passwords() -> None:
    with pytest.raises(ValidationError, match="ESO's own"):
        config(environment="production_lasilla")
    eso = {"environment": "production_lasilla", "api_url": None, "login_url": None}
    assert config(**eso).environment == "production_lasilla"
    with pytest.raises(ValidationError, match="owner password"):
        config(**eso, owner_password="p2-emulator")
    with pytest.raises(ValidationError, match="container_id"):
        config(**eso, container_id=None)


def test_settings_come_from_the_environment_and_default_to_the_emulators_soxs_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SKYOPS_VES_API_URL", "http://127.0.0.1:8081/api/v1")
    monkeypatch.setenv("SKYOPS_VES_LOGIN_URL", "http://127.0.0.1:8081/api/login")
    settings = VesSyncConfig()
    assert settings.environment == "local"
    assert settings.effective_container_id == 3000001


def test_an_unknown_owner_needs_an_explicit_container() -> None:
    with pytest.raises(ValidationError, match="set container_id"):
        config(owner_username="someone", container_id=None)
    assert config(owner_username="someone").effective_container_id == 3000001


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="containr"):
        config(containr=1)


def test_esos_environments_cannot_be_redefined() -> None:
    with pytest.raises(ValueError, match="ESO's own"):
        register_environment("production", "http://127.0.0.1:1/api/v1", "http://127.0.0.1:1/api/login")
    assert p2api_module.API_URL["production"] == "https://www.eso.org/cop/api/v1"


async def test_build_wires_a_consumer_and_registers_the_environment(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    redis = FakeRedis(server=FakeServer(version=(7, 0)))
    try:
        consumer = build(config(), bus=Bus(redis), sessions=make_sessionmaker(engine), clock=FakeClock(DUSK))
        assert consumer.service.container_id == 3000001
        assert consumer.stream.group == "ves_sync"
        assert p2api_module.API_URL["factory-test"] == "http://127.0.0.1:9/api/v1"
        assert p2api_module.LOGIN_URL["factory-test"] == "http://127.0.0.1:9/api/login"
    finally:
        await redis.aclose()
        engine.dispose()


def test_the_executor_is_wired_to_the_operator_the_site_and_the_telescope() -> None:
    from config_db.monitoring import load_site
    from ves_sync.factory import build_executor, executor_time

    clock, pace = executor_time(60)
    executor = build_executor(config(operator_username="night-op", instrument="SOXS"),
                              telescope_endpoint="opc.tcp://127.0.0.1:9/ntt/", clock=clock, pace=pace, open_dome=True,
                              poll_s=5)
    site = load_site()
    assert (executor.settings.latitude_deg, executor.settings.longitude_deg) == (site.latitude_deg,
                                                                                 site.longitude_deg)
    assert (executor.settings.open_dome, executor.settings.poll_s, executor.settings.instrument) == (True, 5, "SOXS")
    assert executor.p2.account.username == "night-op"
    assert executor.telescope.endpoint == "opc.tcp://127.0.0.1:9/ntt/"
    assert pace.speed == clock.speed == 60


def test_the_executor_keeps_its_unsent_reports_in_the_operational_db_it_is_given(tmp_path: Path) -> None:
    from ves_sync.domain.execution import Execution, Outcome
    from ves_sync.factory import build_executor, executor_time
    from ves_sync.store import VesSyncStore

    engine = make_engine(f"sqlite:///{tmp_path / 'opdb.sqlite3'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    clock, pace = executor_time(1)
    executor = build_executor(config(), telescope_endpoint="opc.tcp://127.0.0.1:9/ntt/", clock=clock, pace=pace,
                              sessions=sessions)
    report = Execution(7, "2026-11-21", DUSK, Outcome.STARTED)
    executor.outbox.queue_execution(report, now=DUSK)
    assert VesSyncStore(sessions).queued_executions() == [report] == executor.pending
    engine.dispose()
