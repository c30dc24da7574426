"""Plan precedence, the VES read-back check and the health figures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.ves_sync.builders import DUSK, block, plan
from ves_sync.domain.ves import (
    POINT_CONSECUTIVE_FAILURES,
    POINT_LAG,
    POINT_LAST_SUCCESS_AGE,
    SyncHealth,
    VesMismatchError,
    check_read_back,
    is_superseded,
    latest_per_night,
)


def test_a_backlog_collapses_to_the_newest_plan_of_each_night() -> None:
    old = plan([block(1)], plan_id="a", created=DUSK)
    new = plan([block(2)], plan_id="b", created=DUSK + timedelta(minutes=5))
    other_night = plan([block(3)], plan_id="c", created=DUSK, night="2026-11-22")
    assert [e.plan_id for e in latest_per_night([new, old, other_night])] == ["b", "c"]
    assert latest_per_night([]) == []


def test_an_older_plan_never_overwrites_a_newer_one() -> None:
    event = plan([block(1)], created=DUSK)
    assert not is_superseded(event, None)
    assert not is_superseded(event, DUSK)
    assert is_superseded(event, DUSK + timedelta(seconds=1))


def test_read_back_must_match_exactly_in_order() -> None:
    check_read_back([1, 2, 3], [1, 2, 3])
    with pytest.raises(VesMismatchError, match=r"missing \[3\]"):
        check_read_back([1, 2, 3], [1, 2])
    with pytest.raises(VesMismatchError, match=r"unexpected \[9\]"):
        check_read_back([1], [1, 9])
    with pytest.raises(VesMismatchError, match="another order"):
        check_read_back([1, 2], [2, 1])


def test_health_reports_age_failures_and_lag() -> None:
    health = SyncHealth(DUSK)
    values = {s.point: s.value for s in health.samples(DUSK + timedelta(seconds=30))}
    assert values == {POINT_LAST_SUCCESS_AGE: 30.0, POINT_CONSECUTIVE_FAILURES: 0, POINT_LAG: 0.0,
                      "skyops.ves_sync.rejected_obs": 0}

    health.plan_received(DUSK + timedelta(seconds=40))
    health.failed()
    health.failed()
    values = {s.point: s.value for s in health.samples(DUSK + timedelta(seconds=100))}
    assert values[POINT_CONSECUTIVE_FAILURES] == 2
    assert values[POINT_LAG] == 60.0

    health.succeeded(DUSK + timedelta(seconds=110), rejected_obs=1)
    values = {s.point: s.value for s in health.samples(DUSK + timedelta(seconds=115))}
    assert values[POINT_LAST_SUCCESS_AGE] == 5.0
    assert values[POINT_CONSECUTIVE_FAILURES] == 0
    assert values[POINT_LAG] == 0.0
    assert values["skyops.ves_sync.rejected_obs"] == 1


def test_every_health_point_is_a_configured_monitoring_point() -> None:
    from config_db.monitoring import retention_classes

    published = {s.point for s in SyncHealth(DUSK).samples(DUSK)}
    assert published <= set(retention_classes())  # else the dispatcher refuses them as unknown points
