"""The real p2api client against the P2 emulator: login, OBs with ETags, the VES, P2's response rules, restarts."""

from __future__ import annotations

from pathlib import Path

import httpx
import p2api
import pytest

from tests.integration.ves_sync.conftest import PASSWORD, SOXS_CONTAINER, client
from ves_sync.emulator import EmulatorServer
from ves_sync.p2 import P2Account, P2CallError, P2Client, P2UnreachableError, register_environment

pytestmark = pytest.mark.integration


def observable_ob(api: p2api.ApiConnection, name: str) -> int:
    ob, etag = api.createOB(SOXS_CONTAINER, name)
    ob["target"].update(name="SN2026xyz", ra="03:32:10.500", dec="-27:48:00.00")
    api.saveOB(ob, etag)
    api.createTemplate(ob["obId"], "SOXS_acq_img")
    api.createTemplate(ob["obId"], "SOXS_spec_obs_stare")
    result, _ = api.verifyOB(ob["obId"], True)
    assert result["observable"], result
    return int(ob["obId"])


def test_real_p2api_creates_saves_and_sequences_an_ob(environment: str) -> None:
    api = p2api.ApiConnection(environment, "soxs", PASSWORD)
    assert api.getUser()[0]["username"] == "soxs"
    runs, _ = api.getRuns()
    assert SOXS_CONTAINER in {r["containerId"] for r in runs}

    ob, etag = api.createOB(SOXS_CONTAINER, "first")
    ob["target"].update(name="SN2026xyz", ra="03:32:10.500", dec="-27:48:00.00")
    saved, new_etag = api.saveOB(ob, etag)
    assert saved["target"]["name"] == "SN2026xyz"
    assert new_etag != etag

    with pytest.raises(p2api.P2Error) as stale:
        api.saveOB(ob, etag)
    assert stale.value.args[0] == 412

    api.createTemplate(ob["obId"], "SOXS_acq_img")
    science, tpl_etag = api.createTemplate(ob["obId"], "SOXS_spec_obs_stare")
    api.setTemplateParams(ob["obId"], science, {"SEQ.EXPTIME": 1200.0}, tpl_etag)
    assert api.getOB(ob["obId"])[0]["exposureTime"] == 1200
    assert api.verifyOB(ob["obId"], True)[0]["observable"]

    operator = p2api.ApiConnection(environment, "operator", PASSWORD)
    ves, ves_etag = operator.getExecutionSequence("SOXS")
    assert ves == []
    operator.saveExecutionSequence("SOXS", [{"obId": ob["obId"]}], ves_etag)
    ves, _ = operator.getExecutionSequence("SOXS")
    assert [(e["obId"], e["obStatus"]) for e in ves] == [(ob["obId"], "+")]


def test_p2api_sub_resources_round_trip(environment: str, tmp_path: Path) -> None:
    api = p2api.ApiConnection(environment, "soxs", PASSWORD)
    ob_id = observable_ob(api, "sub")
    _, tc_etag = api.getAbsoluteTimeConstraints(ob_id)
    tcs, _ = api.saveAbsoluteTimeConstraints(ob_id, [{"from": "2026-11-22T00:30", "to": "2026-11-22T04:00"}],
                                             tc_etag)
    assert tcs == [{"from": "2026-11-22T00:30", "to": "2026-11-22T04:00"}]
    _, sid_etag = api.getSiderealTimeConstraints(ob_id)
    api.saveSiderealTimeConstraints(ob_id, [{"from": "22:00", "to": "02:00"}], sid_etag)
    chart = tmp_path / "fc.jpg"
    chart.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    assert api.addFindingChart(ob_id, str(chart))[0] == "fc.jpg"
    assert api.getFindingChartNames(ob_id)[0] == ["fc.jpg"]
    api.getFindingChart(ob_id, 1, str(tmp_path / "back.jpg"))
    assert (tmp_path / "back.jpg").read_bytes() == chart.read_bytes()
    not_jpeg = tmp_path / "fc2.jpg"
    not_jpeg.write_bytes(b"GIF89a")
    with pytest.raises(p2api.P2Error, match="not a JPEG"):
        api.addFindingChart(ob_id, str(not_jpeg))
    templates, _ = api.getTemplates(ob_id)
    assert [t["type"] for t in templates] == ["acquisition", "science"]
    folder, _ = api.createFolder(SOXS_CONTAINER, "tonight")
    api.moveOB(ob_id, folder["containerId"])
    assert [i["obId"] for i in api.getItems(folder["containerId"])[0]] == [ob_id]
    assert api.getOBSummary(folder["containerId"])[0][0]["obStatus"] == "+"
    assert api.getNightExecutions("SOXS", "2026-11-21")[0] == []
    assert api.getOBExecutions(ob_id, "2026-11-21")[0] == []
    _, ob_etag = api.getOB(ob_id)
    api.deleteOB(ob_id, ob_etag)
    with pytest.raises(p2api.P2Error, match="does not exist"):
        api.getOB(ob_id)


