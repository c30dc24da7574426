"""The administrators' activity log: every user action, read back from the audit records in the log archive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hmi_api.graphql.admin import AUDIT_COMPONENT, AUDIT_SOURCE
from skyops.archive.sqlite import SqliteArchive
from skyops.records import LogRecord
from tests.unit.hmi_api.conftest import Hmi
from tests.unit.hmi_api.test_graphql import gql, login
from tests.unit.hmi_api.test_graphql_planning import errors

ACTIVITY = """query($s: DateTime!, $e: DateTime!, $u: String, $a: String, $l: Int! = 200, $c: String) {
  activity(start: $s, end: $e, user: $u, action: $a, limit: $l, cursor: $c) {
    entries { time user action details } nextCursor } }"""


@pytest.fixture
def audited(planning: Hmi, tmp_path: Path) -> Iterator[Hmi]:
    """Audit records go to a real (SQLite) log archive, as deploy's hook sends them through the log stream."""
    archive = SqliteArchive(tmp_path / "archive.sqlite3")
    asyncio.run(archive.open())
    planning.services.archive = archive

    async def audit(user: str, action: str, details: dict[str, str]) -> None:
        planning.clock.advance(timedelta(seconds=1))
        await archive.write_logs([LogRecord(ts=planning.clock.now(), level=logging.INFO, source=AUDIT_SOURCE,
                                            component=AUDIT_COMPONENT, message=f"{user}: {action}",
                                            attributes={"user": user, "action": action, **details})])

    planning.services.audit = audit
    yield planning
    asyncio.run(archive.close())


def test_admin_reads_who_did_what_newest_first_with_filters_and_pages(audited: Hmi) -> None:
    start = audited.clock.now() - timedelta(hours=1)
    with TestClient(audited.app()) as client:
        sam = login(client, "sam")
        gql(client, 'mutation { replan(reason: "seeing better") { seq } }', sam)
        otto = login(client, "otto")
        gql(client, 'mutation { replan(reason: "wind dropped") { seq } }', otto)
        ada = login(client, "ada")
        end = audited.clock.now() + timedelta(minutes=1)
        window = {"s": start.isoformat(), "e": end.isoformat()}
        everything = gql(client, ACTIVITY, ada, **window)["data"]["activity"]
        replans = gql(client, ACTIVITY, ada, a="plan.", **window)["data"]["activity"]["entries"]
        by_sam = gql(client, ACTIVITY, ada, u="sam", **window)["data"]["activity"]["entries"]
        page1 = gql(client, ACTIVITY, ada, l=2, **window)["data"]["activity"]
        page2 = gql(client, ACTIVITY, ada, l=2, c=page1["nextCursor"], **window)["data"]["activity"]
        backwards = errors(gql(client, ACTIVITY, ada, s=end.isoformat(), e=start.isoformat()))
        too_many = errors(gql(client, ACTIVITY, ada, l=0, **window))
    assert [(e["user"], e["action"]) for e in everything["entries"]] == [
        ("ada", "login"), ("otto", "plan.replan"), ("otto", "login"), ("sam", "plan.replan"), ("sam", "login")]
    assert [e["details"]["reason"] for e in replans] == ["wind dropped", "seeing better"]
    assert [e["action"] for e in by_sam] == ["plan.replan", "login"]
    assert [e["action"] for e in page1["entries"] + page2["entries"]] == [
        "login", "plan.replan", "login", "plan.replan"]
    assert backwards == "the log query's end must be after its start"
    assert too_many == "limit must be between 1 and 5000"
