"""The operator page in real headless Chromium (Debian's), driven by Playwright, against a real server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Page, expect

from skyops.codec import encode_samples
from skyops.messages import ConsequenceKind, PlanEvent, PlannedBlock, PlanTrigger
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES, PLAN_EVENTS
from tests.support.hmi_server import PASSWORD, Server

pytestmark = pytest.mark.browser
T = TypeVar("T")
ARTIFACTS = Path(__file__).with_name("artifacts")
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "operator-page.png"



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
