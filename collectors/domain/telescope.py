"""An NTT-like telescope and dome that slew, track, park, expose and close (pure: time advances by `step`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class MountState(StrEnum):
    PARKED = "PARKED"
    SLEWING = "SLEWING"
    TRACKING = "TRACKING"


class Shutter(StrEnum):
    OPEN = "OPEN"
    OPENING = "OPENING"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class ExposureState(StrEnum):
    IDLE = "IDLE"
    EXPOSING = "EXPOSING"
    READOUT = "READOUT"
    ABORTED = "ABORTED"


PARK_ALT, PARK_AZ = 90.0, 180.0
SLEW_RATE = 2.0  # deg/s per axis, about what the NTT does
DOME_RATE = 2.0  # deg/s
SHUTTER_TIME_S = 60.0
READOUT_S = 10.0
SIDEREAL_DEG_S = 360.0 / 86164.0905
MIN_ALT = 15.0


def _wrap(az: float) -> float:
    return az % 360.0


def _az_delta(frm: float, to: float) -> float:
    """Shortest signed azimuth move from `frm` to `to`, in (-180, 180]."""
    d = (to - frm + 180.0) % 360.0 - 180.0
    return 180.0 if d == -180.0 else d


def _approach(value: float, target: float, max_step: float) -> float:
    return target if abs(target - value) <= max_step else value + math.copysign(max_step, target - value)


@dataclass
class Telescope:
    """The state of mount, dome, M1, instrument and exposure; commands change targets, `step` moves."""

    altitude: float = PARK_ALT
    azimuth: float = PARK_AZ
    state: MountState = MountState.PARKED
    target_alt: float = PARK_ALT
    target_az: float = PARK_AZ
    dome_azimuth: float = PARK_AZ
    shutter: Shutter = Shutter.CLOSED
    shutter_left_s: float = 0.0
    m1_temperature: float = 10.0
    instrument_state: str = "IDLE"
    ob_id: int = 0
    exposure_state: ExposureState = ExposureState.IDLE
    exposure_remaining_s: float = 0.0
    _parking: bool = False
    _readout_left_s: float = 0.0

    # --- commands -----------------------------------------------------------------------------
    def slew_to(self, altitude: float, azimuth: float) -> None:
        """Point at (alt, az) and track from there; refused below the altitude limit."""
        if not MIN_ALT <= altitude <= 90.0:
            raise ValueError(f"altitude {altitude:.1f}° is outside the {MIN_ALT:.0f}–90° limits")
        self.target_alt, self.target_az = altitude, _wrap(azimuth)
        self.state = MountState.SLEWING
        self._parking = False

    def park(self) -> None:
        self.abort_exposure()
        self.target_alt, self.target_az = PARK_ALT, PARK_AZ
        self.state = MountState.SLEWING
        self._parking = True

    def open_dome(self) -> None:
        if self.shutter in (Shutter.CLOSED, Shutter.CLOSING):
            self.shutter, self.shutter_left_s = Shutter.OPENING, SHUTTER_TIME_S

    def close_dome(self) -> None:
        if self.shutter in (Shutter.OPEN, Shutter.OPENING):
            self.shutter, self.shutter_left_s = Shutter.CLOSING, SHUTTER_TIME_S

    def start_exposure(self, ob_id: int, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("an exposure lasts a positive number of seconds")
        if self.exposure_state in (ExposureState.EXPOSING, ExposureState.READOUT):
            raise ValueError(f"an exposure of OB {self.ob_id} is already running")
        self.ob_id = ob_id
        self.exposure_state = ExposureState.EXPOSING
        self.exposure_remaining_s = seconds
        self.instrument_state = "EXPOSING"

    def abort_exposure(self) -> None:
        if self.exposure_state in (ExposureState.EXPOSING, ExposureState.READOUT):
            self.exposure_state = ExposureState.ABORTED
            self.exposure_remaining_s = 0.0
            self.instrument_state = "IDLE"

    # --- time ---------------------------------------------------------------------------------
    def step(self, dt: float, *, ambient_c: float = 10.0) -> None:
        """Advance `dt` seconds."""
        if dt <= 0:
            return
        self._move_mount(dt)
        follow = _az_delta(self.dome_azimuth, self.azimuth)
        self.dome_azimuth = _wrap(self.dome_azimuth + max(-DOME_RATE * dt, min(DOME_RATE * dt, follow)))
        if self.shutter in (Shutter.OPENING, Shutter.CLOSING):
            self.shutter_left_s -= dt
            if self.shutter_left_s <= 0:
                self.shutter = Shutter.OPEN if self.shutter is Shutter.OPENING else Shutter.CLOSED
                self.shutter_left_s = 0.0
        # M1 follows the air with a time constant of a few hours (a thick glass mirror).
        self.m1_temperature += (ambient_c - self.m1_temperature) * (1 - math.exp(-dt / 10_800.0))
        self._expose(dt)

    def _move_mount(self, dt: float) -> None:
        if self.state is MountState.SLEWING:
            self.altitude = _approach(self.altitude, self.target_alt, SLEW_RATE * dt)
            d = _az_delta(self.azimuth, self.target_az)
            self.azimuth = _wrap(self.azimuth + max(-SLEW_RATE * dt, min(SLEW_RATE * dt, d)))
            if self.altitude == self.target_alt and abs(_az_delta(self.azimuth, self.target_az)) < 1e-9:
                self.azimuth = self.target_az
                self.state = MountState.PARKED if self._parking else MountState.TRACKING
        elif self.state is MountState.TRACKING:
            # A simplified sidereal track: azimuth drifts west, altitude sinks slowly toward the limit.
            self.azimuth = _wrap(self.azimuth + SIDEREAL_DEG_S * dt)
            self.altitude = max(MIN_ALT, self.altitude - 0.5 * SIDEREAL_DEG_S * dt)

    def _expose(self, dt: float) -> None:
        if self.exposure_state is ExposureState.EXPOSING:
            self.exposure_remaining_s = max(0.0, self.exposure_remaining_s - dt)
            if self.exposure_remaining_s == 0.0:
                self.exposure_state = ExposureState.READOUT
                self._readout_left_s = READOUT_S
        elif self.exposure_state is ExposureState.READOUT:
            self._readout_left_s -= dt
            if self._readout_left_s <= 0:
                self.exposure_state = ExposureState.IDLE
                self.instrument_state = "IDLE"
