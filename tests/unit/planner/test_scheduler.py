"""The scheduler: every placement keeps every constraint, the night fills, and re-plans follow the triggers."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.config import SchedulerConfig
from planner.domain.night import NightGrid
from planner.domain.observability import (
    Constraints,
    ObRequest,
    ObTable,
    Twilight,
    altaz_deg,
    apparent_radec,
    constraint_masks,
)
from planner.domain.replan import NightPlanner, UnknownObError
from planner.domain.scheduler import Block, Conditions, Sector
from skyops.messages import AzimuthSector, ConsequenceKind, PlanTrigger
from tests.unit.planner.builders import random_requests

obs_strategy = st.builds(
    ObRequest,
    ob_id=st.just("unnamed"),
    ra_deg=st.floats(0.0, 359.99),
    dec_deg=st.floats(-89.0, 30.0),
    exposure_s=st.floats(60.0, 7200.0),
    priority=st.integers(1, 5),
    constraints=st.builds(
        Constraints,
        max_airmass=st.floats(1.1, 3.0),
        twilight=st.sampled_from(list(Twilight)),
        min_moon_separation_deg=st.floats(0.0, 90.0),
        max_moon_illumination=st.floats(0.0, 1.0),
        max_seeing_arcsec=st.floats(0.6, 3.0),
    ),
)


def with_ids(requests: list[ObRequest]) -> list[ObRequest]:
    return [replace(r, ob_id=f"ob{i}") for i, r in enumerate(requests)]


def unix_of(night: NightGrid, minute: int) -> float:
    return night.start_unix + 60.0 * minute


def when(night: NightGrid, minute: int) -> datetime:
    return datetime.fromtimestamp(unix_of(night, minute), tz=UTC)


def assert_plan_respects(
    planner: NightPlanner, fine: NightGrid, *, from_min: int = 0, conditions: Conditions | None = None
) -> None:
    """Checks a plan against the 1-minute reference night: every minute of every block, every rule."""
    blocks = planner.blocks
    night = planner.night
    assert all(0 <= b.start_min < b.end_min <= night.n_minutes for b in blocks)
    for prev, nxt in itertools.pairwise(blocks):
        assert nxt.start_min >= prev.end_min, "blocks overlap"
        assert nxt.start_min - prev.end_min >= planner.ctx.slew.minutes(prev.row, nxt.row), "no time to slew"
    if not blocks:
        return
    masks = constraint_masks(planner.table, fine)
    ra, dec = apparent_radec(planner.table, fine)
    _, az = altaz_deg(ra, dec, fine.era_at(fine.point_times()), fine)
    cond = conditions or Conditions()
    for b in blocks:
        if b.interrupted:
            continue
        first = round((unix_of(night, b.start_min) - fine.start_unix) / 60.0)
        last = round((unix_of(night, b.end_min) - fine.start_unix) / 60.0)
        assert first >= 0 and last < fine.n_points
        request = planner.request(b.row)
        assert masks.all()[b.row, first : last + 1].all(), f"{request.ob_id} placed outside its constraints"
        assert b.end_min - b.start_min >= (request.exposure_s + planner.config.overhead_s) / 60.0
        if b.end_min <= from_min:
            continue
        assert not cond.dome_closed, "a block runs while the dome is closed"
        if cond.seeing_limit_arcsec is not None:
            assert request.constraints.max_seeing_arcsec >= cond.seeing_limit_arcsec
        live_first = max(first, round((unix_of(night, from_min) - fine.start_unix) / 60.0))
        for sector in cond.sectors:
            assert not sector.contains(az[b.row, live_first : last + 1]).any(), "pointing into a forbidden sector"


def consequence(
    night: NightGrid, minute: int, kind: ConsequenceKind, *, active: bool = True, **extra: object
) -> PlanTrigger:
    return PlanTrigger.model_validate(
        {
            "kind": "consequence",
            "ts": when(night, minute),
            "reason": f"test {kind.value}",
            "alarm_id": f"Test.{kind.value}:1",
            "consequence": kind,
            "active": active,
            **extra,
        }
    )


# --- properties ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(obs_strategy, min_size=1, max_size=40))
def test_every_placement_respects_every_constraint(
    requests: list[ObRequest], night: NightGrid, fine_night: NightGrid, config: SchedulerConfig
) -> None:
    planner = NightPlanner(night, with_ids(requests), config)
    planner.plan()

    assert_plan_respects(planner, fine_night)
    assert len({b.row for b in planner.blocks}) == len(planner.blocks), "an OB placed twice"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(obs_strategy, min_size=1, max_size=30),
    at=st.integers(0, 500),
    start=st.floats(0.0, 359.0),
    width=st.floats(5.0, 180.0),
    seeing=st.floats(0.5, 2.5),
    kind=st.sampled_from(list(ConsequenceKind)),
)
def test_replans_respect_the_active_consequence(
    requests: list[ObRequest],
    at: int,
    start: float,
    width: float,
    seeing: float,
    kind: ConsequenceKind,
    night: NightGrid,
    fine_night: NightGrid,
    config: SchedulerConfig,
) -> None:
    planner = NightPlanner(night, with_ids(requests), config)
    planner.plan()
    before = [b for b in planner.blocks if b.end_min <= at]
    sector = AzimuthSector(start_deg=start, end_deg=(start + width) % 360.0)
    trigger = consequence(night, at, kind, sector=sector, seeing_limit_arcsec=seeing)

    planner.replan(trigger)

    assert_plan_respects(planner, fine_night, from_min=at, conditions=planner.conditions)
    assert [b for b in planner.blocks if b.end_min <= at and not b.interrupted] == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(obs_strategy, min_size=1, max_size=30),
    hour_angle_h=st.floats(-4.0, 4.0),
    dec=st.floats(-75.0, 15.0),
    exposure=st.floats(120.0, 3600.0),
    at=st.integers(0, 550),
)
def test_a_too_goes_first_whenever_it_can_and_nothing_breaks_a_constraint(
    requests: list[ObRequest],
    hour_angle_h: float,
    dec: float,
    exposure: float,
    at: int,
    night: NightGrid,
    fine_night: NightGrid,
    config: SchedulerConfig,
) -> None:
    planner = NightPlanner(night, with_ids(requests), config)
    planner.plan()
    # A ToO near the meridian at the trigger with loose constraints: it can usually go at once.
    lst = np.degrees(night.era_at(np.asarray([unix_of(night, at)]))[0] + night.longitude_rad)
    loose = Constraints(max_airmass=3.0, twilight=Twilight.NAUTICAL, min_moon_separation_deg=0.0)
    too = ObRequest(
        ob_id="the-too",
        ra_deg=float((lst - 15.0 * hour_angle_h) % 360.0),
        dec_deg=dec,
        exposure_s=exposure,
        priority=1,
        constraints=loose,
    )
    row = planner.add(too)

    planner.replan(PlanTrigger(kind="too", ts=when(night, at), reason="alert", ob_id="the-too"))

    assert_plan_respects(planner, fine_night, from_min=at)
    after = [b for b in planner.blocks if b.start_min >= at]
    placed = [b for b in after if b.row == row]
    if placed:
        assert after[0].row == row, "the ToO is not the first block after the trigger"
    # Where the ToO could have started right after the trigger (plus its slew), it did.
    ctx = planner.ctx
    prev = [b for b in planner.blocks if b.start_min < at]
    slew = ctx.slew.minutes(prev[-1].row, row) if prev else 0
    start = max(at, prev[-1].end_min + slew if prev else at)
    dur = int(ctx.duration[row])
    if planner.obs.in_bucket[row] and start + dur <= ctx.n_minutes and ctx.allowed[row, start : start + dur].all():
        assert placed and placed[0].start_min == start


# --- scenarios -------------------------------------------------------------------------------------


@pytest.fixture
def planner(night: NightGrid, config: SchedulerConfig) -> NightPlanner:
    planner = NightPlanner(night, random_requests(300, seed=7), config)
    planner.plan()
    return planner


def occupied_dark_minutes(planner: NightPlanner, blocks: tuple[Block, ...] | None = None) -> tuple[int, int]:
    """(dark minutes used by exposures and their slews, dark minutes in which some OB could observe)."""
    dark = np.repeat(planner.night.dark_cells(planner.config.dark_sun_altitude_deg), planner.night.slot_minutes)
    used = np.zeros_like(dark)
    for b in blocks if blocks is not None else planner.blocks:
        used[max(b.start_min - b.slew_min, 0) : b.end_min] = True
    observable = planner.ctx.allowed[planner.obs.in_bucket].any(axis=0)
    return int((used & dark).sum()), int((observable & dark).sum())


def test_the_night_plan_fills_the_observable_dark_time(planner: NightPlanner, fine_night: NightGrid) -> None:
    used, observable = occupied_dark_minutes(planner)

    assert used >= 0.95 * observable
    assert_plan_respects(planner, fine_night)


def test_a_top_priority_ob_gets_its_best_scoring_time(night: NightGrid, config: SchedulerConfig) -> None:
    requests = [replace(r, priority=max(r.priority, 2)) for r in random_requests(80, seed=3)]
    star = ObRequest(ob_id="star", ra_deg=150.0, dec_deg=-30.0, exposure_s=1800.0, priority=1)
    planner = NightPlanner(night, [*requests, star], config)

    planner.plan()

    row = planner.row_of("star")
    block = next(b for b in planner.blocks if b.row == row)
    ctx = planner.ctx
    dur = int(ctx.duration[row])
    windows = np.lib.stride_tricks.sliding_window_view(ctx.minute_score[row], dur)
    feasible = np.lib.stride_tricks.sliding_window_view(ctx.allowed[row], dur).all(axis=1)
    best = windows.mean(axis=1)[feasible].max()
    assert windows[block.start_min].mean() == pytest.approx(best)


def test_dome_closed_then_reopened(planner: NightPlanner, fine_night: NightGrid) -> None:
    night = planner.night
    close_at, open_at = 180, 300
    done_before = [b for b in planner.blocks if b.end_min <= close_at]

    closed = planner.replan(consequence(night, close_at, ConsequenceKind.CLOSE_DOME))

    assert all(b.end_min <= close_at for b in closed.blocks), "something scheduled while the dome is closed"
    assert [b for b in closed.blocks if not b.interrupted] == done_before
    assert "close_dome" in closed.reason and "active" in closed.reason

    reopened = planner.replan(consequence(night, open_at, ConsequenceKind.CLOSE_DOME, active=False))

    assert not any(close_at <= b.start_min < open_at for b in reopened.blocks)
    assert any(b.start_min >= open_at for b in reopened.blocks)
    assert "cleared" in reopened.reason
    assert_plan_respects(planner, fine_night, from_min=open_at, conditions=planner.conditions)


def test_a_forbidden_sector_moves_the_rest_of_the_night_out_of_it(planner: NightPlanner, fine_night: NightGrid) -> None:
    trigger = consequence(
        planner.night, 120, ConsequenceKind.POINTING_RESTRICTION, sector=AzimuthSector(start_deg=300, end_deg=60)
    )

    outcome = planner.replan(trigger)

    assert planner.conditions.sectors == (Sector(300, 60),)
    assert any(b.start_min >= 120 for b in outcome.blocks)
    assert_plan_respects(planner, fine_night, from_min=120, conditions=planner.conditions)


def test_a_seeing_limit_keeps_only_obs_that_tolerate_it(planner: NightPlanner, fine_night: NightGrid) -> None:
    outcome = planner.replan(consequence(planner.night, 60, ConsequenceKind.SEEING_LIMIT, seeing_limit_arcsec=1.5))

    later = [b for b in outcome.blocks if b.end_min > 60 and not b.interrupted]
    assert later
    assert all(planner.request(b.row).constraints.max_seeing_arcsec >= 1.5 for b in later)
    assert_plan_respects(planner, fine_night, from_min=60, conditions=planner.conditions)

    cleared = planner.replan(consequence(planner.night, 200, ConsequenceKind.SEEING_LIMIT, active=False))
    assert any(planner.request(b.row).constraints.max_seeing_arcsec < 1.5 for b in cleared.blocks if b.start_min >= 200)


def test_a_too_arriving_mid_exposure_goes_first(planner: NightPlanner, fine_night: NightGrid) -> None:
    night = planner.night
    running = next(b for b in planner.blocks if b.start_min > 200 and b.end_min - b.start_min > 10)
    at = running.start_min + 5
    # A target on the meridian at the trigger, so it is observable at once.
    lst_deg = float(np.degrees(night.era_at(np.asarray([unix_of(night, at)]))[0] + night.longitude_rad)) % 360
    too = ObRequest(ob_id="GW-too", ra_deg=lst_deg, dec_deg=-35.0, exposure_s=900.0, priority=1, ob_type="ToO")
    planner.add(too)
    trigger = PlanTrigger(kind="too", ts=when(night, at), reason="GW alert", ob_id="GW-too")

    outcome = planner.replan(trigger)

    interrupted = [b for b in outcome.blocks if b.interrupted]
    assert [(b.row, b.start_min, b.end_min) for b in interrupted] == [(running.row, running.start_min, at)]
    after = [b for b in outcome.blocks if b.start_min >= at]
    assert planner.request(after[0].row).ob_id == "GW-too"
    assert after[0].start_min - at <= after[0].slew_min
    # The interrupted OB is still to be observed, so it may come back later in the night.
    assert outcome.reason.startswith("ToO GW-too")
    assert_plan_respects(planner, fine_night, from_min=at)


def test_observed_obs_are_never_placed_again(planner: NightPlanner) -> None:
    first = planner.blocks[0]
    planner.mark_observed(planner.request(first.row).ob_id)
    trigger = consequence(planner.night, 0, ConsequenceKind.SEEING_LIMIT, active=False)

    outcome = planner.replan(trigger)

    assert first.row not in {b.row for b in outcome.blocks}


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ra_deg": 360.0}, "ra_deg"),
        ({"ra_deg": -1.0}, "ra_deg"),
        ({"dec_deg": 91.0}, "dec_deg"),
        ({"exposure_s": 0.0}, "exposure_s"),
        ({"exposure_s": float("nan")}, "exposure_s"),
        ({"priority": 0}, "priority"),
        ({"ob_id": ""}, "ob_id"),
    ],
)
def test_bad_ob_requests_name_the_field(changes: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"ob_id": "x", "ra_deg": 10.0, "dec_deg": -20.0, "exposure_s": 60.0, "priority": 1}
    with pytest.raises(ValueError, match=field):
        ObRequest(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_airmass": 0.9}, "max_airmass"),
        ({"min_moon_separation_deg": -1.0}, "min_moon_separation_deg"),
        ({"max_moon_illumination": 1.5}, "max_moon_illumination"),
        ({"max_seeing_arcsec": 0.0}, "max_seeing_arcsec"),
    ],
)
def test_bad_constraints_name_the_field(changes: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Constraints(**changes)  # type: ignore[arg-type]


def test_duplicate_ob_ids_are_refused() -> None:
    request = ObRequest(ob_id="a", ra_deg=1.0, dec_deg=-20.0, exposure_s=60.0, priority=1)
    with pytest.raises(ValueError, match=r"unique.*a"):
        ObTable.from_requests([request, request])


def test_a_too_for_an_unknown_ob_is_refused_and_the_plan_kept(planner: NightPlanner) -> None:
    before = planner.blocks
    trigger = PlanTrigger(kind="too", ts=when(planner.night, 10), reason="GRB", ob_id="nobody")

    with pytest.raises(UnknownObError, match="nobody"):
        planner.replan(trigger)

    assert planner.blocks == before


def test_adding_an_ob_reuses_the_night_arrays_and_matches_a_full_rebuild(
    planner: NightPlanner, night: NightGrid, config: SchedulerConfig
) -> None:
    # A sector trigger first fills part of the azimuth cache, which the added row must not disturb.
    planner.replan(
        consequence(night, 30, ConsequenceKind.POINTING_RESTRICTION, sector=AzimuthSector(start_deg=10, end_deg=80))
    )
    too = ObRequest(ob_id="late-too", ra_deg=200.0, dec_deg=-45.0, exposure_s=600.0, priority=1, ob_type="ToO")

    row = planner.add(too)

    fresh = NightPlanner(night, [*(planner.request(i) for i in range(row)), too], config)
    assert row == len(fresh.table) - 1
    np.testing.assert_array_equal(planner.ctx.allowed, fresh.ctx.allowed)
    np.testing.assert_array_equal(planner.ctx.minute_score, fresh.ctx.minute_score)
    np.testing.assert_array_equal(planner.obs.in_bucket, fresh.obs.in_bucket)
    rows = np.arange(len(fresh.table))
    np.testing.assert_allclose(planner.ctx.minute_azimuth(rows), fresh.ctx.minute_azimuth(rows))
