"""The P2 emulator's rules, called directly: ETags, read-only fields, delegation, the VES, persistence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ves_sync.emulator import P2ApiError, P2State, SnapshotFile, SnapshotWriter, default_seed, open_state
from ves_sync.emulator.seed import Seed

SEED = default_seed()
SOXS = SEED.user("soxs").user_id
PI = SEED.user("pi").user_id
PI2 = SEED.user("pi2").user_id
OPERATOR = SEED.user("operator").user_id
SOXS_ROOT = SEED.run_of("soxs").container_id


@pytest.fixture
def state() -> P2State:
    return P2State(SEED)


def status_of(call: Any) -> int:
    with pytest.raises(P2ApiError) as info:
        call()
    return info.value.status


def ready_ob(state: P2State, user: int = SOXS, container: int = SOXS_ROOT, name: str = "ob") -> int:
    ob, etag = state.create_item(user, container, {"itemType": "OB", "name": name})
    ob["target"].update(name="SN2026xyz", ra="10:00:00.000", dec="-30:00:00.00")
    state.save_ob(user, ob["obId"], ob, etag)
    state.create_template(user, ob["obId"], {"templateName": "SOXS_acq_img"})
    state.create_template(user, ob["obId"], {"templateName": "SOXS_spec_obs_stare"})
    result, _ = state.verify_ob(user, ob["obId"], {"submit": True})
    assert result["observable"]
    return int(ob["obId"])


def test_login_gives_a_token_that_names_the_user(state: P2State) -> None:
    token = state.login("soxs", "p2-emulator")
    assert state.authenticate(f"Bearer {token}") == SOXS
    assert status_of(lambda: state.login("soxs", "wrong")) == 401
    assert status_of(lambda: state.authenticate("Bearer nope")) == 401
    assert status_of(lambda: state.authenticate(None)) == 401


def test_save_needs_the_current_etag(state: P2State) -> None:
    ob, etag = state.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": "a"})
    ob["userPriority"] = 5
    saved, new_etag = state.save_ob(SOXS, ob["obId"], ob, etag)
    assert new_etag != etag
    assert saved["userPriority"] == 5
    assert status_of(lambda: state.save_ob(SOXS, ob["obId"], ob, etag)) == 412
    assert status_of(lambda: state.save_ob(SOXS, ob["obId"], ob, None)) == 428
    assert status_of(lambda: state.delete_ob(SOXS, ob["obId"], etag)) == 412
    state.delete_ob(SOXS, ob["obId"], new_etag)
    assert status_of(lambda: state.get_ob(SOXS, ob["obId"])) == 404


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"obStatus": "+"}, "read-only"),
        ({"exposureTime": 99}, "read-only"),
        ({"target": {"name": "x", "ra": "25:00:00.000", "dec": "+00:00:00.00"}}, "target.ra"),
        ({"target": {"name": "x", "ra": "10:00:00.000", "dec": "-91:00:00.00"}}, "target.dec"),
        ({"constraints": {"airmass": 9, "fli": 1, "seeing": 1, "moonDistance": 30, "twilight": 0}},
         "constraints.airmass"),
        ({"spectrograph": "UVES"}, "spectrograph"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_ob_content_is_refused_naming_the_field(state: P2State, change: dict[str, Any], message: str) -> None:
    ob, etag = state.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": "a"})
    with pytest.raises(P2ApiError, match=message) as info:
        state.save_ob(SOXS, ob["obId"], ob | change, etag)
    assert info.value.status == 400
    # Nothing of the refused save was kept, and the ETag still holds.
    assert state.get_ob(SOXS, ob["obId"]) == (ob, etag)


def test_operator_sees_delegated_obs_only(state: P2State) -> None:
    mine = ready_ob(state)
    theirs = ready_ob(state, PI2, SEED.run_of("pi2").container_id)
    assert state.get_ob(OPERATOR, mine)[0]["obId"] == mine
    assert status_of(lambda: state.get_ob(OPERATOR, theirs)) == 403
    assert status_of(lambda: state.get_ob(PI, mine)) == 403
    assert {r["progId"] for r in state.runs(OPERATOR)} == {"112.29SX.001", "112.2ABC.001", "112.2SRV.001"}


def test_ves_takes_only_verified_visitor_obs_of_the_instrument(state: P2State) -> None:
    ready = ready_ob(state, name="ready")
    draft, _ = state.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": "draft"})
    service = ready_ob(state, container=SEED.run_of("soxs").container_id, name="x")
    _, etag = state.get_ves(OPERATOR, "SOXS")
    with pytest.raises(P2ApiError, match="status 'P'") as info:
        state.save_ves(OPERATOR, "SOXS", [{"obId": ready}, {"obId": draft["obId"]}], etag)
    assert info.value.status == 400
    assert state.get_ves(OPERATOR, "SOXS") == ([], etag)
    with pytest.raises(P2ApiError, match="more than once"):
        state.save_ves(OPERATOR, "SOXS", [{"obId": ready}, {"obId": ready}], etag)
    assert status_of(lambda: state.get_ves(OPERATOR, "UVES")) == 404
    ves, new_etag = state.save_ves(OPERATOR, "SOXS", [{"obId": service}, {"obId": ready, "name": "extra ok"}], etag)
    assert [e["obId"] for e in ves] == [service, ready]
    assert status_of(lambda: state.save_ves(OPERATOR, "SOXS", [], etag)) == 412
    # Each user has their own VES.
    assert state.get_ves(SOXS, "SOXS")[0] == []
    assert new_etag != etag


def test_service_mode_obs_stay_out_of_the_ves(state: P2State) -> None:
    sm_root = SEED.runs[3].container_id
    assert SEED.runs[3].mode == "SM"
    ob, etag = state.create_item(SOXS, sm_root, {"itemType": "OB", "name": "sm"})
    ob["target"].update(name="T", ra="01:00:00.000", dec="+01:00:00.00")
    state.save_ob(SOXS, ob["obId"], ob, etag)
    state.create_template(SOXS, ob["obId"], {"templateName": "SOXS_acq_img"})
    state.create_template(SOXS, ob["obId"], {"templateName": "SOXS_img_obs"})
    state.verify_ob(SOXS, ob["obId"], {"submit": True})
    assert state.get_ob(SOXS, ob["obId"])[0]["obStatus"] == "D"
    _, etag = state.get_ves(OPERATOR, "SOXS")
    with pytest.raises(P2ApiError, match="service mode"):
        state.save_ves(OPERATOR, "SOXS", [{"obId": ob["obId"]}], etag)


def test_revise_takes_the_ob_out_of_the_ves_and_changes_its_etag(state: P2State) -> None:
    a, b = ready_ob(state, name="a"), ready_ob(state, name="b")
    _, etag = state.get_ves(OPERATOR, "SOXS")
    _, etag = state.save_ves(OPERATOR, "SOXS", [{"obId": a}, {"obId": b}], etag)
    ob_etag = state.get_ob(SOXS, a)[1]
    revised, revised_etag = state.revise_ob(SOXS, a)
    assert revised["obStatus"] == "P"
    assert revised_etag != ob_etag
    ves, ves_etag = state.get_ves(OPERATOR, "SOXS")
    assert [e["obId"] for e in ves] == [b]
    assert ves_etag != etag


def test_verify_reports_what_is_missing(state: P2State) -> None:
    ob, _ = state.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": "empty"})
    result, _ = state.verify_ob(SOXS, ob["obId"], {"submit": True})
    assert not result["observable"]
    assert any("acquisition" in m for m in result["messages"])
    assert state.get_ob(SOXS, ob["obId"])[0]["obStatus"] == "P"


def test_templates_set_the_exposure_time_and_check_their_values(state: P2State) -> None:
    ob_id = ready_ob(state)
    templates, _ = state.get_templates(SOXS, ob_id)
    science = templates[1]
    tpl, etag = state.get_template(SOXS, ob_id, science["templateId"])
    for p in tpl["parameters"]:
        if p["name"] == "SEQ.EXPTIME":
            p["value"] = 900
        if p["name"] == "SEQ.NEXP":
            p["value"] = 2
    _, new_etag = state.save_template(SOXS, ob_id, tpl["templateId"], tpl, etag)
    ob = state.get_ob(SOXS, ob_id)[0]
    assert ob["exposureTime"] == 1800
    assert ob["executionTime"] == 1800 + 420 + 120
    tpl["parameters"][0]["value"] = 99999
    with pytest.raises(P2ApiError, match=r"SEQ.EXPTIME: 99999.0 is outside \[1.0, 7200.0\]"):
        state.save_template(SOXS, ob_id, tpl["templateId"], tpl, new_etag)
    with pytest.raises(P2ApiError, match="already has an acquisition"):
        state.create_template(SOXS, ob_id, {"templateName": "SOXS_acq_img"})
    with pytest.raises(P2ApiError, match="unknown template"):
        state.create_template(SOXS, ob_id, {"templateName": "UVES_blue_acq_slit"})


def test_items_reorder_and_move(state: P2State) -> None:
    a, _ = state.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": "a"})
    folder, _ = state.create_item(SOXS, SOXS_ROOT, {"itemType": "Folder", "name": "tonight"})
    items, etag = state.get_items(SOXS, SOXS_ROOT)
    with pytest.raises(P2ApiError, match="exactly the container's current items"):
        state.reorder_items(SOXS, SOXS_ROOT, items[:1], etag)
    items, etag = state.reorder_items(SOXS, SOXS_ROOT, items[::-1], etag)
    assert [i["name"] for i in items] == ["tonight", "a"]
    state.append_item(SOXS, folder["containerId"], {"itemType": "OB", "obId": a["obId"]})
    assert [i["name"] for i in state.get_items(SOXS, SOXS_ROOT)[0]] == ["tonight"]
    assert state.get_ob(SOXS, a["obId"])[0]["parentContainerId"] == folder["containerId"]
    assert status_of(lambda: state.create_item(SOXS, SOXS_ROOT, {"itemType": "Group", "name": "g"})) == 400
    assert status_of(lambda: state.create_item(SOXS, 999, {"itemType": "OB", "name": "g"})) == 404


def test_time_constraints_are_checked(state: P2State) -> None:
    ob_id = ready_ob(state)
    _, etag = state.get_time_constraints(SOXS, ob_id, "abs")
    with pytest.raises(P2ApiError, match="overlap"):
        state.save_time_constraints(SOXS, ob_id, "abs", [
            {"from": "2026-11-22T00:00", "to": "2026-11-22T05:00"},
            {"from": "2026-11-22T04:00", "to": "2026-11-22T06:00"}], etag)
    with pytest.raises(P2ApiError, match="earlier"):
        state.save_time_constraints(SOXS, ob_id, "abs", [{"from": "2026-11-22T05:00", "to": "2026-11-22T01:00"}],
                                    etag)
    saved, _ = state.save_time_constraints(SOXS, ob_id, "sid", [{"from": "03:00", "to": "05:00"}],
                                           state.get_time_constraints(SOXS, ob_id, "sid")[1])
    assert saved == [{"from": "03:00", "to": "05:00"}]


def test_executions_are_listed_per_night_and_visible_by_delegation(state: P2State) -> None:
    ob_id = ready_ob(state)
    state.record_execution(OPERATOR, "SOXS", {"obId": ob_id, "night": "2026-11-21",
                                              "from": "2026-11-22T01:00:00+00:00", "to": "2026-11-22T01:18:00+00:00",
                                              "status": "executed"})
    assert [e["obId"] for e in state.night_executions(SOXS, "SOXS", "2026-11-21")[0]] == [ob_id]
    assert state.night_executions(PI2, "SOXS", "2026-11-21")[0] == []
    assert state.ob_executions(OPERATOR, ob_id, "2026-11-20")[0] == []
    assert state.get_ob(SOXS, ob_id)[0]["obStatus"] == "X"
    assert status_of(lambda: state.delete_ob(SOXS, ob_id, state.get_ob(SOXS, ob_id)[1])) == 409


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = open_state(tmp_path)
    ob_id = ready_ob(first)
    token = first.login("operator", "p2-emulator")
    _, etag = first.get_ves(OPERATOR, "SOXS")
    first.save_ves(OPERATOR, "SOXS", [{"obId": ob_id}], etag)

    again = open_state(tmp_path)
    assert again.authenticate(f"Bearer {token}") == OPERATOR
    assert again.get_ob(SOXS, ob_id) == first.get_ob(SOXS, ob_id)
    assert again.get_ves(OPERATOR, "SOXS") == first.get_ves(OPERATOR, "SOXS")
    # New ids never collide with those handed out before the restart.
    ob, _ = again.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": "next"})
    assert ob["obId"] > ob_id


def test_a_corrupt_snapshot_is_reported_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "p2-emulator.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        open_state(tmp_path)


def test_seed_refuses_runs_of_unknown_users() -> None:
    data = SEED.model_dump()
    data["runs"][0]["delegated_to"] = (123,)
    with pytest.raises(ValueError, match="unknown users"):
        Seed.model_validate(data)


def test_old_sessions_expire_so_the_state_stays_bounded(state: P2State, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ves_sync.emulator.state.MAX_SESSIONS", 3)
    tokens = [state.login("operator", "p2-emulator") for _ in range(5)]
    assert status_of(lambda: state.authenticate(f"Bearer {tokens[0]}")) == 401
    assert state.authenticate(f"Bearer {tokens[-1]}") == OPERATOR
    assert len(state.snapshot()["tokens"]) == 3


def test_coalesced_snapshots_write_bursts_once_and_the_last_on_close(tmp_path: Path) -> None:
    state = open_state(tmp_path, write_delay_s=0.2)
    for n in range(20):
        state.create_item(SOXS, SOXS_ROOT, {"itemType": "OB", "name": f"ob{n}"})
    state.close()  # writes what the burst left, without waiting for the delay
    again = open_state(tmp_path)
    assert len(again.get_items(SOXS, SOXS_ROOT)[0]) == 20


def test_a_burst_of_changes_costs_at_most_two_writes(tmp_path: Path) -> None:
    counter = {"n": 0}

    def dump() -> str:
        return json.dumps({"n": counter["n"]})

    writer = SnapshotWriter(SnapshotFile(tmp_path / "s.json"), dump, delay_s=0.5)
    for _ in range(100):
        counter["n"] += 1
        writer.notify()
    writer.close()
    assert writer.writes <= 2
    assert json.loads((tmp_path / "s.json").read_text()) == {"n": 100}


def test_an_execution_is_updated_not_duplicated_when_sent_again(state: P2State) -> None:
    ob_id = ready_ob(state)
    started = {"obId": ob_id, "night": "2026-11-21", "from": "2026-11-22T01:00:00+00:00", "status": "started"}
    state.record_execution(OPERATOR, "SOXS", started)
    state.record_execution(OPERATOR, "SOXS", started)  # a retry after a lost answer
    assert state.get_ob(SOXS, ob_id)[0]["obStatus"] == "S"
    # The same start written in another notation is the same execution.
    done = {**started, "from": "2026-11-22T01:00:00Z", "to": "2026-11-22T01:18:00+00:00", "status": "executed"}
    entry, _ = state.record_execution(OPERATOR, "SOXS", done)
    state.record_execution(OPERATOR, "SOXS", done)
    state.record_execution(OPERATOR, "SOXS", started)  # a late "started" does not reopen it
    executions = state.night_executions(OPERATOR, "SOXS", "2026-11-21")[0]
    assert executions == [entry]
    assert entry["status"] == "executed" and entry["to"] == "2026-11-22T01:18:00+00:00"
    assert state.get_ob(SOXS, ob_id)[0]["obStatus"] == "X"


def test_an_aborted_execution_leaves_the_ob_aborted_and_in_the_ves(state: P2State) -> None:
    ob_id = ready_ob(state)
    _, etag = state.get_ves(OPERATOR, "SOXS")
    _, etag = state.save_ves(OPERATOR, "SOXS", [{"obId": ob_id}], etag)
    state.record_execution(OPERATOR, "SOXS", {"obId": ob_id, "night": "2026-11-21", "status": "aborted",
                                              "from": "2026-11-22T01:00:00+00:00", "to": "2026-11-22T01:05:00+00:00"})
    ves, new_etag = state.get_ves(OPERATOR, "SOXS")
    assert [(e["obId"], e["obStatus"]) for e in ves] == [(ob_id, "A")]
    assert new_etag != etag  # the VES shows statuses: its ETag moves with them


@pytest.mark.parametrize(("changes", "message"), [
    ({"status": "executed"}, "needs 'to'"),
    ({"to": "2026-11-22T00:59:00+00:00", "status": "executed"}, "earlier than 'from'"),
    ({"status": "finished"}, "invalid execution: status"),
    ({"from": "2026-11-22T01:00:00"}, "invalid execution: from"),
    ({"night": "21/11/2026"}, "invalid execution: night"),
])
def test_bad_executions_are_refused_with_the_field(state: P2State, changes: dict[str, Any], message: str) -> None:
    ob_id = ready_ob(state)
    body = {"obId": ob_id, "night": "2026-11-21", "from": "2026-11-22T01:00:00+00:00", "status": "started"}
    with pytest.raises(P2ApiError, match=message) as info:
        state.record_execution(OPERATOR, "SOXS", {**body, **changes})
    assert info.value.status == 400
    assert state.night_executions(OPERATOR, "SOXS", "2026-11-21")[0] == []
