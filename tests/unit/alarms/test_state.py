"""The latched alarm state machine: operator actions, their refusals, and persistence."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from alarms.domain.state import AckRefusedError, AlarmActionError, AlarmState, AlarmStatus
from skyops.records import AlarmSeverity as S

T0 = 1_800_000_000_000_000
H = timedelta(hours=1)


def raised(sev: S = S.SERIOUS) -> AlarmState:
    st = AlarmState("Humidity.ASM:1")
    st.update(T0, sev, valid=True, reason="humidity 91 % >= CRITICAL level 90 %")
    return st


def test_raise_event_carries_everything_the_archive_needs() -> None:
    st = AlarmState("Humidity.ASM:1")
    (event,) = st.update(T0, S.CRITICAL, valid=True, reason="humidity high", attributes={"value": "91"})
    assert event.alarm_id == "Humidity.ASM:1"
    assert event.action == "raise"
    assert event.severity == S.CRITICAL
    assert event.latched == S.CRITICAL
    assert event.state == "ACTIVE_UNACKED"
    assert event.seq == 1
    assert event.reason == "humidity high"
    assert event.attributes["value"] == "91"
    assert event.attributes["from"] == "NONE"


@pytest.mark.parametrize(("user", "comment"), [("", "seen"), ("ana", ""), ("ana", "   ")])
def test_ack_needs_user_and_comment(user: str, comment: str) -> None:
    with pytest.raises(AlarmActionError, match="required"):
        raised().ack(T0, user=user, comment=comment)


def test_ack_refused_on_rise_is_itself_an_audited_event() -> None:
    st = raised(S.WARNING)
    st.update(T0 + 1, S.CRITICAL, valid=True, reason="worse")
    with pytest.raises(AckRefusedError, match="rose to CRITICAL since WARNING") as err:
        st.ack(T0 + 2, user="ana", comment="ok", seen=S.WARNING)
    assert err.value.event.action == "ack_refused"
    assert err.value.event.user == "ana"
    assert not st.acked


def test_ack_twice_is_refused() -> None:
    st = raised()
    st.ack(T0, user="ana", comment="seen")
    with pytest.raises(AlarmActionError, match="already acknowledged"):
        st.ack(T0, user="ana", comment="seen")


@pytest.mark.parametrize(
    ("until", "problem"), [(T0, "in the future"), (T0 - 1, "in the future"), (T0 + 25 * 3_600_000_000, "limit")]
)
def test_shelve_expiry_is_mandatory_and_bounded(until: int, problem: str) -> None:
    with pytest.raises(AlarmActionError, match=problem):
        raised().shelve(T0, user="ana", comment="noisy", until_us=until, max_shelve=24 * H)


def test_shelve_expires_by_itself_as_the_system_user() -> None:
    st = raised()
    st.shelve(T0, user="ana", comment="cleaning", until_us=T0 + 10, max_shelve=H)
    assert st.expire_shelve(T0 + 9) == []
    (event,) = st.expire_shelve(T0 + 10)
    assert (event.action, event.user, event.reason) == ("unshelve", "system", "shelve expired")
    assert not st.shelved


def test_invalid_is_never_ok_and_keeps_the_latched_severity() -> None:
    st = raised(S.CRITICAL)
    (event,) = st.update(T0 + 1, S.NONE, valid=False, reason="lasilla.asm.humidity is 300 s old")
    assert st.status is AlarmStatus.INVALID
    assert event.action == "invalid"
    assert event.latched == S.CRITICAL
    assert st.update(T0 + 2, S.NONE, valid=False, reason="still old") == []


def test_dump_load_round_trip_through_json() -> None:
    st = raised()
    st.ack(T0 + 1, user="ana", comment="seen")
    st.shelve(T0 + 2, user="ana", comment="x", until_us=T0 + 100, max_shelve=H)
    back = AlarmState.load(json.loads(json.dumps(st.dump())))
    assert back == st
    assert back.comment(T0 + 3, user="bo", comment="still there")[0].seq == st.seq + 1
