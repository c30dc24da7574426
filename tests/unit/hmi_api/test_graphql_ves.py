"""GraphQL for the VES: the sequence and history the sync wrote, reorder and re-sync through plan.events."""

from __future__ import annotations

import functools
from datetime import timedelta

from fastapi.testclient import TestClient

from hmi_api.planops import pending_blocks
from skyops.messages import PlanEvent, decode_plan_event
from skyops.streams import PLAN_EVENTS
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import gql, login
from tests.unit.hmi_api.test_graphql_planning import RET, bus, errors
from tests.unit.hmi_api.test_planops import plan
from ves_sync.domain.ves import VesChange, latest_per_night
from ves_sync.store import LinkUpdate, VesSyncStore


def ves_store(h: Hmi) -> VesSyncStore:
    assert h.services.ves is not None
    return h.services.ves


def synced(h: Hmi, event: PlanEvent, *, before: tuple[int, ...] = ()) -> VesChange:
    """What the VES sync leaves behind after writing `event`: links of our OBs to P2 OBs and a VES change."""
    now = h.clock.now()
    store = ves_store(h)
    store.save_links([LinkUpdate(ob_id=b.ob_id, p2_ob_id=1000 + int(b.ob_id), container_id=9, content_digest="d",
                                 p2_ob={"obStatus": "+"}, p2_etag="e") for b in event.blocks], now=now)
    change = VesChange(ts=now, instrument="SOXS", written_by="operator", night=event.night, plan_id=event.plan_id,
                       reason=event.reason, trigger_kind=None, alarm_id=None, too_ob_id=None, before=before,
                       after=tuple(1000 + int(b.ob_id) for b in event.blocks))
    store.mark_synced(night=event.night, plan_id=event.plan_id, plan_created=event.created, now=now, change=change)
    return change


def published(client: TestClient, h: Hmi) -> list[PlanEvent]:
    entries = client.portal.call(functools.partial(bus(h).range_after, PLAN_EVENTS, "0-0", count=100))
    return [decode_plan_event(e.payload) for e in entries]


VES = """query($n: String) { ves(night: $n) { night planId writtenBy reason
  entries { position p2ObId obId p2Status name targetName } } }"""


def test_ves_is_the_sequence_the_sync_wrote_with_our_ob_names(planning: Hmi) -> None:
    event = plan()
    synced(planning, event)
    with TestClient(planning.app()) as client:
        client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, event.encode(), retention=RET))
        token = login(client, "otto")
        ves = gql(client, VES, token)["data"]["ves"]
        other_night = gql(client, VES, token, n="2026-11-01")["data"]["ves"]
        bad = errors(gql(client, VES, token, n="21/11/2026"))
    assert (ves["night"], ves["planId"], ves["writtenBy"]) == ("2026-11-21", event.plan_id, "operator")
    assert [(e["position"], e["p2ObId"], e["obId"], e["p2Status"]) for e in ves["entries"]][:2] == [
        (1, 1001, "1", "+"), (2, 1002, "2", "+")]
    assert ves["entries"][0]["name"] == "OB 1" and ves["entries"][0]["targetName"] == "T1"
    assert other_night is None
    assert bad == "night: '21/11/2026' is not a date (YYYY-MM-DD)"


def test_ves_shows_the_planned_starts_of_the_plan_it_was_written_from(planning: Hmi) -> None:
    written = plan()
    newer = plan(start=written.blocks[0].start + timedelta(hours=1), plan_id="2026-11-21#2")
    synced(planning, written)
    query = "{ ves { planId entries { obId start } } }"
    with TestClient(planning.app()) as client:
        for event in (written, newer):  # a newer plan is out, but the sync has not written it yet
            client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, event.encode(), retention=RET))
        ves = gql(client, query, login(client, "otto"))["data"]["ves"]
    assert ves["planId"] == written.plan_id
    assert [e["start"] for e in ves["entries"]] == [b.start.isoformat() for b in written.blocks]


