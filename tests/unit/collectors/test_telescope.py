"""The telescope model (slew, track, park, dome, exposure) and the OPC-UA status → quality mapping."""

from __future__ import annotations

import pytest

from collectors.domain.telescope import ExposureState, MountState, Shutter, Telescope
from collectors.opcua import quality_of, to_value
from skyops.errors import InvalidRecordError
from skyops.records import Quality


def run(t: Telescope, seconds: float, dt: float = 0.5) -> None:
    for _ in range(int(seconds / dt)):
        t.step(dt)


def test_slew_at_finite_rate_then_track() -> None:
    t = Telescope()
    t.slew_to(45.0, 120.0)
    run(t, 5)
    assert t.state is MountState.SLEWING
    assert t.altitude == pytest.approx(80.0)
    assert t.azimuth == pytest.approx(170.0)  # the short way round
    run(t, 40)
    assert t.state is MountState.TRACKING
    az = t.azimuth
    run(t, 600)
    assert 0 < t.azimuth - az < 3  # sidereal drift, not a slew
    assert abs(t.dome_azimuth - t.azimuth) < 1  # the dome follows


def test_slew_takes_the_short_way_across_north() -> None:
    t = Telescope(azimuth=350.0, dome_azimuth=350.0, altitude=60.0, state=MountState.TRACKING)
    t.slew_to(60.0, 10.0)
    run(t, 5)
    assert t.azimuth == pytest.approx(0.0) or t.azimuth == pytest.approx(360.0)
    run(t, 10)
    assert t.azimuth == pytest.approx(10.0, abs=0.1)  # arrived, then tracking


def test_refuses_targets_below_the_altitude_limit() -> None:
    with pytest.raises(ValueError, match="outside"):
        Telescope().slew_to(5.0, 0.0)


def test_park_aborts_the_exposure_and_ends_parked() -> None:
    t = Telescope(altitude=50.0, azimuth=90.0, state=MountState.TRACKING)
    t.start_exposure(1234, 300)
    run(t, 10)
    assert t.exposure_state is ExposureState.EXPOSING
    assert t.exposure_remaining_s == pytest.approx(290.0)
    t.park()
    assert t.exposure_state is ExposureState.ABORTED
    run(t, 60)
    assert t.state is MountState.PARKED
    assert (t.altitude, t.azimuth) == (90.0, 180.0)


def test_dome_opens_and_closes_in_a_minute() -> None:
    t = Telescope()
    t.open_dome()
    run(t, 30)
    assert t.shutter is Shutter.OPENING
    run(t, 31)
    assert t.shutter is Shutter.OPEN
    t.close_dome()
    assert t.shutter is Shutter.CLOSING
    run(t, 61)
    assert t.shutter is Shutter.CLOSED


def test_exposure_counts_down_reads_out_and_goes_idle() -> None:
    t = Telescope()
    t.start_exposure(7, 20)
    with pytest.raises(ValueError, match="already running"):
        t.start_exposure(8, 20)
    run(t, 20)
    assert t.exposure_state is ExposureState.READOUT
    run(t, 10.5)
    assert (t.exposure_state, t.instrument_state, t.ob_id) == (ExposureState.IDLE, "IDLE", 7)


def test_m1_follows_the_air_slowly() -> None:
    t = Telescope(m1_temperature=12.0)
    for _ in range(60):
        t.step(60, ambient_c=8.0)
    assert 8.0 < t.m1_temperature < 12.0
    assert t.m1_temperature == pytest.approx(8.0 + 4.0 * 2.718281828 ** (-1 / 3), abs=0.01)


@pytest.mark.parametrize(("status", "quality"), [
    (0, Quality.GOOD),
    (0x00960000, Quality.GOOD),  # GoodLocalOverride
    (0x40000000, Quality.UNCERTAIN),
    (0x40900000, Quality.UNCERTAIN),  # UncertainLastUsableValue
    (0x808C0000, Quality.BAD),  # BadSensorFailure
    (0x80000000, Quality.BAD),
])
def test_status_code_severity_maps_to_quality(status: int, quality: Quality) -> None:
    assert quality_of(status) is quality


def test_values_must_fit_their_point_kind() -> None:
    assert to_value(3, "float") == 3.0
    assert isinstance(to_value(3, "float"), float)
    assert to_value("PARKED", "str") == "PARKED"
    with pytest.raises(InvalidRecordError, match="does not fit a float point"):
        to_value("45", "float")
    with pytest.raises(InvalidRecordError):
        to_value(True, "int")
