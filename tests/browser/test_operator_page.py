"""The operator page in real headless Chromium (Debian's), driven by Playwright, against a real server."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import uvicorn
from playwright.sync_api import Page, expect
from pydantic import SecretStr

from alarms.config import AlarmsConfig
from alarms.factory import AlarmSettings, build_service, build_supervisor
from deploy.factory import Platform, build_hmi_services, open_platform
from hmi_api.app import create_app
from skyops.bus import StreamRetention
from skyops.codec import encode_samples
from skyops.messages import ConsequenceKind, PlanEvent, PlannedBlock, PlanTrigger
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate
from skyops.records import Sample, SampleBatch
from skyops.settings import Settings
from skyops.streams import MON_SAMPLES, PLAN_EVENTS
from skyops.timeutil import Clock, to_us

pytestmark = pytest.mark.browser
T = TypeVar("T")
ARTIFACTS = Path(__file__).with_name("artifacts")
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "operator-page.png"
PASSWORD = "night-shift-2026"
RET = StreamRetention(max_len=10_000, max_age=timedelta(hours=1))
ALARMS = AlarmsConfig.model_validate({"rules": [
    {"kind": "threshold", "name": "WindSpeed", "instance": "ASM:1", "point": "lasilla.asm.wind_speed",
     "guidance": "above 20 m/s close the dome and park the telescope",
     "threshold": {"levels": {"warning": 15, "critical": 20}}, "max_age_s": 600,
     "consequence": {"kind": "close_dome", "min_severity": "CRITICAL"}},
]})
POINTS = {"lasilla.asm.wind_speed": 7.5, "lasilla.asm.humidity": 41.0, "lasilla.asm.seeing": 0.82,
          "lasilla.asm.temperature": 11.2, "ntt.tcs.altitude": 62.4, "ntt.tcs.azimuth": 181.0}


class Server:
    """The HMI on a free loopback port, with its event loop in a thread the test can submit work to."""

    def __init__(self, var_dir: Path, clock: Clock | None = None) -> None:
        self.var_dir = var_dir
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.platform: Platform | None = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for a real server thread to bind
        assert self.server.started, "the HMI server did not start"

    async def _start(self) -> None:
        self.platform = p = await open_platform(Settings(var_dir=self.var_dir), clock=self.clock)
        await p.redis.flushall()  # the embedded bus is one in-process server: start each test with empty streams
        services, _ = await build_hmi_services(p)
        self.services = services
        # The real alarm path: supervisor on the bus, the HMI's alarm service sending it commands.
        self.supervisor = build_supervisor(p.bus, p.clock, config=ALARMS,
                                           settings=AlarmSettings(state_file=self.var_dir / "alarms.json"))
        await self.supervisor.start()
        self.stop_alarms = asyncio.Event()
        self.alarms_task = asyncio.ensure_future(self.supervisor.run(self.stop_alarms))
        services.alarms = build_service(p.bus, p.archive, p.clock)
        await asyncio.to_thread(services.auth.users.create, data=UserCreate(
            username="otto", full_name="Otto Operator", group=Group.OPERATOR, password=SecretStr(PASSWORD)),
            now=p.clock.now())
        p.archive.register_points({name: "standard" for name in POINTS})
        now = to_us(datetime.now(UTC))
        n = 3600
        ts = now - (n - np.arange(n)) * 1_000_000
        for i, (name, base) in enumerate(POINTS.items()):
            values = base + np.sin(np.arange(n) / (300 + 50 * i)) * base * 0.1
            await p.archive.write_samples(SampleBatch.from_floats([name], np.zeros(n), ts, values))
        self.server = uvicorn.Server(uvicorn.Config(create_app(health=p.health, services=services),
                                                    host="127.0.0.1", port=self.port, log_level="warning"))
        self.serving = asyncio.ensure_future(self.server.serve())

    def stop(self) -> None:
        async def _stop() -> None:
            self.server.should_exit = True
            await self.serving
            await self.stop_extras()
            self.stop_alarms.set()
            await asyncio.wait_for(self.alarms_task, 10)
            if self.platform is not None:
                await self.platform.close()

        self.run(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def stop_extras(self) -> None:
        """What a subclass started besides the HMI and the alarm supervisor."""

    def wait_for_page_subscriptions(self) -> None:
        """The page has subscribed to alarms, logs and plans (publishing earlier could race the page)."""
        live = self.services.live
        assert live is not None

        async def wait() -> None:
            for _ in range(1000):
                if min(live.alarms.subscribers, live.logs.subscribers, live.plans.subscribers) >= 1:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the page never subscribed")

        self.run(wait())

    def publish(self, stream: str, payload: bytes) -> None:
        assert self.platform is not None
        self.run(self.platform.bus.publish(stream, payload, retention=RET))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "var")
    s.start()
    yield s
    s.stop()


def log_in(page: Page, server: Server, password: str = PASSWORD) -> None:
    page.goto(f"http://127.0.0.1:{server.port}/")
    expect(page.locator("#login-dialog")).to_be_visible()
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", password)
    page.click("#login-form button[type=submit]")


def test_wrong_password_is_refused_on_the_page(server: Server, page: Page) -> None:
    log_in(page, server, password="not the password")
    expect(page.locator("#login-error")).to_have_text("invalid username or password")
    expect(page.locator("#app")).to_be_hidden()


def test_operator_logs_in_sees_values_a_live_alarm_and_a_trend(server: Server, page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    started = time.monotonic()
    log_in(page, server)
    expect(page.locator("#who")).to_have_text("otto (operator)")
    expect(page.locator('#weather [data-point="lasilla.asm.seeing"] .v')).not_to_have_text("")
    first_render_s = time.monotonic() - started
    expect(page.locator("#link")).to_have_text("live")
    server.wait_for_page_subscriptions()

    # Wind rises past the CRITICAL level: the supervisor raises the alarm and the page shows it live.
    server.publish(MON_SAMPLES, encode_samples(SampleBatch.from_samples(
        [Sample("lasilla.asm.wind_speed", datetime.now(UTC), 21.4)])))
    row = page.locator('tr[data-alarm="WindSpeed.ASM:1"]')
    expect(row).to_have_class("sev-CRITICAL unacked")
    expect(page.locator("#alarm-count")).to_have_text("1 active")
    assert "close the dome" in (row.get_attribute("title") or "")
    page.screenshot(path=str(ARTIFACTS / "alarm-raised.png"), full_page=True)

    # The operator acknowledges it from the table, with a comment.
    page.once("dialog", lambda dialog: dialog.accept("closing the dome"))
    row.locator("button[data-action=ack]").click()
    expect(row).to_have_class("sev-CRITICAL")
    expect(row.locator("button[data-action=ack]")).to_have_count(0)

    # The acknowledgement is an audit record: it arrives in the live log tail.
    expect(page.locator("#log-lines li").first).to_contain_text("otto: alarm.ack")

    # A plan, then a re-plan caused by the alarm: the timeline redraws and names the alarm that caused it.
    night = datetime.now(UTC) - timedelta(minutes=30)
    for plan_id, n, reason, alarm in (("p1", 8, "afternoon plan", None),
                                      ("p2", 6, "re-plan: wind above 20 m/s, dome closed", "WindSpeed.ASM:1")):
        trigger = None if alarm is None else PlanTrigger(kind="consequence", ts=datetime.now(UTC), reason=reason,
                                                         alarm_id=alarm, consequence=ConsequenceKind.CLOSE_DOME)
        blocks = tuple(PlannedBlock(ob_id=f"{plan_id}-{i}", name=f"OB {i}", target_name=f"SN 2026ab{i}",
                                    ra_deg=15.0 * i, dec_deg=-25.0, exposure_s=1200, priority=1 + i % 3,
                                    ob_type=("CTOB", "FUOB", "ESO")[i % 3], start=night + timedelta(minutes=25 * i),
                                    end=night + timedelta(minutes=25 * i + 20)) for i in range(n))
        server.publish(PLAN_EVENTS, PlanEvent(plan_id=plan_id, night="2026-11-21", created=datetime.now(UTC),
                                              reason=reason, trigger=trigger, blocks=blocks).encode())
    expect(page.locator("#plan-timeline rect.ob")).to_have_count(6)
    expect(page.locator("#plan-reason")).to_contain_text("dome closed")
    expect(page.locator("#plan-reason a")).to_have_text(" (WindSpeed.ASM:1)")
    expect(page.locator("#plan-timeline line.replan")).to_have_count(1)
    expect(page.locator("#plan-timeline line.now")).to_have_count(1)

    page.click('#weather [data-point="lasilla.asm.wind_speed"]')
    expect(page.locator("#trend-note")).to_contain_text("bins from")
    assert page.locator("#trend-plot path.mean").get_attribute("d")

    page.screenshot(path=str(ARTIFACTS / "operator-page.png"), full_page=True)
    if os.environ.get("SKYOPS_UPDATE_SCREENSHOT"):  # refresh the README's picture only when asked to
        page.screenshot(path=str(README_SHOT), full_page=True)
    (ARTIFACTS / "first-render.txt").write_text(
        f"{first_render_s:.3f} s from navigation through the login (typing, bcrypt) to live values; "
        "the first render itself is measured by bench/hmi_page.py\n")
