"""Executing the VES (pure): where an OB's target is in the sky, which OB comes next, and what to tell P2."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from skyops.timeutil import require_utc

_RA = re.compile(r"^\s*(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*$")
_DEC = re.compile(r"^\s*([+-]?)(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*$")
_J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)


class TargetError(ValueError):
    """An OB's target coordinates cannot be read; the message names the OB and the field."""


def ra_degrees(text: str) -> float:
    """P2's right ascension `HH:MM:SS.sss` in degrees."""
    m = _RA.match(text)
    if not m or int(m[1]) >= 24 or int(m[2]) >= 60 or float(m[3]) >= 60:
        raise TargetError(f"right ascension {text!r} is not HH:MM:SS.sss")
    return 15.0 * (int(m[1]) + int(m[2]) / 60 + float(m[3]) / 3600)


def dec_degrees(text: str) -> float:
    """P2's declination `[+-]DD:MM:SS.ss` in degrees."""
    m = _DEC.match(text)
    if not m or int(m[3]) >= 60 or float(m[4]) >= 60:
        raise TargetError(f"declination {text!r} is not [+-]DD:MM:SS.ss")
    value = int(m[2]) + int(m[3]) / 60 + float(m[4]) / 3600
    if value > 90:
        raise TargetError(f"declination {text!r} is beyond the pole")
    return -value if m[1] == "-" else value


def local_sidereal_deg(when: datetime, longitude_deg: float) -> float:
    """Local mean sidereal time in degrees (IAU 1982 GMST; good to a fraction of an arcsecond per century)."""
    days = (require_utc(when) - _J2000).total_seconds() / 86_400.0
    gmst = 280.46061837 + 360.98564736629 * days
    return (gmst + longitude_deg) % 360.0


def alt_az(ra_deg: float, dec_deg: float, when: datetime, *, latitude_deg: float,
           longitude_deg: float) -> tuple[float, float]:
    """Altitude and azimuth (degrees; azimuth from north through east) of a J2000 position at `when`.

    No precession, nutation or refraction: enough to point a simulator (errors well under a degree).
    """
    ha = math.radians(local_sidereal_deg(when, longitude_deg) - ra_deg)
    dec, lat = math.radians(dec_deg), math.radians(latitude_deg)
    sin_alt = math.sin(dec) * math.sin(lat) + math.cos(dec) * math.cos(lat) * math.cos(ha)
    alt = math.degrees(math.asin(max(-1.0, min(1.0, sin_alt))))
    az = math.degrees(math.atan2(-math.cos(dec) * math.sin(ha),
                                 math.sin(dec) * math.cos(lat) - math.cos(dec) * math.sin(lat) * math.cos(ha)))
    return alt, az % 360.0


def night_of(when: datetime, longitude_deg: float) -> str:
    """The night (`YYYY-MM-DD` of its evening, local mean time) that holds `when`: nights run noon to noon."""
    local = require_utc(when) + timedelta(hours=longitude_deg / 15.0)
    return (local - timedelta(hours=12)).date().isoformat()


