"""What the P2 emulator accepts in request bodies: OBs, time constraints, items, VES entries (pydantic, strict)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

OB_NAME_MAX = 64
_RA = re.compile(r"^(\d{2}):(\d{2}):(\d{2}(?:\.\d{1,4})?)$")
_DEC = re.compile(r"^([+-]?)(\d{2}):(\d{2}):(\d{2}(?:\.\d{1,3})?)$")
_LST = re.compile(r"^(\d{2}):(\d{2})$")
SKY_TRANSPARENCY = ("Photometric", "Clear", "Variable, thin cirrus", "Variable, thick cirrus")
VES_STATUSES = frozenset({"+", "A", "X", "S"})


def check_ra(value: str) -> str:
    m = _RA.match(value)
    if not m or int(m[1]) >= 24 or int(m[2]) >= 60 or float(m[3]) >= 60:
        raise ValueError(f"right ascension {value!r} is not HH:MM:SS.sss with HH < 24")
    return value


def check_dec(value: str) -> str:
    m = _DEC.match(value)
    if not m or int(m[3]) >= 60 or float(m[4]) >= 60:
        raise ValueError(f"declination {value!r} is not [+-]DD:MM:SS.ss")
    if int(m[2]) + int(m[3]) / 60 + float(m[4]) / 3600 > 90:
        raise ValueError(f"declination {value!r} is beyond the pole")
    return value


Ra = Annotated[str, AfterValidator(check_ra)]
Dec = Annotated[str, AfterValidator(check_dec)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Target(Strict):
    name: str = Field(max_length=100)
    ra: Ra
    dec: Dec
    equinox: Literal["J2000"] = "J2000"
    epoch: float = 2000.0
    properMotionRa: float = Field(default=0.0, ge=-10, le=10)
    properMotionDec: float = Field(default=0.0, ge=-10, le=10)
    differentialRa: float = 0.0
    differentialDec: float = 0.0


class Constraints(Strict):
    name: str = Field(default="", max_length=100)
    airmass: float = Field(ge=1.0, le=5.0)
    skyTransparency: Literal[SKY_TRANSPARENCY] = "Variable, thin cirrus"  # type: ignore[valid-type]
    fli: float = Field(ge=0.0, le=1.0)
    seeing: float = Field(ge=0.3, le=5.0)
    moonDistance: int = Field(ge=0, le=180)
    twilight: int = Field(ge=-180, le=180)


class ObsDescription(Strict):
    name: str = Field(default="", max_length=100)
    userComments: str = Field(default="", max_length=2000)
    instrumentComments: str = Field(default="", max_length=2000)


class ObBody(Strict):
    """An OB as saveOB sends it back: the GET fields, some of them read-only."""

    obId: int
    itemType: Literal["OB"]
    name: str = Field(min_length=1, max_length=OB_NAME_MAX)
    obStatus: str
    runId: int
    parentContainerId: int
    instrument: str
    ipVersion: str
    userPriority: int = Field(ge=1, le=100000)
    exposureTime: int
    executionTime: int
    target: Target
    constraints: Constraints
    obsDescription: ObsDescription


READ_ONLY_OB_FIELDS = ("obId", "itemType", "obStatus", "runId", "parentContainerId", "instrument", "ipVersion",
                       "exposureTime", "executionTime")


class NewItem(Strict):
    itemType: Literal["OB", "CB", "Folder", "Group", "Concatenation", "TimeLink"]
    name: str = Field(min_length=1, max_length=OB_NAME_MAX)


class MoveItem(Strict):
    itemType: Literal["OB", "CB", "Folder", "Group", "Concatenation", "TimeLink"]
    obId: int | None = None
    containerId: int | None = None


class ContainerBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    containerId: int
    name: str = Field(min_length=1, max_length=OB_NAME_MAX)
    userPriority: int = Field(default=1, ge=1, le=100000)


class ItemRef(BaseModel):
    """A member of a list the client sends back (items, VES): only the id counts, other GET fields may ride along."""

    model_config = ConfigDict(extra="allow")

    itemType: str | None = None
    obId: int | None = None
    containerId: int | None = None


class VesEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    obId: int


class Verify(Strict):
    submit: bool = False


class AbsoluteInterval(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # P2 reads times without an offset as UTC; any other offset is refused rather than converted.
        offset = value.utcoffset()
        if offset is not None and offset.total_seconds() != 0:
            raise ValueError("absolute time constraints must be in UTC")
        return value.replace(tzinfo=None)


class SiderealInterval(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: str = Field(alias="from")
    end: str = Field(alias="to")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        m = _LST.match(value)
        if not m or int(m[1]) > 24 or int(m[2]) >= 60 or (int(m[1]) == 24 and int(m[2]) != 0):
            raise ValueError(f"sidereal time {value!r} is not HH:MM between 00:00 and 24:00")
        return value


class NewTemplate(Strict):
    templateName: str


class TemplateParamValue(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    value: Any = None


class TemplateBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    templateId: int
    templateName: str
    type: str
    parameters: list[TemplateParamValue]


class ExecutionRecord(Strict):
    """An execution the telescope reports (emulator extension: real P2 learns this from the observatory)."""

    obId: int
    night: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime | None = Field(default=None, alias="to")
    status: Literal["started", "executed", "failed", "aborted"]

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def describe(exc: ValidationError, what: str) -> str:
    """A one-line message naming every bad field, as P2 would put in its error body."""
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or what
        problems.append(f"{where}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(problems)