def test_ves_before_any_sync_is_null(planning: Hmi) -> None:
    with TestClient(planning.app()) as client:
        assert gql(client, VES, login(client, "otto"))["data"]["ves"] is None


def test_ves_history_newest_first(planning: Hmi) -> None:
    first = plan()
    synced(planning, first)
    planning.clock.advance(timedelta(minutes=5))
    second = plan(plan_id="2026-11-21#2")
    synced(planning, second, before=(1001, 1002))
    q = "query($l: Int!) { vesHistory(limit: $l) { planId before after writtenBy } }"
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        history = gql(client, q, token, l=10)["data"]["vesHistory"]
        bad = errors(gql(client, q, token, l=0))
    assert [h["planId"] for h in history] == ["2026-11-21#2", "2026-11-21#1"]
    assert history[0]["before"] == [1001, 1002] and history[0]["after"][0] == 1001
    assert bad == "limit must be between 1 and 1000"


REORDER = """mutation($o: [String!]!, $r: String!) { reorderVes(order: $o, reason: $r) {
  planId reason triggerKind triggerUser blocks { obId start end } } }"""


def test_reorder_publishes_a_new_plan_the_ves_sync_takes_as_current(planning: Hmi) -> None:
    event = plan()
    _, waiting = pending_blocks(event, planning.clock.now())
    assert [b.ob_id for b in waiting] == ["3", "4", "5"]
    with TestClient(planning.app()) as client:
        client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, event.encode(), retention=RET))
        token = login(client, "sam")
        out = gql(client, REORDER, token, o=["5", "4", "3"], r="5 sets soonest")["data"]["reorderVes"]
        shown = gql(client, "{ plan { planId blocks { obId } } }", token)["data"]["plan"]
        on_bus = published(client, planning)
    assert [b["obId"] for b in out["blocks"]] == ["1", "2", "5", "4", "3"]
    assert out["reason"] == "VES reordered by sam: 5 sets soonest"
    assert (out["triggerKind"], out["triggerUser"]) == ("manual", "sam")
    assert shown["planId"] == out["planId"]
    assert latest_per_night(on_bus) == [on_bus[-1]] and on_bus[-1].plan_id == out["planId"]
    assert ("sam", "ves.reorder", {"plan": out["planId"], "order": "5,4,3",
                                   "reason": "VES reordered: 5 sets soonest"}) in planning.audited


def test_reorder_refuses_bad_orders_and_a_missing_plan(planning: Hmi) -> None:
    with TestClient(planning.app()) as client:
        token = login(client, "sam")
        none_yet = errors(gql(client, REORDER, token, o=["1"], r="r"))
        client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, plan().encode(), retention=RET))
        started = errors(gql(client, REORDER, token, o=["1", "3", "4", "5"], r="r"))
        short = errors(gql(client, REORDER, token, o=["5", "4"], r="r"))
        no_reason = errors(gql(client, REORDER, token, o=["5", "4", "3"], r=""))
        assert len(published(client, planning)) == 1
    assert none_yet == "no plan has been published yet: there is no VES to change"
    assert "OB(s) 1 are not waiting in the plan" in started
    assert short == "order: list every waiting OB; missing 3"
    assert no_reason.startswith("reason: say why")


def test_sync_ves_republishes_the_current_plan(planning: Hmi) -> None:
    event = plan()
    with TestClient(planning.app()) as client:
        client.portal.call(functools.partial(bus(planning).publish, PLAN_EVENTS, event.encode(), retention=RET))
        out = gql(client, 'mutation { syncVes(reason: "P2 was down") { planId reason } }',
                  login(client, "otto"))["data"]["syncVes"]
        on_bus = published(client, planning)
    assert out["reason"] == "VES sync requested by otto: P2 was down"
    assert len(on_bus) == 2 and on_bus[1].blocks == event.blocks and on_bus[1].created > event.created
    assert ("otto", "ves.sync", {"plan": out["planId"], "reason": "VES sync requested: P2 was down"}) \
        in planning.audited
