"""Low-rate messages between services (JSON on the bus): triggers for the planner and the plans it publishes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from skyops.timeutil import require_utc

UtcDatetime = Annotated[AwareDatetime, AfterValidator(require_utc)]


class Message(BaseModel):
    """Base of bus messages: validated, immutable, strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class ConsequenceKind(StrEnum):
    """What an alarm means for the night plan (DESIGN §5)."""

    CLOSE_DOME = "close_dome"
    POINTING_RESTRICTION = "pointing_restriction"
    SEEING_LIMIT = "seeing_limit"


class AzimuthSector(BaseModel):
    """Azimuths from `start_deg` clockwise to `end_deg` (may wrap through north), in degrees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_deg: float = Field(ge=0, lt=360)
    end_deg: float = Field(ge=0, lt=360)

    def contains(self, az_deg: float) -> bool:
        az = az_deg % 360
        if self.start_deg <= self.end_deg:
            return self.start_deg <= az <= self.end_deg
        return az >= self.start_deg or az <= self.end_deg


class PlanTrigger(Message):
    """Why the rest of the night must be re-planned: an alarm consequence starting or ending, or a ToO."""

    kind: Literal["consequence", "too"]
    ts: UtcDatetime
    reason: str = Field(min_length=1, max_length=500)
    # kind == "consequence"
    alarm_id: str | None = None
    consequence: ConsequenceKind | None = None
    active: bool = True
    sector: AzimuthSector | None = None
    seeing_limit_arcsec: float | None = Field(default=None, gt=0)
    # kind == "too"
    ob_id: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> PlanTrigger:
        if self.kind == "consequence":
            if self.alarm_id is None or self.consequence is None:
                raise ValueError("a consequence trigger names its alarm and its consequence")
            if self.active and self.consequence is ConsequenceKind.POINTING_RESTRICTION and self.sector is None:
                raise ValueError("an active pointing restriction carries its forbidden sector")
            if self.active and self.consequence is ConsequenceKind.SEEING_LIMIT and self.seeing_limit_arcsec is None:
                raise ValueError("an active seeing limit carries its limit in arcsec")
        elif self.ob_id is None:
            raise ValueError("a ToO trigger names the OB to observe first")
        return self


class PlannedBlock(Message):
    """One OB placed in the night plan, with what the VES sync needs to create it in P2."""

    ob_id: str
    name: str
    target_name: str
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)
    magnitude: float | None = None
    exposure_s: float = Field(gt=0)
    priority: int
    ob_type: str
    start: UtcDatetime
    end: UtcDatetime
    max_airmass: float | None = None
    min_moon_distance_deg: float | None = None
    max_seeing_arcsec: float | None = None
    p2_ob_id: int | None = None


class PlanEvent(Message):
    """A new or changed plan for a night, in execution order, with the reason it changed."""

    plan_id: str
    night: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="local date of the evening the night starts")
    created: UtcDatetime
    reason: str
    trigger: PlanTrigger | None = None
    blocks: tuple[PlannedBlock, ...]


def decode_plan_trigger(payload: bytes) -> PlanTrigger:
    return PlanTrigger.model_validate_json(payload)


def decode_plan_event(payload: bytes) -> PlanEvent:
    return PlanEvent.model_validate_json(payload)