@dataclass(frozen=True)
class ObToExecute:
    """What the executor needs of a P2 OB: its id, name, target and times."""

    p2_ob_id: int
    name: str
    target_name: str
    ra_deg: float
    dec_deg: float
    execution_time_s: float
    exposure_time_s: float

    @classmethod
    def from_p2(cls, ob: Any) -> ObToExecute:
        """From P2's OB JSON; bad coordinates or times raise `TargetError` naming the OB and field."""
        ob_id = ob.get("obId")
        try:
            target = ob["target"]
            execution = float(ob.get("executionTime") or 0)
            exposure = float(ob.get("exposureTime") or 0)
            parsed = cls(p2_ob_id=int(ob_id), name=str(ob.get("name", "")), target_name=str(target.get("name", "")),
                         ra_deg=ra_degrees(str(target["ra"])), dec_deg=dec_degrees(str(target["dec"])),
                         execution_time_s=execution, exposure_time_s=exposure)
        except TargetError as exc:
            raise TargetError(f"P2 OB {ob_id}: target: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetError(f"P2 OB {ob_id}: unreadable OB ({type(exc).__name__}: {exc})") from None
        if parsed.execution_time_s <= 0 and parsed.exposure_time_s <= 0:
            raise TargetError(f"P2 OB {ob_id}: executionTime and exposureTime are both 0; nothing to expose")
        return parsed

    def exposure_seconds(self, spent_s: float) -> float:
        """How long to expose after `spent_s` of slewing: the whole OB lasts its execution time (what the
        plan budgeted, overheads included), but the exposure is never shorter than the OB's exposure time."""
        budget = self.execution_time_s - max(0.0, spent_s)
        return max(budget, self.exposure_time_s, 1.0)


def next_ob(ves: Sequence[int], done: Iterable[int], passed: Iterable[int] = ()) -> int | None:
    """The first OB of the VES (in its order) not executed tonight and not passed over; None: nothing left."""
    skip = set(done) | set(passed)
    return next((ob_id for ob_id in ves if ob_id not in skip), None)


def executed_tonight(executions: Iterable[Any]) -> set[int]:
    """The P2 OB ids with a finished execution (P2's night executions): they are not executed again tonight."""
    return {int(e["obId"]) for e in executions if e.get("status") == "executed"}


class Outcome(StrEnum):
    """How an OB's execution ended, in P2's words (the emulator's execution statuses)."""

    STARTED = "started"
    EXECUTED = "executed"
    ABORTED = "aborted"
    FAILED = "failed"


# The status P2 gives an OB when one of its executions ends (a failed OB is ready to be observed again).
STATUS_AFTER = {Outcome.EXECUTED: "X", Outcome.ABORTED: "A", Outcome.FAILED: "+"}


def _utc(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    # P2 keeps its times in UTC; a time written without an offset is still UTC.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def execution_ends(executions: Iterable[Any]) -> dict[tuple[int, str], datetime]:
    """When an OB got its status from an execution: for each (P2 OB id, status it left the OB in), the end of
    the latest such execution in P2's `executions`. Unfinished or unreadable records are left out."""
    latest: dict[tuple[int, str], tuple[datetime, datetime]] = {}
    for e in executions:
        try:
            key = (int(e["obId"]), STATUS_AFTER[Outcome(e.get("status"))])
        except (KeyError, TypeError, ValueError):
            continue
        start, end = _utc(e.get("from")), _utc(e.get("to"))
        if start is None or end is None:
            continue
        if key not in latest or start > latest[key][0]:
            latest[key] = (start, end)
    return {key: end for key, (_, end) in latest.items()}


@dataclass(frozen=True)
class Execution:
    """One execution of an OB as reported to P2: named by OB and start, so a resend updates rather than adds."""

    p2_ob_id: int
    night: str
    start: datetime
    outcome: Outcome
    end: datetime | None = None

    def __post_init__(self) -> None:
        require_utc(self.start, what="execution start")
        if self.end is not None and require_utc(self.end, what="execution end") < self.start:
            raise ValueError(f"execution of P2 OB {self.p2_ob_id} ends before it starts")
        if self.outcome is not Outcome.STARTED and self.end is None:
            raise ValueError(f"a {self.outcome} execution of P2 OB {self.p2_ob_id} needs its end time")

    def to_p2(self) -> dict[str, Any]:
        body: dict[str, Any] = {"obId": self.p2_ob_id, "night": self.night, "from": self.start.isoformat(),
                                "status": str(self.outcome)}
        if self.end is not None:
            body["to"] = self.end.isoformat()
        return body

    def finished(self, outcome: Outcome, end: datetime) -> Execution:
        return Execution(self.p2_ob_id, self.night, self.start, outcome, end)


@dataclass(frozen=True)
class TelescopeStatus:
    """What the executor reads from the telescope's OPC-UA nodes at one moment."""

    mount: str
    shutter: str
    exposure_state: str
    exposure_ob_id: int
    exposure_remaining_s: float
    altitude: float = 0.0
    azimuth: float = 0.0

    @property
    def dome_open(self) -> bool:
        return self.shutter == "OPEN"

    @property
    def exposing(self) -> bool:
        return self.exposure_state in ("EXPOSING", "READOUT")


def exposure_outcome(status: TelescopeStatus, ob_id: int) -> Outcome | None:
    """How our exposure of `ob_id` stands: None while it runs, EXECUTED once read out, ABORTED if cut short."""
    if status.exposure_ob_id != ob_id or status.exposure_state == "ABORTED":
        return Outcome.ABORTED
    if status.exposure_state == "IDLE":
        return Outcome.EXECUTED
    return None
