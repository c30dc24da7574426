"""Low-rate messages between services (JSON on the bus): triggers for the planner and the plans it publishes."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

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
    """Why the rest of the night must be re-planned: an alarm consequence starting or ending, a ToO, a person, or
    OBs changed outside the planner (a GCN retraction or refined position)."""

    kind: Literal["consequence", "too", "manual", "ob_change"]
    ts: UtcDatetime
    reason: str = Field(min_length=1, max_length=500)
    # kind == "consequence"
    alarm_id: str | None = None
    consequence: ConsequenceKind | None = None
    active: bool = True
    sector: AzimuthSector | None = None
    seeing_limit_arcsec: float | None = Field(default=None, gt=0)
    # kind == "too"; kind == "ob_change": the OB deleted, retracted or edited outside the planner (optional)
    ob_id: str | None = None
    # kind == "manual": who asked (an HMI user), so the plan and the VES history say who changed them
    user: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _complete(self) -> PlanTrigger:
        if self.kind == "consequence":
            if self.alarm_id is None or self.consequence is None:
                raise ValueError("a consequence trigger names its alarm and its consequence")
            if self.active and self.consequence is ConsequenceKind.POINTING_RESTRICTION and self.sector is None:
                raise ValueError("an active pointing restriction carries its forbidden sector")
            if self.active and self.consequence is ConsequenceKind.SEEING_LIMIT and self.seeing_limit_arcsec is None:
                raise ValueError("an active seeing limit carries its limit in arcsec")
        elif self.kind == "too" and self.ob_id is None:
            raise ValueError("a ToO trigger names the OB to observe first")
        elif self.kind == "manual" and self.user is None:
            raise ValueError("a manual trigger names the user who asked for it")
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


# P2 OB ids are positive 32-bit integers (the emulator's and P2's), so a bad one is refused at decode.
P2ObId = Annotated[int, Field(gt=0, lt=2**31)]
OwnObId = Annotated[str, Field(min_length=1, max_length=100)]


class P2ObLinked(Message):
    """The VES sync created or updated planner OB `ob_id` in P2 as `p2_ob_id`, now at `p2_version` (its ETag)."""

    kind: Literal["link"] = "link"
    ob_id: OwnObId
    p2_ob_id: P2ObId
    p2_version: str = Field(max_length=200)
    ts: UtcDatetime


class P2ObStatus(Message):
    """The VES sync saw P2 OB `p2_ob_id` (planner OB `ob_id`) move from status `previous` to `status` by `ts`.

    Statuses are P2's letters: '+' ready, 'S' started, 'X' executed, 'A' aborted, 'P' in preparation…
    `execution_end` is when the execution that gave the OB this status ended, as P2 recorded it (None: not
    an execution's doing, or not known): the time the OB was observed, where `ts` is when the sync looked.
    """

    kind: Literal["status"] = "status"
    ob_id: OwnObId
    p2_ob_id: P2ObId
    status: str = Field(min_length=1, max_length=4)
    previous: str = Field(default="", max_length=4)
    ts: UtcDatetime
    execution_end: UtcDatetime | None = None


P2ObUpdate = P2ObLinked | P2ObStatus


@functools.cache
def _p2_ob_update_adapter() -> TypeAdapter[P2ObUpdate]:
    return TypeAdapter(Annotated[P2ObUpdate, Field(discriminator="kind")])


def decode_p2_ob_update(payload: bytes) -> P2ObUpdate:
    """A `P2ObLinked` or a `P2ObStatus`, told apart by `kind`; anything else raises `pydantic.ValidationError`."""
    return _p2_ob_update_adapter().validate_json(payload)
