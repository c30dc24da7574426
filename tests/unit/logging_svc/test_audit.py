"""HMI user actions become audit records that the log search can find by user and action."""

from __future__ import annotations

import pytest

from logging_svc.domain.audit import AUDIT_COMPONENT, audit_record
from skyops.errors import InvalidRecordError
from tests.unit.logging_svc.conftest import T0


def test_an_acknowledgement_is_recorded_with_who_what_and_why() -> None:
    r = audit_record(ts=T0, user="anna", action="ack", target="Wind.Speed:ASM", comment="gusts only",
                     host="10.0.0.7")
    assert (r.source, r.component, r.level, r.host) == ("hmi", AUDIT_COMPONENT, 20, "10.0.0.7")
    assert r.message == "anna ack Wind.Speed:ASM — gusts only"
    assert r.attributes == {"user": "anna", "action": "ack", "outcome": "ok", "target": "Wind.Speed:ASM",
                            "comment": "gusts only"}


def test_a_refused_action_is_a_warning() -> None:
    r = audit_record(ts=T0, user="bob", action="replan", outcome="denied: role Science required", ob_id="OB-4")
    assert r.level == 30 and r.message == "bob replan: denied: role Science required" and r.ob_id == "OB-4"


@pytest.mark.parametrize(("user", "action"), [("", "ack"), ("anna", "")])
def test_user_and_action_are_required(user: str, action: str) -> None:
    with pytest.raises(InvalidRecordError):
        audit_record(ts=T0, user=user, action=action)
