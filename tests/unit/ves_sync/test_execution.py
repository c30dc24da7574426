"""Executing the VES, the pure part: coordinates, pointing, nights, the next OB, execution reports, time."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest

from skyops.errors import NaiveDatetimeError
from skyops.timeutil import AcceleratedClock, FakeClock
from tests.unit.ves_sync.builders import DUSK
from ves_sync.domain.execution import (
    Execution,
    ObToExecute,
    Outcome,
    TargetError,
    TelescopeStatus,
    alt_az,
    dec_degrees,
    executed_tonight,
    execution_ends,
    exposure_outcome,
    local_sidereal_deg,
    next_ob,
    night_of,
    ra_degrees,
)
from ves_sync.executor import ClockDrive, ExecutorSettings, ScaledPace

LA_SILLA = {"latitude_deg": -29.2567, "longitude_deg": -70.7346}


def p2_ob(**changes: object) -> dict[str, object]:
    ob: dict[str, object] = {"obId": 200000001, "name": "SN 2026a classification", "executionTime": 1080,
                             "exposureTime": 600,
                             "target": {"name": "SN2026a", "ra": "10:30:00.000", "dec": "-45:30:00.00"}}
    ob.update(changes)
    return ob


@pytest.mark.parametrize(("text", "degrees"), [("00:00:00.000", 0.0), ("10:30:00.000", 157.5),
                                              ("23:59:59.999", 359.99999583)])
def test_right_ascension_in_degrees(text: str, degrees: float) -> None:
    assert ra_degrees(text) == pytest.approx(degrees)


@pytest.mark.parametrize(("text", "degrees"), [("-45:30:00.00", -45.5), ("+12:15:36.0", 12.26), ("-00:30:00", -0.5),
                                              ("90:00:00", 90.0)])
def test_declination_in_degrees(text: str, degrees: float) -> None:
    assert dec_degrees(text) == pytest.approx(degrees)


@pytest.mark.parametrize("text", ["24:00:00", "10:60:00", "10.5", "", "10:00:61"])
def test_bad_right_ascension_is_refused_by_name(text: str) -> None:
    with pytest.raises(TargetError, match="right ascension"):
        ra_degrees(text)


@pytest.mark.parametrize("text", ["-91:00:00", "+90:00:01", "12:61:00", "north"])
def test_bad_declination_is_refused_by_name(text: str) -> None:
    with pytest.raises(TargetError, match="declination"):
        dec_degrees(text)


def test_sidereal_time_matches_a_known_value() -> None:
    # GMST at 2000-01-01 12:00 UT is 280.4606°; a sidereal day later the stars are back, 4 minutes early.
    assert local_sidereal_deg(datetime(2000, 1, 1, 12, tzinfo=UTC), 0.0) == pytest.approx(280.46061837)
    later = datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(seconds=86164.0905)
    assert local_sidereal_deg(later, 0.0) == pytest.approx(280.46061837, abs=1e-3)


def test_pointing_agrees_with_astropy_within_a_degree() -> None:
    from astropy import units as u  # type: ignore[import-untyped]
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord  # type: ignore[import-untyped]
    from astropy.time import Time  # type: ignore[import-untyped]
    from astropy.utils import iers  # type: ignore[import-untyped]

    site = EarthLocation(lat=LA_SILLA["latitude_deg"] * u.deg, lon=LA_SILLA["longitude_deg"] * u.deg,
                         height=2375 * u.m)
    when = DUSK + timedelta(hours=3)
    frame = AltAz(obstime=Time(when), location=site)  # no pressure: no refraction, as alt_az
    # Offline, as everywhere in skyops: astropy uses its bundled tables instead of downloading IERS data.
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None), \
            iers.conf.set_temp("iers_degraded_accuracy", "ignore"):
        for ra, dec in ((0.0, -60.0), (50.0, -10.0), (120.0, 20.0), (300.0, -75.0)):
            ref = SkyCoord(ra=ra * u.deg, dec=dec * u.deg).transform_to(frame)
            alt, az = alt_az(ra, dec, when, **LA_SILLA)
            assert alt == pytest.approx(ref.alt.deg, abs=0.7)
            # Near the zenith azimuth swings fast: compare the angle on the sky, not the raw azimuth.
            assert ((az - ref.az.deg + 180) % 360 - 180) * math.cos(math.radians(alt)) == pytest.approx(0, abs=0.7)


def test_a_target_on_the_meridian_culminates_due_south_or_north() -> None:
    lst = local_sidereal_deg(DUSK, LA_SILLA["longitude_deg"])
    south_alt, south_az = alt_az(lst, -60.0, DUSK, **LA_SILLA)
    assert south_alt == pytest.approx(90 - 30.7433, abs=1e-6)
    assert south_az == pytest.approx(180.0, abs=1e-6)
    north_alt, north_az = alt_az(lst, 10.0, DUSK, **LA_SILLA)
    assert north_alt == pytest.approx(90 - 39.2567, abs=1e-6)
    assert north_az == pytest.approx(0.0, abs=1e-6) or north_az == pytest.approx(360.0, abs=1e-6)


def test_a_night_is_named_by_its_evening_at_the_site() -> None:
    lon = LA_SILLA["longitude_deg"]
    assert night_of(DUSK, lon) == "2026-11-21"
    assert night_of(datetime(2026, 11, 22, 10, 0, tzinfo=UTC), lon) == "2026-11-21"  # morning twilight
    assert night_of(datetime(2026, 11, 22, 20, 0, tzinfo=UTC), lon) == "2026-11-22"  # next evening
    with pytest.raises(NaiveDatetimeError):
        night_of(datetime(2026, 11, 22, 1, 0), lon)


def test_the_next_ob_follows_the_ves_order_skipping_done_and_passed() -> None:
    assert next_ob([3, 1, 2], done=set()) == 3
    assert next_ob([3, 1, 2], done={3}) == 1
    assert next_ob([3, 1, 2], done={3}, passed={1}) == 2
    assert next_ob([3, 1, 2], done={1, 2, 3}) is None
    assert next_ob([], done=set()) is None


def test_only_finished_executions_count_as_done_tonight() -> None:
    executions = [{"obId": 1, "status": "executed"}, {"obId": 2, "status": "aborted"},
                  {"obId": 3, "status": "started"}, {"obId": 4, "status": "failed"}]
    assert executed_tonight(executions) == {1}


def test_an_ob_from_p2_and_its_exposure() -> None:
    ob = ObToExecute.from_p2(p2_ob())
    assert (ob.p2_ob_id, ob.target_name, ob.ra_deg, ob.dec_deg) == (200000001, "SN2026a", 157.5, -45.5)
    # The OB lasts its execution time: what the slew did not use goes to the exposure …
    assert ob.exposure_seconds(spent_s=80) == 1000
    # … but the exposure is never cut below the OB's exposure time.
    assert ob.exposure_seconds(spent_s=900) == 600
    assert ObToExecute.from_p2(p2_ob(executionTime=0)).exposure_seconds(30) == 600


@pytest.mark.parametrize(("changes", "message"), [
    ({"target": {"name": "x", "ra": "25:00:00", "dec": "-10:00:00"}}, "P2 OB 200000001: target: right ascension"),
    ({"target": {"name": "x", "ra": "10:00:00"}}, "P2 OB 200000001: unreadable OB"),
    ({"executionTime": 0, "exposureTime": 0}, "nothing to expose"),
    ({"executionTime": "soon"}, "unreadable OB"),
])
def test_an_unusable_ob_is_refused_naming_ob_and_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TargetError, match=message):
        ObToExecute.from_p2(p2_ob(**changes))


def test_an_execution_report_is_what_p2_takes() -> None:
    started = Execution(7, "2026-11-21", DUSK, Outcome.STARTED)
    assert started.to_p2() == {"obId": 7, "night": "2026-11-21", "from": "2026-11-22T00:30:00+00:00",
                               "status": "started"}
    done = started.finished(Outcome.EXECUTED, DUSK + timedelta(minutes=18))
    assert done.to_p2()["to"] == "2026-11-22T00:48:00+00:00"
    assert (done.p2_ob_id, done.start) == (started.p2_ob_id, started.start)
    with pytest.raises(ValueError, match="needs its end"):
        Execution(7, "2026-11-21", DUSK, Outcome.EXECUTED)
    with pytest.raises(ValueError, match="ends before it starts"):
        started.finished(Outcome.ABORTED, DUSK - timedelta(seconds=1))
    with pytest.raises(NaiveDatetimeError):
        Execution(7, "2026-11-21", datetime(2026, 11, 22), Outcome.STARTED)


def status(state: str, ob_id: int = 7, shutter: str = "OPEN") -> TelescopeStatus:
    return TelescopeStatus(mount="TRACKING", shutter=shutter, exposure_state=state, exposure_ob_id=ob_id,
                           exposure_remaining_s=10.0)


def test_the_exposure_nodes_tell_how_an_ob_ended() -> None:
    assert exposure_outcome(status("EXPOSING"), 7) is None
    assert exposure_outcome(status("READOUT"), 7) is None
    assert exposure_outcome(status("IDLE"), 7) is Outcome.EXECUTED
    assert exposure_outcome(status("ABORTED"), 7) is Outcome.ABORTED
    # Someone else's exposure on the telescope means ours is gone.
    assert exposure_outcome(status("EXPOSING", ob_id=8), 7) is Outcome.ABORTED
    assert status("IDLE", shutter="CLOSING").dome_open is False


async def test_accelerated_and_driven_time() -> None:
    ticks = [0.0]
    fast = AcceleratedClock(DUSK, 60, monotonic=lambda: ticks[0])
    ticks[0] = 2.5
    assert fast.now() == DUSK + timedelta(seconds=150)
    with pytest.raises(ValueError, match="speed"):
        AcceleratedClock(DUSK, 0)
    with pytest.raises(ValueError, match="speed"):
        ScaledPace(-1)
    await asyncio.wait_for(ScaledPace(10_000).sleep(10), timeout=1)  # 1 ms of real time

    clock = FakeClock(DUSK)
    calls: list[datetime] = []

    async def on_advance() -> None:
        calls.append(clock.now())

    drive = ClockDrive(clock, on_advance)
    await drive.sleep(30)
    await drive.sleep(-5)  # never backwards
    assert calls == [DUSK + timedelta(seconds=30)] * 2
    assert drive.advanced_s == 30


def test_executor_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="poll_s"):
        ExecutorSettings(poll_s=0)
    assert ExecutorSettings().min_altitude_deg == 15.0


def test_execution_ends_give_when_each_status_was_reached() -> None:
    def at(minutes: int) -> str:
        return (DUSK + timedelta(minutes=minutes)).isoformat()

    executions = [
        {"obId": 1, "from": at(0), "to": at(7), "status": "aborted"},
        {"obId": 1, "from": at(30), "to": at(48), "status": "executed"},
        {"obId": 1, "from": at(60), "to": at(75), "status": "executed"},  # the latest execution counts
        {"obId": 2, "from": at(50), "to": at(58), "status": "failed"},
        {"obId": 3, "from": at(80), "status": "started"},  # still running: no end
        {"obId": 4, "from": "2026-11-22T01:00:00", "to": "2026-11-22T01:18:00", "status": "executed"},  # P2's UTC
        {"obId": 5, "from": at(0), "to": "soon", "status": "executed"},
        {"obId": 6, "from": at(0), "to": at(1), "status": "lost"},
        {"from": at(0), "to": at(1), "status": "executed"},
    ]
    assert execution_ends(executions) == {
        (1, "A"): DUSK + timedelta(minutes=7),
        (1, "X"): DUSK + timedelta(minutes=75),
        (2, "+"): DUSK + timedelta(minutes=58),
        (4, "X"): datetime(2026, 11, 22, 1, 18, tzinfo=UTC),
    }
    assert execution_ends([]) == {}
