"""The wiring functions `deploy` calls, with the shipped rules and settings from the environment."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from alarms.factory import AlarmSettings, build_dispatcher, build_service, build_supervisor
from skyops.archive.sqlite import SqliteArchive
from skyops.bus import Bus
from skyops.records import AlarmSeverity
from skyops.timeutil import FakeClock


async def test_build_everything_from_the_environment(
    bus: Bus, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYOPS_ALARMS_STATE_FILE", str(tmp_path / "state.json"))
    monkeypatch.setenv("SKYOPS_ALARMS_SMTP_PORT", "2525")
    settings = AlarmSettings()
    supervisor = build_supervisor(bus, clock, settings=settings)
    assert "WindSpeed.ASM:1" in supervisor.engine.alarms
    assert supervisor.engine.max_future_us == 60_000_000  # from the shipped file
    assert supervisor.store.mirror == tmp_path / "state.json"
    async with httpx.AsyncClient() as http:
        dispatcher = build_dispatcher(bus, SqliteArchive(":memory:"), clock, http, settings=settings)
    policy = dispatcher.notifications.policy
    assert policy.min_severity == AlarmSeverity.SERIOUS
    assert policy.email_to == policy.escalation_to == ()  # recipients are the site's to configure
    assert set(dispatcher.notifications.senders) == {"email", "webhook"}
    service = build_service(bus, None, clock)
    assert await service.alarms() == []  # nothing until the supervisor has started


def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYOPS_ALARMS_TICK_S", "0")
    with pytest.raises(ValueError, match="tick_s"):
        AlarmSettings()
