"""VES sync with the real p2api client against the emulator: a full night, re-plans, conflicts, bad content."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import p2api
import pytest
from sqlalchemy.orm import Session, sessionmaker

from skyops.timeutil import FakeClock
from tests.integration.ves_sync.conftest import PASSWORD, SOXS_CONTAINER, Sleeps, client, make_service
from tests.unit.ves_sync.builders import DUSK, block, night, plan, wind_trigger
from ves_sync.domain.content import p2_name
from ves_sync.emulator import EmulatorServer
from ves_sync.p2 import P2Client
from ves_sync.service import VesSyncService
from ves_sync.store import VesSyncStore

pytestmark = pytest.mark.integration


def ves_ids(environment: str) -> list[int]:
    ves, _ = client(environment, "operator").get_execution_sequence("SOXS")
    return [int(e["obId"]) for e in ves]


def container_names(environment: str) -> list[str]:
    items, _ = client(environment, "soxs").get_items(SOXS_CONTAINER)
    return [str(i["name"]) for i in items]


def test_a_30_ob_night_reaches_a_verified_ves_in_plan_order(
    service: VesSyncService, environment: str, sessions: sessionmaker[Session]
) -> None:
    blocks = night(30)
    report = service.sync(plan(blocks))

    assert len(report.created) == 30
    assert report.rejected == {}
    assert report.ves_changed
    links = VesSyncStore(sessions).links()
    assert ves_ids(environment) == [links[b.ob_id].p2_ob_id for b in blocks]
    soxs = client(environment, "soxs")
    summary, _ = soxs.get_ob_summary(SOXS_CONTAINER)
    assert {e["obStatus"] for e in summary} == {"+"}
    ob, _ = soxs.get_ob(links[blocks[4].ob_id].p2_ob_id)
    assert ob["target"]["name"] == blocks[4].target_name
    assert ob["constraints"]["airmass"] == 1.8
    assert ob["exposureTime"] == 600
    history = VesSyncStore(sessions).history()
    assert len(history) == 1
    assert history[0].reason == "nightly plan"
    assert history[0].written_by == "ves_sync as P2 user operator"
    assert history[0].after == report.ves


def test_replaying_a_plan_changes_nothing(service: VesSyncService, environment: str,
                                          sessions: sessionmaker[Session]) -> None:
    event = plan(night(10))
    first = service.sync(event)
    again = service.sync(event)
    assert again.created == again.updated == ()
    assert again.unchanged == 10
    assert not again.ves_changed
    assert again.ves == first.ves
    assert len(container_names(environment)) == 10
    assert len(VesSyncStore(sessions).history()) == 1


def test_a_replan_reorders_the_ves_and_rewrites_only_changed_obs(
    service: VesSyncService, environment: str, sessions: sessionmaker[Session]
) -> None:
    blocks = night(12)
    service.sync(plan(blocks))
    changed = block(5, exposure_s=1500)
    replanned = [*blocks[6:], changed, *blocks[:5]]
    trigger = wind_trigger(DUSK + timedelta(hours=1))
    report = service.sync(plan(replanned, plan_id="plan-2", created=DUSK + timedelta(hours=1),
                               reason="re-plan: pointing restriction", trigger=trigger))

    assert report.updated == (changed.ob_id,)
    assert report.created == ()
    links = VesSyncStore(sessions).links()
    assert ves_ids(environment) == [links[b.ob_id].p2_ob_id for b in replanned]
    assert client(environment, "soxs").get_ob(links[changed.ob_id].p2_ob_id)[0]["exposureTime"] == 1500
    latest = VesSyncStore(sessions).history()[0]
    assert (latest.plan_id, latest.alarm_id, latest.trigger_kind) == ("plan-2", "WindPointing.asm:1", "consequence")
    assert latest.before != latest.after


def test_an_older_plan_arriving_late_is_ignored(service: VesSyncService, environment: str) -> None:
    newer = service.sync(plan(night(5), plan_id="new", created=DUSK))
    late = service.sync(plan(night(8), plan_id="old", created=DUSK - timedelta(minutes=5)))
    assert late.superseded
    assert ves_ids(environment) == list(newer.ves)


def test_a_concurrent_edit_of_an_ob_is_recovered(service: VesSyncService, environment: str,
                                                 sessions: sessionmaker[Session]) -> None:
    blocks = night(4)
    service.sync(plan(blocks))
    p2_id = VesSyncStore(sessions).links()[blocks[2].ob_id].p2_ob_id
    # An astronomer edits the OB in P2 meanwhile: our remembered ETag is now stale.
    other = p2api.ApiConnection(environment, "soxs", PASSWORD)
    ob, etag = other.getOB(p2_id)
    ob["userPriority"] = 42
    ob["obsDescription"]["instrumentComments"] = "use slit 1.0"
    other.saveOB(ob, etag)

    changed = block(2, dec_deg=-12.5)
    report = service.sync(plan([*blocks[:2], changed, blocks[3]], plan_id="p2", created=DUSK + timedelta(minutes=1)))

    assert report.conflicts >= 1
    assert report.updated == (changed.ob_id,)
    final, _ = client(environment, "soxs").get_ob(p2_id)
    assert final["target"]["dec"] == "-12:30:00.00"
    assert final["userPriority"] == 42  # their edit is kept, ours is on top
    assert final["obsDescription"]["instrumentComments"] == "use slit 1.0"
    assert len(container_names(environment)) == 4


class RacingOperator(P2Client):
    """The operator's client, with someone else saving the VES just before our first save."""

    def __init__(self, inner: P2Client, environment: str) -> None:
        super().__init__(inner.account)
        self.environment = environment
        self.raced = False

    def save_execution_sequence(self, instrument: str, ob_ids: list[int], etag: str | None) -> tuple[Any, str | None]:
        if not self.raced:
            self.raced = True
            rival = p2api.ApiConnection(self.environment, "operator", PASSWORD)
            _, rival_etag = rival.getExecutionSequence(instrument)
            rival.saveExecutionSequence(instrument, [{"obId": ob_ids[-1]}], rival_etag)
        return super().save_execution_sequence(instrument, ob_ids, etag)


