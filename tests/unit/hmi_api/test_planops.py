"""The plan operations the HMI publishes: manual triggers, VES reorders and re-sends (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hmi_api.planops import manual_trigger, reorder_plan, replan_seconds, resent_plan, shown_reason
from skyops.messages import ConsequenceKind, PlanEvent, PlannedBlock, PlanTrigger

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def plan(start: datetime = NOW - timedelta(minutes=30), n: int = 5, *, gap_min: int = 5,
         trigger: PlanTrigger | None = None, plan_id: str = "2026-11-21#1") -> PlanEvent:
    """`n` OBs of 20 minutes each, `gap_min` apart, the first starting at `start`."""
    blocks = tuple(PlannedBlock(ob_id=str(i + 1), name=f"OB {i + 1}", target_name=f"T{i + 1}", ra_deg=10.0 * i,
                                dec_deg=-30.0, exposure_s=900, priority=2, ob_type="ESO",
                                start=start + timedelta(minutes=(20 + gap_min) * i),
                                end=start + timedelta(minutes=(20 + gap_min) * i + 20)) for i in range(n))
    return PlanEvent(plan_id=plan_id, night="2026-11-21", created=NOW - timedelta(hours=3), reason="night plan",
                     trigger=trigger, blocks=blocks)


def test_manual_trigger_names_the_user_and_a_clean_reason() -> None:
    t = manual_trigger(user="sam", reason="  seeing  improved\n", now=NOW)
    assert (t.kind, t.user, t.reason, t.ts) == ("manual", "sam", "seeing improved", NOW)
    assert PlanTrigger.model_validate_json(t.encode()) == t


@pytest.mark.parametrize(("reason", "message"), [("   ", "say why"), ("x" * 301, "at most 300")])
def test_manual_trigger_refuses_a_missing_or_long_reason(reason: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        manual_trigger(user="sam", reason=reason, now=NOW)


def test_a_manual_trigger_without_a_user_is_refused_by_the_message_model() -> None:
    with pytest.raises(ValidationError, match="names the user"):
        PlanTrigger(kind="manual", ts=NOW, reason="why not")


def test_reorder_keeps_started_obs_and_retimes_the_rest_back_to_back() -> None:
    # OB 1 and 2 started (at -30 and -5 min); 3, 4, 5 wait, at +20, +45, +70 min.
    before = plan()
    after = reorder_plan(before, ["5", "3", "4"], user="sam", reason="5 sets first", now=NOW)
    assert [b.ob_id for b in after.blocks] == ["1", "2", "5", "3", "4"]
    assert after.blocks[:2] == before.blocks[:2]
    assert [b.start for b in after.blocks[2:]] == [b.start for b in before.blocks[2:]]
    assert all(b.end - b.start == timedelta(minutes=20) for b in after.blocks)
    assert after.created == NOW and after.night == before.night and after.plan_id != before.plan_id
    assert after.trigger is not None and after.trigger.user == "sam" and after.trigger.kind == "manual"
    assert after.reason == "VES reordered by sam: 5 sets first"


def test_reorder_with_blocks_of_different_lengths_keeps_the_gaps() -> None:
    before = plan(NOW + timedelta(minutes=10), n=2, gap_min=10)
    long_first = before.model_copy(update={"blocks": (
        before.blocks[0].model_copy(update={"end": before.blocks[0].start + timedelta(minutes=40)}),
        before.blocks[1].model_copy(update={"start": before.blocks[0].start + timedelta(minutes=50),
                                            "end": before.blocks[0].start + timedelta(minutes=60)}))})
    after = reorder_plan(long_first, ["2", "1"], user="sam", reason="swap", now=NOW)
    first, second = after.blocks
    assert (first.ob_id, first.start, first.end - first.start) == ("2", NOW + timedelta(minutes=10),
                                                                     timedelta(minutes=10))
    assert second.start == first.end + timedelta(minutes=10)
    assert second.end - second.start == timedelta(minutes=40)


@pytest.mark.parametrize(("order", "message"), [
    (["3", "3", "4", "5"], "listed more than once"),
    (["3", "4", "5", "1"], "are not waiting in the plan"),
    (["3", "4", "x"], "are not waiting in the plan"),
    (["3", "4"], "missing 5"),
])
def test_reorder_refuses_anything_but_a_permutation_of_the_waiting_obs(order: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reorder_plan(plan(), order, user="sam", reason="why", now=NOW)


def test_resent_plan_is_the_same_plan_newer() -> None:
    before = plan()
    again = resent_plan(before, user="otto", reason="P2 was down", now=NOW)
    assert again.blocks == before.blocks and again.created == NOW and again.plan_id != before.plan_id
    assert again.reason == "VES sync requested by otto: P2 was down"


def test_shown_reason_and_replan_duration() -> None:
    manual = manual_trigger(user="sam", reason="clouds gone", now=NOW - timedelta(seconds=3))
    by_planner = plan(trigger=manual).model_copy(update={"reason": "alarm None active (consequence): clouds gone",
                                                         "created": NOW})
    assert shown_reason(by_planner) == "re-plan asked by sam: clouds gone"
    assert replan_seconds(by_planner) == 3.0
    alarm = PlanTrigger(kind="consequence", ts=NOW - timedelta(seconds=1), reason="wind", alarm_id="Wind.ASM:1",
                        consequence=ConsequenceKind.CLOSE_DOME)
    by_alarm = plan(trigger=alarm).model_copy(update={"reason": "alarm Wind.ASM:1 active", "created": NOW})
    assert shown_reason(by_alarm) == "alarm Wind.ASM:1 active"
    assert replan_seconds(plan()) is None
    reordered = reorder_plan(plan(), ["3", "4", "5"], user="sam", reason="why", now=NOW)
    assert shown_reason(reordered) == "VES reordered by sam: why"