def test_responses_follow_p2s_rules(emulator: EmulatorServer, environment: str) -> None:
    api = p2api.ApiConnection(environment, "soxs", PASSWORD)
    folder, _ = api.createFolder(SOXS_CONTAINER, "empty")
    _, etag = api.getContainer(folder["containerId"])
    headers = {"Authorization": f"Bearer {api.access_token}", "If-Match": etag or ""}
    with httpx.Client(base_url=emulator.api_url, timeout=5) as http:
        deleted = http.delete(f"/containers/{folder['containerId']}", headers=headers)
        assert deleted.status_code == 204
        assert deleted.headers["content-type"].startswith("text/plain")
        assert deleted.content == b""
        unauthenticated = http.get("/obsRuns")
        assert unauthenticated.status_code == 401
        assert "error" in unauthenticated.json()
        unknown = http.get("/nowhere", headers=headers)
        assert unknown.status_code == 404
        assert unknown.json()["error"].endswith("Not Found")
        garbage = http.put(f"/obsBlocks/{1}", headers=headers, content=b"{not json")
        assert garbage.status_code == 400
        assert "not valid JSON" in garbage.json()["error"]
        # The caller is authenticated before the body is read: a stranger learns nothing about it.
        stranger = http.put(f"/obsBlocks/{1}", headers={"Authorization": "Bearer nope"}, content=b"{not json")
        assert stranger.status_code == 401
        no_such_ob = http.put("/obsBlocks/abc", headers=headers, content=b"{}")
        assert no_such_ob.status_code == 400
        assert "ob_id" in no_such_ob.json()["error"]


def test_bad_ob_content_gets_a_clear_p2_error(environment: str) -> None:
    api = p2api.ApiConnection(environment, "soxs", PASSWORD)
    ob, etag = api.createOB(SOXS_CONTAINER, "bad")
    ob["constraints"]["airmass"] = 0.5
    ob["target"]["ra"] = "24:61:00"
    with pytest.raises(p2api.P2Error) as info:
        api.saveOB(ob, etag)
    status, method, _url, message = info.value.args
    assert (status, method) == (400, "PUT")
    assert "target.ra" in message
    assert "constraints.airmass" in message


def test_wrong_password_and_unreachable_server_are_told_apart(emulator: EmulatorServer, environment: str) -> None:
    with pytest.raises(P2CallError) as info:
        P2Client(P2Account(environment, "soxs", "wrong")).get_user()
    assert info.value.status == 401
    assert info.value.message == "cannot login"
    emulator.stop()
    with pytest.raises(P2UnreachableError):
        client(environment, "soxs").get_user()


def test_state_and_sessions_survive_a_restart(emulator: EmulatorServer, environment: str) -> None:
    api = p2api.ApiConnection(environment, "soxs", PASSWORD)
    ob_id = observable_ob(api, "durable")
    operator = p2api.ApiConnection(environment, "operator", PASSWORD)
    _, ves_etag = operator.getExecutionSequence("SOXS")
    operator.saveExecutionSequence("SOXS", [{"obId": ob_id}], ves_etag)
    before = api.getOB(ob_id)

    emulator.stop()
    emulator.start()
    register_environment(environment, emulator.api_url, emulator.login_url)

    assert api.getOB(ob_id) == before
    assert [e["obId"] for e in operator.getExecutionSequence("SOXS")[0]] == [ob_id]
