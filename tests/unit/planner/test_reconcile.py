"""The night's planner follows the OB store: deleted or retracted OBs leave the plan, edits and new OBs enter it."""

from __future__ import annotations

from dataclasses import replace

from planner.config import SchedulerConfig
from planner.domain.night import NightGrid
from planner.domain.replan import NightPlanner
from skyops.messages import PlanTrigger
from tests.unit.planner.builders import random_requests
from tests.unit.planner.test_scheduler import assert_plan_respects, when, with_ids


def ob_change(night: NightGrid, minute: int, ob_id: str | None = None) -> PlanTrigger:
    return PlanTrigger(kind="ob_change", ts=when(night, minute), reason="test", ob_id=ob_id)


def planned_ids(planner: NightPlanner, from_min: int = 0) -> list[str]:
    return [planner.request(b.row).ob_id for b in planner.blocks if b.start_min >= from_min and not b.interrupted]


def test_a_withdrawn_ob_leaves_the_rest_of_the_plan_and_comes_back_when_live_again(
    night: NightGrid, fine_night: NightGrid, config: SchedulerConfig
) -> None:
    requests = with_ids(random_requests(40, seed=3))
    planner = NightPlanner(night, requests, config)
    planner.plan()
    at = planner.blocks[2].start_min
    gone = planned_ids(planner, at + 1)[0]

    changes = planner.reconcile([r for r in requests if r.ob_id != gone])
    outcome = planner.replan(ob_change(night, at, gone))

    assert changes.withdrawn == (gone,) and not changes.added and not changes.edited
    assert gone not in planned_ids(planner, at)
    assert outcome.reason == f"OB {gone} changed: test"
    assert_plan_respects(planner, fine_night, from_min=at)

    back = planner.reconcile(requests)
    planner.replan(ob_change(night, at))
    assert back.returned == (gone,) and str(back) == f"back {gone}"
    assert gone in [planner.request(b.row).ob_id for b in planner.blocks]


def test_the_ob_being_observed_when_withdrawn_is_cut_short(night: NightGrid, config: SchedulerConfig) -> None:
    requests = with_ids(random_requests(30, seed=5))
    planner = NightPlanner(night, requests, config)
    planner.plan()
    running = planner.blocks[1]
    at = running.start_min + 1
    ob_id = planner.request(running.row).ob_id

    planner.reconcile([r for r in requests if r.ob_id != ob_id])
    planner.replan(ob_change(night, at, ob_id))

    cut = next(b for b in planner.blocks if b.row == running.row)
    assert cut.interrupted and cut.end_min == at
    assert [b.row for b in planner.blocks].count(running.row) == 1


def test_edits_and_new_obs_are_planned_and_observed_obs_are_not_withdrawn(
    night: NightGrid, config: SchedulerConfig
) -> None:
    requests = with_ids(random_requests(20, seed=8))
    planner = NightPlanner(night, requests, config)
    planner.plan()
    done = planner.request(planner.blocks[0].row).ob_id
    planner.mark_observed(done)
    edited = replace(requests[5], priority=1, exposure_s=600.0)
    new = replace(requests[6], ob_id="too-1", priority=1)
    live = [r for r in requests if r.ob_id != done and r.ob_id != edited.ob_id] + [edited, new]

    changes = planner.reconcile(live)

    assert (changes.added, changes.edited, changes.withdrawn) == (("too-1",), (edited.ob_id,), ())
    assert planner.request(planner.row_of(edited.ob_id)) == edited
    assert not planner.reconcile(live)  # nothing changed since
    planner.replan(ob_change(night, planner.blocks[0].end_min))
    assert [planner.request(b.row).ob_id for b in planner.blocks].count(done) == 1


def test_a_too_retracted_before_its_trigger_is_not_put_first(night: NightGrid, config: SchedulerConfig) -> None:
    requests = with_ids(random_requests(20, seed=11))
    planner = NightPlanner(night, requests, config)
    planner.plan()
    too = requests[7].ob_id
    planner.reconcile([r for r in requests if r.ob_id != too])

    planner.replan(PlanTrigger(kind="too", ts=when(night, 60), reason="GRB", ob_id=too))

    assert too not in planned_ids(planner, 60)