def test_a_concurrent_ves_change_is_recovered(environment: str, sessions: sessionmaker[Session],
                                              clock: FakeClock, sleeps: Sleeps) -> None:
    racing = RacingOperator(client(environment, "operator"), environment)
    service = make_service(environment, sessions, clock, sleeps, operator=racing)
    report = service.sync(plan(night(6)))
    assert racing.raced
    assert report.conflicts == 1
    assert ves_ids(environment) == list(report.ves)
    assert len(report.ves) == 6


def test_bad_ob_content_is_rejected_with_a_clear_error_and_the_rest_goes_through(
    service: VesSyncService, environment: str
) -> None:
    blocks = night(5)
    too_long = block(1, exposure_s=10_000)
    bad_airmass = block(3, max_airmass=7.0)
    report = service.sync(plan([blocks[0], too_long, blocks[2], bad_airmass, blocks[4]]))

    assert set(report.rejected) == {too_long.ob_id, bad_airmass.ob_id}
    assert "SEQ.EXPTIME: 10000.0 is outside [1.0, 7200.0]" in report.rejected[too_long.ob_id]
    assert "constraints.airmass" in report.rejected[bad_airmass.ob_id]
    assert len(ves_ids(environment)) == 3

    # Once the plan is fixed, the same P2 OBs are completed: nothing is created twice.
    fixed = service.sync(plan(blocks, plan_id="fixed", created=DUSK + timedelta(minutes=1)))
    assert fixed.rejected == {}
    assert fixed.created == ()
    assert len(ves_ids(environment)) == 5
    assert sorted(container_names(environment)) == sorted(p2_name(b.ob_id) for b in blocks)


def test_a_lost_mapping_finds_the_p2_obs_again_instead_of_duplicating(
    environment: str, sessions: sessionmaker[Session], tmp_path: Any, clock: FakeClock, sleeps: Sleeps
) -> None:
    from skyops.opdb import make_engine, make_sessionmaker, upgrade

    first = make_service(environment, sessions, clock, sleeps).sync(plan(night(6)))
    fresh_engine = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    upgrade(fresh_engine)
    try:
        amnesiac = make_service(environment, make_sessionmaker(fresh_engine), clock, sleeps)
        again = amnesiac.sync(plan(night(6), plan_id="again", created=DUSK + timedelta(minutes=1)))
    finally:
        fresh_engine.dispose()
    assert again.created == ()
    assert again.ves == first.ves
    assert len(container_names(environment)) == 6


def test_a_foreign_visitor_ob_can_be_sequenced_by_its_p2_id(service: VesSyncService, environment: str) -> None:
    pi = p2api.ApiConnection(environment, "pi", PASSWORD)
    pi_root = next(r["containerId"] for r in pi.getRuns()[0] if r["owned"])
    ob, etag = pi.createOB(pi_root, "pi-ob")
    ob["target"].update(name="HD 1234", ra="01:00:00.000", dec="-45:00:00.00")
    pi.saveOB(ob, etag)
    pi.createTemplate(ob["obId"], "SOXS_acq_img")
    pi.createTemplate(ob["obId"], "SOXS_spec_obs_stare")
    draft, _ = pi.createOB(pi_root, "pi-draft")
    blocks = night(2)
    ours = [blocks[0], block(50, p2_ob_id=ob["obId"]), blocks[1], block(51, p2_ob_id=draft["obId"])]

    report = service.sync(plan(ours))
    assert "not ready for the VES" in report.rejected[ours[3].ob_id]
    assert ob["obId"] not in report.ves  # not verified yet

    pi.verifyOB(ob["obId"], True)
    report = service.sync(plan(ours, plan_id="p2", created=DUSK + timedelta(minutes=1)))
    assert ves_ids(environment)[1] == ob["obId"]


