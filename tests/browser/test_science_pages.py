"""The science team's pages in real headless Chromium: the VES (reorder), a re-plan redrawing the timeline, OBs,
reports and the admin's activity log — against the real planner consuming `plan.triggers`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pydantic import SecretStr

from planner.config import SchedulerConfig, load_site
from planner.service import PlannerService, night_of, store_obs
from planner.store import ObConstraints, ObCreate, ObState, ObStore, ObType, TimeShare
from skyops.opdb.engine import make_sessionmaker
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate
from skyops.timeutil import FakeClock
from tests.browser.test_operator_page import ARTIFACTS
from tests.support.hmi_server import PASSWORD, Server
from ves_sync.domain.ves import VesChange
from ves_sync.store import LinkUpdate, VesSyncStore

pytestmark = pytest.mark.browser
# Local midnight at La Silla, in the night of 2026-11-21: OBs near RA 0–90° are up.
MIDNIGHT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


class ScienceServer(Server):
    """The HMI plus the real planner (OB store, consumer of plan.triggers) and a VES the sync already wrote."""

    async def _start(self) -> None:
        await super()._start()
        p = self.platform
        assert p is not None
        users = self.services.auth.users
        for name, group in (("sam", Group.SCIENCE), ("ada", Group.ADMINISTRATOR)):
            await asyncio.to_thread(users.create, data=UserCreate(username=name, full_name=name.title(), group=group,
                                                                  password=SecretStr(PASSWORD)), now=p.clock.now())
        sessions = make_sessionmaker(p.engine)
        self.store = store = ObStore(sessions, site=load_site())
        for i in range(8):
            store.create_ob(data=ObCreate(
                ob_type=ObType.ESO, name=f"ESO-{i}", target_name=f"NGC {100 + i}", ra_deg=5.0 + 11 * i,
                dec_deg=-35.0 + 3 * i, exposure_s=1500, priority=1 + i % 3, programme="112.D-0004",
                time_share=TimeShare.ESO, constraints=ObConstraints(max_airmass=2.5)), now=p.clock.now(), actor="pi")
        self.planner = PlannerService(bus=p.bus, site=load_site(), config=SchedulerConfig(), clock=p.clock,
                                      obs=store_obs(store), store=store)
        self.first_plan = await self.planner.plan_night(night_of(load_site(), p.clock.now()), reason="afternoon plan")
        self.stop_planner = asyncio.Event()
        self.planner_task = asyncio.ensure_future(
            self.planner.consumer(consumer="browser-test", block_ms=100).run(self.stop_planner))
        # What the VES sync leaves after writing the first plan to P2.
        ves = VesSyncStore(sessions)
        blocks = self.first_plan.blocks
        ves.save_links([LinkUpdate(ob_id=b.ob_id, p2_ob_id=5000 + int(b.ob_id), container_id=1, content_digest="x",
                                   p2_ob={"obStatus": "+"}, p2_etag="e") for b in blocks], now=p.clock.now())
        ves.mark_synced(night=self.first_plan.night, plan_id=self.first_plan.plan_id,
                        plan_created=self.first_plan.created, now=p.clock.now(), change=VesChange(
                            ts=p.clock.now(), instrument="SOXS", written_by="operator", night=self.first_plan.night,
                            plan_id=self.first_plan.plan_id, reason=self.first_plan.reason, trigger_kind=None,
                            alarm_id=None, too_ob_id=None, before=(), after=tuple(5000 + int(b.ob_id) for b in blocks)))

    async def stop_extras(self) -> None:
        self.stop_planner.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.planner_task, 10)


@pytest.fixture
def science(tmp_path: Path) -> Iterator[ScienceServer]:
    s = ScienceServer(tmp_path / "var", clock=FakeClock(MIDNIGHT))
    s.start()
    yield s
    s.stop()


def log_in_as(page: Page, server: Server, user: str) -> None:
    # The browser's clock runs from the server's (fake) time, so "now" on the timeline is the server's now.
    page.clock.install(time=MIDNIGHT)
    page.clock.resume()
    page.goto(f"http://127.0.0.1:{server.port}/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#who")).to_contain_text(user)


def test_science_reorders_the_ves_and_a_replan_redraws_the_timeline(science: ScienceServer, page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    n = len(science.first_plan.blocks)
    assert n >= 3, "the planner placed enough OBs to reorder"
    log_in_as(page, science, "sam")
    expect(page.locator("#plan-timeline rect.ob")).to_have_count(n)
    expect(page.locator("#plan-timeline line.replan")).to_have_count(0)
    expect(page.locator("#link")).to_have_text("live")
    science.wait_for_page_subscriptions()

    # The VES page: the sequence in P2 with our OB names, and the OBs still waiting, in plan order.
    page.click('#nav a[data-view="ves"]')
    expect(page.locator("#ves-rows tr")).to_have_count(n)
    expect(page.locator("#ves-summary")).to_contain_text("written 03:00 UTC by operator")
    first_name = science.first_plan.blocks[0].name
    expect(page.locator("#ves-rows tr").first).to_contain_text(first_name)
    waiting = page.locator("#ves-order li")
    count = waiting.count()
    assert count >= 2
    first, second = waiting.nth(0).get_attribute("data-ob"), waiting.nth(1).get_attribute("data-ob")
    waiting.nth(0).locator("button[data-move=down]").click()
    expect(page.locator("#ves-order li").first).to_have_attribute("data-ob", str(second))
    page.once("dialog", lambda dialog: dialog.accept("the second target sets first"))
    page.click("#ves-apply")
    expect(page.locator("#ves-status")).to_contain_text("new order published")
    page.screenshot(path=str(ARTIFACTS / "ves-page.png"), full_page=True)

    # Back on the operator page: the reordered plan is on the timeline, with a re-plan marker.
    page.click('#nav a[data-view="ops"]')
    expect(page.locator("#plan-reason")).to_contain_text("VES reordered by sam: the second target sets first")
    expect(page.locator("#plan-timeline line.replan")).to_have_count(1)
    assert page.locator(f'#plan-timeline rect.ob[data-ob="{first}"]').count() == 1

    # A manual re-plan goes to the real planner through plan.triggers; its plan redraws the timeline.
    page.once("dialog", lambda dialog: dialog.accept("seeing improved to 0.6 arcsec"))
    page.click("#replan")
    expect(page.locator("#plan-reason")).to_contain_text("re-plan asked by sam: seeing improved to 0.6 arcsec")
    expect(page.locator("#plan-timeline line.replan")).to_have_count(2)
    expect(page.locator("#plan-timeline rect.ob")).not_to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "replanned.png"), full_page=True)

    # The OB page lists the store's OBs; science may edit them.
    page.click('#nav a[data-view="obs"]')
    expect(page.locator("#obs-rows tr")).to_have_count(8)
    row = page.locator("#obs-rows tr").first
    row.locator("button[data-action=edit]").click()
    page.fill("#ob-form input[name=priority]", "7")
    page.click("#ob-form button[type=submit]")
    expect(page.locator("#obs-rows tr").first.locator("td").nth(8)).to_have_text("7")

    # A new OB: bad input is refused with the field named, and nothing is created; fixed, it is listed.
    page.click("#ob-new")
    form = page.locator("#ob-form")
    for name, value in (("programme", "112.D-0004"), ("name", "late ToO"), ("targetName", "GRB 261122A"),
                        ("raDeg", "400"), ("decDeg", "-40"), ("exposureS", "900"), ("priority", "1")):
        form.locator(f"input[name={name}]").fill(value)
    form.locator("select[name=obType]").select_option("TOO")
    page.click("#ob-form button[type=submit]")
    expect(page.locator("#ob-form-error")).to_have_text("raDeg: Input should be less than 360")
    form.locator("input[name=raDeg]").fill("40")
    page.click("#ob-form button[type=submit]")
    expect(page.locator("#obs-rows tr")).to_have_count(9)
    expect(page.locator("#obs-rows tr").last).to_contain_text("GRB 261122A")
    expect(page.locator('#nav a[data-view="admin"]')).to_be_hidden()


def test_reports_and_the_admin_activity_log(science: ScienceServer, page: Page) -> None:
    for ob_id in (1, 2):  # the telescope observed two of the ESO OBs (1500 s each) in the night of the 21st
        science.store.set_state(ob_id=ob_id, state=ObState.OBSERVED, now=MIDNIGHT, actor="telescope")
    log_in_as(page, science, "ada")
    page.click('#nav a[data-view="reports"]')
    page.fill("#report-first", "2026-11-20")
    page.fill("#report-last", "2026-11-21")
    page.click("#report-run")
    expect(page.locator("#report-duty rect")).to_have_count(2)
    expect(page.locator("#report-figures")).to_contain_text("0.8 hscience")
    assert float(page.locator('#report-duty rect[data-night="2026-11-21"]').get_attribute("height") or 0) > 0
    assert float(page.locator('#report-duty rect[data-night="2026-11-20"]').get_attribute("height") or 1) == 0
    expect(page.locator("#report-proposals tr td")).to_have_text(["112.D-0004", "2", "8", "25 %"])
    page.screenshot(path=str(ARTIFACTS / "reports-page.png"), full_page=True)

    page.click('#nav a[data-view="admin"]')
    expect(page.locator("#user-rows tr")).to_have_count(4)   # admin, otto, sam, ada
    page.click("#user-new")
    user_form = page.locator("#user-form")
    user_form.locator("input[name=username]").fill("nina")
    user_form.locator("input[name=fullName]").fill("Nina Night")
    user_form.locator("input[name=password]").fill("short")
    page.click("#user-form button[type=submit]")
    expect(page.locator("#admin-error")).to_contain_text("password")
    user_form.locator("input[name=password]").fill("a-long-enough-secret")
    page.click("#user-form button[type=submit]")
    expect(page.locator('#user-rows tr[data-user="nina"]')).to_contain_text("operator")
    page.fill("#session-hours", "8")
    page.click("#session-form button[type=submit]")
    expect(page.locator("#session-note")).to_have_text("new logins last 8 h")
    # The audit records travel through the log stream to the archive; the activity log reads them back.
    science.run(_drain_logs(science))
    page.click("#activity-run")
    # (the server's clock is fake and stands still: every record has the same time, so no order is asserted)
    expect(page.locator("#activity-rows")).to_contain_text("settings.session_durationhours=8.0")
    expect(page.locator("#activity-rows")).to_contain_text("adaloginaddress=127.0.0.1")
    page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)


async def _drain_logs(server: Server) -> None:
    """Stand in for the log consumer: archive what is on the log stream (the HMI's audit records)."""
    from skyops.codec import decode_logs
    from skyops.streams import LOG_RECORDS

    p = server.platform
    assert p is not None
    entries = await p.bus.range_after(LOG_RECORDS, "0-0", count=10_000)
    await p.archive.write_logs([r for e in entries for r in decode_logs(e.payload)])


def test_timeline_markers_link_to_the_alarm_after_a_reload(science: ScienceServer, page: Page) -> None:
    from skyops.messages import ConsequenceKind, PlanTrigger

    trigger = PlanTrigger(kind="consequence", ts=MIDNIGHT, reason="wind 21 m/s", alarm_id="WindSpeed.ASM:1",
                          consequence=ConsequenceKind.CLOSE_DOME)
    science.run(science.planner.handle(trigger))
    log_in_as(page, science, "sam")
    marker = page.locator("#plan-timeline g.replan-mark.linked")
    expect(marker).to_have_count(1)
    assert marker.get_attribute("data-alarm") == "WindSpeed.ASM:1"
    page.reload()   # the markers come from the plan history, not only from live updates
    expect(page.locator("#plan-timeline g.replan-mark.linked")).to_have_count(1)
