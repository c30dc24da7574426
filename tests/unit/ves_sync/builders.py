"""Builders of planned blocks and night plans for the VES-sync tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from skyops.messages import AzimuthSector, ConsequenceKind, PlanEvent, PlannedBlock, PlanTrigger

NIGHT = "2026-11-21"
DUSK = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)


def block(n: int, *, exposure_s: float = 600.0, start: datetime | None = None, **changes: object) -> PlannedBlock:
    begin = start or DUSK + timedelta(minutes=20 * n)
    fields: dict[str, object] = {
        "ob_id": f"soxs-ob-{n:04d}",
        "name": f"SN 2026a{n:03d} classification",
        "target_name": f"SN2026a{n:03d}",
        "ra_deg": (12.5 * n) % 360,
        "dec_deg": -60.0 + 3.5 * (n % 30),
        "magnitude": 18.5,
        "exposure_s": exposure_s,
        "priority": 1 + n % 4,
        "ob_type": "classification",
        "start": begin,
        "end": begin + timedelta(seconds=exposure_s + 480),
        "max_airmass": 1.8,
        "min_moon_distance_deg": 30.0,
        "max_seeing_arcsec": 1.5,
    }
    fields.update(changes)
    return PlannedBlock.model_validate(fields)


def plan(blocks: Sequence[PlannedBlock], *, plan_id: str = "plan-1", created: datetime | None = None,
         reason: str = "nightly plan", trigger: PlanTrigger | None = None, night: str = NIGHT) -> PlanEvent:
    return PlanEvent(plan_id=plan_id, night=night, created=created or DUSK - timedelta(hours=2), reason=reason,
                     trigger=trigger, blocks=tuple(blocks))


def night(n: int = 30) -> list[PlannedBlock]:
    return [block(i) for i in range(n)]


def wind_trigger(ts: datetime) -> PlanTrigger:
    return PlanTrigger(kind="consequence", ts=ts, reason="wind 18 m/s from 240°", alarm_id="WindPointing.asm:1",
                       consequence=ConsequenceKind.POINTING_RESTRICTION,
                       sector=AzimuthSector(start_deg=210, end_deg=270))