def test_ob_status_changes_in_p2_are_picked_up(
    service: VesSyncService, emulator: EmulatorServer, environment: str, sessions: sessionmaker[Session]
) -> None:
    blocks = night(3)
    service.sync(plan(blocks))
    assert service.refresh_statuses() == []
    links = VesSyncStore(sessions).links()
    executed = links[blocks[0].ob_id].p2_ob_id
    revised = links[blocks[2].ob_id].p2_ob_id
    operator = p2api.ApiConnection(environment, "operator", PASSWORD)
    # The telescope reports an execution (emulator extension), and someone revises another OB.
    with httpx.Client(base_url=emulator.api_url, timeout=5) as http:
        answer = http.post("/executions/SOXS", headers={"Authorization": f"Bearer {operator.access_token}"},
                           json={"obId": executed, "night": "2026-11-21", "from": "2026-11-22T01:00:00+00:00",
                                 "to": "2026-11-22T01:20:00+00:00", "status": "executed"})
        assert answer.status_code == 201, answer.text
    operator.reviseOB(revised)

    changes = {c.ob_id: (c.before, c.after) for c in service.refresh_statuses()}
    assert changes == {blocks[0].ob_id: ("+", "X"), blocks[2].ob_id: ("+", "P")}
    assert VesSyncStore(sessions).statuses()[blocks[0].ob_id] == "X"
    assert [e["obId"] for e in operator.getNightExecutions("SOXS", "2026-11-21")[0]] == [executed]
    # The revised OB is verified again and put back by the next sync of the same plan.
    report = service.sync(plan(blocks, plan_id="again", created=DUSK + timedelta(minutes=1)))
    assert report.updated == (blocks[2].ob_id,)
    assert ves_ids(environment) == [links[b.ob_id].p2_ob_id for b in blocks]


def test_template_edits_and_deletions_in_p2_are_survived(service: VesSyncService, environment: str,
                                                         sessions: sessionmaker[Session]) -> None:
    blocks = night(2)
    service.sync(plan(blocks))
    p2_id = VesSyncStore(sessions).links()[blocks[0].ob_id].p2_ob_id
    other = p2api.ApiConnection(environment, "soxs", PASSWORD)
    templates, _ = other.getTemplates(p2_id)
    science, tpl_etag = other.getTemplate(p2_id, templates[1]["templateId"])
    other.setTemplateParams(p2_id, science, {"INS.SLIT.WIDTH": "1.5"}, tpl_etag)

    report = service.sync(plan([block(0, exposure_s=1200), blocks[1]], plan_id="p2",
                               created=DUSK + timedelta(minutes=1)))
    assert report.conflicts == 1
    tpl, tpl_etag = other.getTemplate(p2_id, templates[1]["templateId"])
    values = {p["name"]: p["value"] for p in tpl["parameters"]}
    assert (values["SEQ.EXPTIME"], values["INS.SLIT.WIDTH"]) == (1200.0, "1.5")

    # Someone deletes the science template: the next change finds the OB's templates again.
    other.deleteTemplate(p2_id, tpl["templateId"], tpl_etag)
    report = service.sync(plan([block(0, exposure_s=1500), blocks[1]], plan_id="p3",
                               created=DUSK + timedelta(minutes=2)))
    assert report.rejected == {}
    ob, _ = other.getOB(p2_id)
    assert ob["exposureTime"] == 1500
    assert [t["templateName"] for t in other.getTemplates(p2_id)[0]] == ["SOXS_acq_img", "SOXS_spec_obs_stare"]
    assert ves_ids(environment)[0] == p2_id


def test_obs_moved_or_deleted_in_p2_are_neither_duplicated_nor_lost(
    service: VesSyncService, environment: str, sessions: sessionmaker[Session]
) -> None:
    blocks = night(3)
    first = service.sync(plan(blocks))
    links = VesSyncStore(sessions).links()
    other = p2api.ApiConnection(environment, "soxs", PASSWORD)
    folder, _ = other.createFolder(SOXS_CONTAINER, "moved here")
    other.moveOB(links[blocks[0].ob_id].p2_ob_id, folder["containerId"])
    deleted = links[blocks[1].ob_id].p2_ob_id
    _, etag = other.getOB(deleted)
    other.deleteOB(deleted, etag)

    report = service.sync(plan([*blocks, blocks[2]], plan_id="p2", created=DUSK + timedelta(minutes=1)))
    assert report.created == (blocks[1].ob_id,)  # only the deleted one comes back
    assert report.ves[0] == first.ves[0]  # the moved one is still the same P2 OB
    assert report.ves[1] != deleted
    assert len(report.ves) == 3  # the OB listed twice is sequenced once
    assert ves_ids(environment) == list(report.ves)
