"""The GraphQL API through its protocols: HTTP queries and mutations, graphql-transport-ws subscriptions."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.unit.hmi_api.conftest import PASSWORD, Hmi

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token user { group } } }"


def gql(client: TestClient, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def login(client: TestClient, user: str) -> str:
    out = gql(client, LOGIN, u=user, p=PASSWORD)
    assert "errors" not in out, out
    return str(out["data"]["login"]["token"])


def test_login_then_me(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        me = gql(client, "{ me { username group } }", token)
        assert me["data"]["me"] == {"username": "otto", "group": "OPERATOR"}
        assert ("otto", "login", {"address": "testclient"}) in hmi.audited


def test_anonymous_and_bad_tokens_are_refused(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client:
        assert gql(client, "{ me { username } }")["errors"][0]["message"] == "log in first"
        assert gql(client, "{ me { username } }", "not-a-token")["errors"][0]["message"] == "log in first"
        bad = gql(client, LOGIN, u="otto", p="wrong password!")
        assert bad["errors"][0]["message"] == "invalid username or password"
        assert hmi.audited[-1][1] == "login.failed"


ADMIN_MUTATIONS = [
    'mutation { createUser(user: {username: "newbie", fullName: "N", group: OPERATOR, password: "0123456789ab"}) '
    "{ username } }",
    'mutation { updateUser(username: "sam", changes: {fullName: "Samantha"}) { fullName } }',
    'mutation { deleteUser(username: "sam") }',
    "mutation { setSessionDuration(hours: 2) }",
    "{ users { username } }",
]


@pytest.mark.parametrize("operation", ADMIN_MUTATIONS)
def test_admin_operations_refuse_other_roles_and_anonymous(hmi: Hmi, operation: str) -> None:
    with TestClient(hmi.app()) as client:
        for user in ("sam", "otto"):
            out = gql(client, operation, login(client, user))
            assert "may not" in out["errors"][0]["message"], out
        assert gql(client, operation)["errors"][0]["message"] == "log in first"
        out = gql(client, operation, login(client, "ada"))
        assert "errors" not in out, out


def test_user_management_reports_bad_input_clearly(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client:
        token = login(client, "ada")
        short = gql(client, 'mutation { createUser(user: {username: "x y", fullName: "N", group: OPERATOR, '
                            'password: "short"}) { username } }', token)
        message = short["errors"][0]["message"]
        assert "username" in message
        assert "password: password must have at least 10 characters" in message
        dup = gql(client, 'mutation { createUser(user: {username: "sam", fullName: "N", group: OPERATOR, '
                          'password: "0123456789ab"}) { username } }', token)
        assert "sam" in dup["errors"][0]["message"]
        assert hmi.users.get(username="sam").group.value == "Science"  # the existing account is untouched


def test_metrics_count_logins(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client:
        login(client, "otto")
        gql(client, LOGIN, u="otto", p="wrong password!")
        text = client.get("/metrics").text
        assert 'skyops_hmi_logins_total{result="ok"} 1.0' in text
        assert 'skyops_hmi_logins_total{result="refused"} 1.0' in text


def ws(client: TestClient):  # type: ignore[no-untyped-def]
    return client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"])


def test_websocket_without_a_token_is_closed_4403(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client, ws(client) as conn:
        conn.send_json({"type": "connection_init", "payload": {}})
        with pytest.raises(WebSocketDisconnect) as info:
            conn.receive_json()
        assert info.value.code == 4403


def test_websocket_with_a_bad_token_is_closed_4403(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client, ws(client) as conn:
        conn.send_json({"type": "connection_init", "payload": {"token": "forged"}})
        with pytest.raises(WebSocketDisconnect) as info:
            conn.receive_json()
        assert info.value.code == 4403


def test_only_graphql_transport_ws_is_spoken(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client, pytest.raises(WebSocketDisconnect), \
            client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as conn:
        conn.receive_json()


def test_subscription_after_connection_init(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client:
        token = login(client, "otto")
        with ws(client) as conn:
            conn.send_json({"type": "connection_init", "payload": {"token": token}})
            ack = conn.receive_json()
            assert ack == {"type": "connection_ack", "payload": {"user": "otto"}}
            conn.send_json({"id": "1", "type": "subscribe",
                            "payload": {"query": "subscription { serverTime(intervalS: 0.05) }"}})
            msg = conn.receive_json()
            assert msg["type"] == "next"
            assert msg["payload"]["data"]["serverTime"].startswith("2026-11-22T03:00:00")
            conn.send_json({"id": "1", "type": "complete"})


def test_operator_page_and_its_assets_are_served(hmi: Hmi) -> None:
    with TestClient(hmi.app()) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "skyops" in page.text
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/static/app.css").status_code == 200
        assert client.get("/static/nope.js").status_code == 404
