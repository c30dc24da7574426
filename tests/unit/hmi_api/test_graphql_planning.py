"""GraphQL for the science team: OB queries and edits, manual re-plans, the plan history and the reports."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import pytest
from fastapi.testclient import TestClient

from planner.config import SchedulerConfig
from planner.service import PlannerService, store_obs
from planner.store import AutoObCreate, ObConstraints, ObCreate, ObPublic, ObState, ObStore, ObType, TimeShare
from skyops.bus import Bus, StreamRetention
from skyops.messages import ConsequenceKind, PlanTrigger, decode_plan_trigger
from skyops.streams import PLAN_EVENTS, PLAN_TRIGGERS
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import gql, login
from tests.unit.hmi_api.test_planops import plan

RET = StreamRetention(max_len=10_000, max_age=timedelta(days=1))
OB_FIELDS = "id obType name programme state priority exposureS raDeg version"


def store(h: Hmi) -> ObStore:
    assert h.services.obs is not None
    return h.services.obs


def bus(h: Hmi) -> Bus:
    assert h.services.bus is not None
    return h.services.bus


def eso(h: Hmi, name: str, programme: str = "110.A-0001", ra: float = 60.0, priority: int = 2) -> ObPublic:
    return store(h).create_ob(data=ObCreate(
        ob_type=ObType.ESO, name=name, target_name=f"target {name}", ra_deg=ra, dec_deg=-30.0, exposure_s=1200,
        priority=priority, programme=programme, time_share=TimeShare.ESO,
        constraints=ObConstraints(max_airmass=2.5)), now=h.clock.now(), actor="test")


def auto(h: Hmi, mid: int = 77) -> ObPublic:
    return store(h).create_auto_ob(data=AutoObCreate(mid=mid, target_name="SN 2026xyz", ra_deg=50.0, dec_deg=-20.0,
                                                     magnitude=18.0), now=h.clock.now())


def errors(out: dict[str, Any]) -> str:
    assert "errors" in out, out
    return "; ".join(e["message"] for e in out["errors"])


def triggers(client: TestClient, h: Hmi) -> list[PlanTrigger]:
    entries = client.portal.call(functools.partial(bus(h).range_after, PLAN_TRIGGERS, "0-0", count=100))
    return [decode_plan_trigger(e.payload) for e in entries]


# --- queries ---------------------------------------------------------------------------------------

def test_obs_filtered_by_state_programme_and_type(planning: Hmi) -> None:
    a, b = eso(planning, "A1"), eso(planning, "B1", programme="111.B-0002")
    ctob = auto(planning)
    store(planning).delete_ob(ob_id=b.id, now=planning.clock.now(), actor="test")
    q = "query($s: [String!], $p: String, $t: String) { obs(states: $s, programme: $p, obType: $t) { id state } }"
    with TestClient(planning.app()) as client:
        token = login(client, "otto")
        everything = gql(client, q, token)["data"]["obs"]
        live = gql(client, q, token, s=["queued", "scheduled"])["data"]["obs"]
        by_programme = gql(client, q, token, p="111.B-0002")["data"]["obs"]
        ctobs = gql(client, q, token, t="CTOB")["data"]["obs"]
        bad_state = errors(gql(client, q, token, s=["sleeping"]))
        bad_type = errors(gql(client, q, token, t="XOB"))
    assert [o["id"] for o in everything] == [a.id, b.id, ctob.id]
    assert [o["id"] for o in live] == [a.id, ctob.id]
    assert by_programme == [{"id": b.id, "state": "deleted"}]
    assert [o["id"] for o in ctobs] == [ctob.id]
    assert bad_state.startswith("states: unknown value 'sleeping'; use one of queued")
    assert bad_type.startswith("obType: unknown value 'XOB'")


def test_ob_history_names_who_changed_what(planning: Hmi) -> None:
    ob = eso(planning, "A1")
    q = "query($i: Int!) { obHistory(obId: $i) { action actor changes } }"
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        gql(client, "mutation($i: Int!) { updateOb(obId: $i, changes: {priority: 5}) { priority } }", token, i=ob.id)
        history = gql(client, q, token, i=ob.id)["data"]["obHistory"]
        missing = errors(gql(client, q, token, i=999))
    assert [(h["action"], h["actor"]) for h in history] == [("created", "test"), ("edited", "sam")]
    assert history[1]["changes"] == {"priority": [2, 5]}
    assert missing == "unknown OB 999"


def test_plan_history_lists_each_version_with_its_cause(planning: Hmi) -> None:
    now = planning.clock.now()
    alarm = PlanTrigger(kind="consequence", ts=now - timedelta(seconds=2), reason="wind", alarm_id="Wind.ASM:1",
                        consequence=ConsequenceKind.CLOSE_DOME)
    first = plan(plan_id="2026-11-21#1")
    second = plan(trigger=alarm, plan_id="2026-11-21#2").model_copy(update={"created": now, "reason": "dome"})
    other_night = first.model_copy(update={"night": "2026-11-20", "plan_id": "2026-11-20#1"})
    q = "query($n: String) { planHistory(night: $n) { planId reason triggerKind triggerAlarm replanSeconds blocks } }"
    planning.services.live = None  # (the live plan feed is not needed here, and it stops at an undecodable entry)
    with TestClient(planning.app()) as client:
        for payload in (other_night.encode(), first.encode(), b"not a plan", second.encode()):
            client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, payload, retention=RET))
        token = login(client, "otto")
        newest_night = gql(client, q, token)["data"]["planHistory"]
        older = gql(client, q, token, n="2026-11-20")["data"]["planHistory"]
        bad = errors(gql(client, q, token, n="yesterday"))
    assert [(p["planId"], p["triggerAlarm"], p["replanSeconds"]) for p in newest_night] == [
        ("2026-11-21#1", None, None), ("2026-11-21#2", "Wind.ASM:1", 2.0)]
    assert newest_night[1]["triggerKind"] == "consequence" and newest_night[1]["blocks"] == 5
    assert [p["planId"] for p in older] == ["2026-11-20#1"]
    assert bad == "night: 'yesterday' is not a date (YYYY-MM-DD)"


def test_report_gives_duty_cycle_hits_and_misses_per_night(planning: Hmi) -> None:
    s, now = store(planning), planning.clock.now()
    observed = auto(planning, mid=1)
    s.set_state(ob_id=observed.id, state=ObState.OBSERVED, now=now, actor="telescope")
    missed = auto(planning, mid=2)
    s.set_state(ob_id=missed.id, state=ObState.EXPIRED, now=now, actor="autoCleanOBs")
    eso_ob = eso(planning, "A1")
    s.set_state(ob_id=eso_ob.id, state=ObState.OBSERVED, now=now, actor="telescope")
    q = """query($a: Date!, $b: Date!) { report(firstNight: $a, lastNight: $b) { darkHours scienceHours dutyCycle
           transientHits transientMisses hitRate gtoHours esoHours completedProposalsFraction
           proposals { programme observed total } nights { night dutyCycle transientHits } } }"""
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        r = gql(client, q, token, a="2026-11-21", b="2026-11-21")["data"]["report"]
        backwards = errors(gql(client, q, token, a="2026-11-21", b="2026-11-20"))
        too_long = errors(gql(client, q, token, a="2026-01-01", b="2026-03-01"))
    assert 5 < r["darkHours"] < 9  # a November night at La Silla
    assert r["transientHits"] == 1 and r["transientMisses"] == 1 and r["hitRate"] == 0.5
    assert r["gtoHours"] == pytest.approx(observed.exposure_s / 3600)
    assert r["esoHours"] == pytest.approx(1200 / 3600)
    assert r["dutyCycle"] == pytest.approx(r["scienceHours"] / r["darkHours"])
    assert r["proposals"] == [{"programme": "110.A-0001", "observed": 1, "total": 1}]
    assert r["nights"] == [{"night": "2026-11-21", "dutyCycle": r["dutyCycle"], "transientHits": 1}]
    assert backwards == "lastNight 2026-11-20 is before firstNight 2026-11-21"
    assert too_long == "ask for at most 31 nights at a time, not 60"


# --- mutations -------------------------------------------------------------------------------------

CREATE = """mutation($ob: ObInput!, $now: Boolean! = false) { createOb(ob: $ob, observeNow: $now) {
  id obType name programme state priority exposureS timeShare twilight } }"""


def ob_input(**changes: Any) -> dict[str, Any]:
    base = {"obType": "ESO", "name": "NGC 300 deep", "targetName": "NGC 300", "raDeg": 13.7, "decDeg": -37.7,
            "exposureS": 1800, "priority": 3, "programme": "112.C-0003"}
    return {**base, **changes}


def test_science_creates_an_ob_and_the_action_is_audited(planning: Hmi) -> None:
    with TestClient(planning.app()) as client:
        out = gql(client, CREATE, login(client, "sam"), ob=ob_input(twilight="astronomical"))
    ob = out["data"]["createOb"]
    assert ob["obType"] == "ESO" and ob["state"] == "queued" and ob["timeShare"] == "ESO"
    assert ob["twilight"] == "astronomical"
    assert store(planning).get(ob_id=ob["id"]).name == "NGC 300 deep"
    assert store(planning).history(ob_id=ob["id"])[0].actor == "sam"
    assert ("sam", "ob.create", {"ob": str(ob["id"]), "name": "NGC 300 deep", "type": "ESO"}) in planning.audited


def test_a_too_created_to_observe_now_triggers_a_replan(planning: Hmi) -> None:
    with TestClient(planning.app()) as client:
        ob = gql(client, CREATE, login(client, "ada"), ob=ob_input(obType="TOO"), now=True)["data"]["createOb"]
        (trigger,) = triggers(client, planning)
    assert ob["obType"] == "ToO"
    assert (trigger.kind, trigger.ob_id) == ("too", str(ob["id"]))
    assert "created by ada" in trigger.reason


@pytest.mark.parametrize(("changes", "message"), [
    ({"raDeg": 400.0}, "raDeg: Input should be less than 360"),
    ({"exposureS": -1.0}, "exposureS: Input should be greater than 0"),
    ({"priority": 0}, "priority: Input should be greater than or equal to 1"),
    ({"name": "   "}, "name: String should have at least 1 character"),
    ({"timeShare": "XYZ"}, "timeShare: unknown value 'XYZ'; use one of GTO, ESO"),
    ({"twilight": "dusk"}, "twilight: unknown value 'dusk'"),
    ({"maxAirmass": 0.5}, "maxAirmass: Input should be greater than or equal to 1"),
])
def test_create_ob_refuses_bad_input_with_the_field_named(planning: Hmi, changes: dict[str, Any],
                                                          message: str) -> None:
    with TestClient(planning.app()) as client:
        out = gql(client, CREATE, login(client, "sam"), ob=ob_input(**changes))
    assert message in errors(out)
    assert store(planning).list() == []


def test_only_a_too_is_observed_at_once(planning: Hmi) -> None:
    with TestClient(planning.app()) as client:
        out = gql(client, CREATE, login(client, "sam"), ob=ob_input(), now=True)
        assert triggers(client, planning) == []
    assert errors(out).startswith("observeNow: only a ToO")
    assert store(planning).list() == []


UPDATE = """mutation($i: Int!, $c: ObChanges!, $v: Int) { updateOb(obId: $i, changes: $c, expectedVersion: $v) {
  priority exposureS maxAirmass version } }"""


def test_update_ob_changes_fields_and_refuses_lost_updates(planning: Hmi) -> None:
    ob = eso(planning, "A1")
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        out = gql(client, UPDATE, token, i=ob.id, c={"priority": 1, "maxAirmass": 1.8}, v=ob.version)
        stale = errors(gql(client, UPDATE, token, i=ob.id, c={"priority": 4}, v=ob.version))
        empty = errors(gql(client, UPDATE, token, i=ob.id, c={}))
        bad = errors(gql(client, UPDATE, token, i=ob.id, c={"maxSeeingArcsec": 0}))
        unknown = errors(gql(client, UPDATE, token, i=424242, c={"priority": 4}))
        never_up = errors(gql(client, UPDATE, token, i=ob.id, c={"decDeg": 80.0}))
    assert out["data"]["updateOb"] == {"priority": 1, "exposureS": 1200.0, "maxAirmass": 1.8,
                                       "version": ob.version + 1}
    assert "changed since it was read" in stale
    assert empty == "nothing to change: name at least one field"
    assert bad == "maxSeeingArcsec: Input should be greater than 0"
    assert unknown == "unknown OB 424242"
    assert never_up.startswith("dec_deg 80.0 never rises above")
    assert store(planning).get(ob_id=ob.id).priority == 1
    assert ("sam", "ob.update", {"ob": str(ob.id), "fields": "priority,maxAirmass"}) in planning.audited


def test_delete_then_edit_a_deleted_ob_is_refused(planning: Hmi) -> None:
    ob = eso(planning, "A1")
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        deleted = gql(client, "mutation($i: Int!) { deleteOb(obId: $i) { state } }", token, i=ob.id)
        again = errors(gql(client, "mutation($i: Int!) { deleteOb(obId: $i) { state } }", token, i=ob.id))
        edit = errors(gql(client, UPDATE, token, i=ob.id, c={"priority": 4}))
    assert deleted["data"]["deleteOb"] == {"state": "deleted"}
    assert again == f"OB {ob.id} is already deleted"
    assert edit == f"OB {ob.id} is deleted: only queued or scheduled OBs can be edited"


def test_changing_an_ob_the_plan_has_yet_to_start_asks_for_a_replan(planning: Hmi) -> None:
    planned, elsewhere = eso(planning, "A1"), eso(planning, "A2")
    event = plan(start=planning.clock.now() + timedelta(minutes=10), n=1)
    assert event.blocks[0].ob_id == str(planned.id)
    delete = "mutation($i: Int!) { deleteOb(obId: $i) { state } }"
    with TestClient(planning.app()) as client:
        client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, event.encode(), retention=RET))
        token = login(client, "sam")
        gql(client, delete, token, i=elsewhere.id)  # not in the plan: nothing to re-plan
        assert triggers(client, planning) == []
        gql(client, UPDATE, token, i=planned.id, c={"priority": 1})
        gql(client, delete, token, i=planned.id)
        edited, deleted = triggers(client, planning)
    assert (edited.kind, edited.ob_id) == ("ob_change", str(planned.id))
    assert edited.reason == f"OB {planned.id} edited by sam"
    assert (deleted.kind, deleted.reason) == ("ob_change", f"OB {planned.id} deleted by sam")
    assert ("sam", "plan.ob_change", {"ob": str(planned.id), "trigger": ANY}) in planning.audited


def test_magnitude_update_sets_the_auto_exposure(planning: Hmi) -> None:
    ob = auto(planning, mid=77)
    q = "mutation($m: Int!, $g: Float!) { updateObMagnitude(mid: $m, magnitude: $g) { id magnitude exposureS } }"
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        out = gql(client, q, token, m=77, g=15.9)["data"]["updateObMagnitude"]
        unknown = errors(gql(client, q, token, m=78, g=15.9))
        absurd = errors(gql(client, q, token, m=77, g=99.0))
    assert out == {"id": ob.id, "magnitude": 15.9, "exposureS": 207.0}  # the SOXS rule: 15.9 mag → 207 s
    assert unknown == "unknown MID 78: no live auto OB"
    assert "is not a magnitude" in absurd


REPLAN = "mutation($r: String!) { replan(reason: $r) { seq user reason requestedAt } }"


def test_replan_publishes_a_manual_trigger_with_user_and_reason(planning: Hmi) -> None:
    with TestClient(planning.app()) as client:
        token = login(client, "otto")
        out = gql(client, REPLAN, token, r="clouds cleared")["data"]["replan"]
        blank = errors(gql(client, REPLAN, token, r="  "))
        (trigger,) = triggers(client, planning)
    assert out["user"] == "otto" and out["reason"] == "clouds cleared"
    assert (trigger.kind, trigger.user, trigger.reason, trigger.ts) == ("manual", "otto", "clouds cleared",
                                                                        planning.clock.now())
    assert blank.startswith("reason: say why")
    assert ("otto", "plan.replan", {"reason": "clouds cleared", "trigger": out["seq"]}) in planning.audited


def test_the_planner_acts_on_the_replan_and_the_plan_says_who_asked(planning: Hmi) -> None:
    for i in range(6):
        eso(planning, f"OB{i}", ra=15.0 + 20 * i, priority=1 + i % 3)
    service = PlannerService(bus=bus(planning), site=planning.services.site,  # type: ignore[arg-type]
                             config=SchedulerConfig(), clock=planning.clock, obs=store_obs(store(planning)),
                             store=store(planning))
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        gql(client, REPLAN, token, r="seeing is back to 0.6 arcsec")
        entries = client.portal.call(functools.partial(bus(planning).range_after, PLAN_TRIGGERS, "0-0", count=10))
        client.portal.call(service.handle_entries, entries)
        shown = gql(client, "{ plan { reason triggerKind triggerUser blocks { obId } } }", token)["data"]["plan"]
    assert shown["triggerKind"] == "manual" and shown["triggerUser"] == "sam"
    assert shown["reason"] == "re-plan asked by sam: seeing is back to 0.6 arcsec"
    assert shown["blocks"], "the re-planned night holds OBs"


# --- roles -----------------------------------------------------------------------------------------

ROLE_CASES = [
    # (operation, variables, groups allowed)
    (CREATE, {"ob": ob_input()}, {"ada", "sam"}),
    (UPDATE, {"i": 1, "c": {"priority": 3}}, {"ada", "sam"}),
    ("mutation { deleteOb(obId: 1) { id } }", {}, {"ada", "sam"}),
    ("mutation { updateObMagnitude(mid: 77, magnitude: 17.0) { id } }", {}, {"ada", "sam"}),
    (REPLAN, {"r": "why not"}, {"ada", "sam", "otto"}),
    ('mutation { reorderVes(order: ["1"], reason: "r") { planId } }', {}, {"ada", "sam", "otto"}),
    ('mutation { syncVes(reason: "r") { planId } }', {}, {"ada", "sam", "otto"}),
    ("{ activity(start: \"2026-11-21T00:00:00Z\", end: \"2026-11-23T00:00:00Z\") { nextCursor } }", {}, {"ada"}),
    # Reads: every group, never an anonymous caller.
    ("{ obs { id } }", {}, {"ada", "sam", "otto"}),
    ("{ obHistory(obId: 1) { action } }", {}, {"ada", "sam", "otto"}),
    ("{ planHistory { planId } }", {}, {"ada", "sam", "otto"}),
    ('{ report(firstNight: "2026-11-21", lastNight: "2026-11-21") { dutyCycle } }', {}, {"ada", "sam", "otto"}),
    ("{ ves { planId } }", {}, {"ada", "sam", "otto"}),
    ("{ vesHistory { planId } }", {}, {"ada", "sam", "otto"}),
]


@pytest.mark.parametrize(("operation", "variables", "allowed"), ROLE_CASES)
def test_every_new_operation_refuses_other_roles_and_anonymous(planning: Hmi, operation: str,
                                                              variables: dict[str, Any], allowed: set[str]) -> None:
    with TestClient(planning.app()) as client:
        assert errors(gql(client, operation, None, **variables)) == "log in first"
        for user in {"ada", "sam", "otto"} - allowed:
            message = errors(gql(client, operation, login(client, user), **variables))
            assert f"{user} (" in message and "may not" in message
    assert [a for a in planning.audited if a[1] not in ("login", "login.failed")] == []
    assert store(planning).list() == []
