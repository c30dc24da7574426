"""GraphQL object types of the HMI."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from skyops.opdb.users import UserPublic


@strawberry.enum(description="The user's role group (SOXS web-app groups)")
class UserGroup(Enum):
    ADMINISTRATOR = "Administrator"
    SCIENCE = "Science"
    OPERATOR = "Operator"


@strawberry.type(description="A user account as administrators see it (never the password)")
class User:
    username: str
    full_name: str
    group: UserGroup
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, u: UserPublic) -> User:
        return cls(username=u.username, full_name=u.full_name, group=UserGroup(u.group.value), disabled=u.disabled,
                   created_at=u.created_at, last_login_at=u.last_login_at)


@strawberry.type(description="A session token to send as `Authorization: Bearer <token>` or in connection_init")
class LoginResult:
    token: str
    expires_at: datetime
    user: User


@strawberry.input(description="A new user account")
class UserInput:
    username: str
    full_name: str
    group: UserGroup
    password: str
    disabled: bool = False


@strawberry.input(description="Changes to an account; omitted fields stay as they are")
class UserChanges:
    full_name: str | None = None
    group: UserGroup | None = None
    disabled: bool | None = None
    password: str | None = None


@strawberry.type(description="A point's newest value; NaN/inf never leave the server (value null, quality BAD)")
class PointValue:
    point: str
    time: datetime
    value: strawberry.scalars.JSON | None
    quality: str


@strawberry.type(description="A point's history in regular bins, as columns; gap bins hold nulls and count 0")
class TimeSeries:
    point: str
    resolution: str = strawberry.field(description="raw, 1m or 1h: where the bins were computed from")
    bin_seconds: float
    times: list[datetime]
    count: list[int]
    bad_count: list[int]
    min: list[float | None]
    max: list[float | None]
    mean: list[float | None]
    first: list[float | None]
    last: list[float | None]


@strawberry.type(description="One log record")
class LogEntry:
    time: datetime
    level: str
    source: str
    component: str
    host: str
    message: str
    attributes: strawberry.scalars.JSON
    trace_id: str | None
    ob_id: str | None


@strawberry.type(description="A page of log records; pass `nextCursor` back for the next page")
class LogPage:
    entries: list[LogEntry]
    next_cursor: str | None


@strawberry.input(description="Which log records to return; everything optional but the time range")
class LogFilter:
    start: datetime
    end: datetime
    min_level: str = "DEBUG"
    sources: list[str] | None = None
    hosts: list[str] | None = None
    components: list[str] | None = None
    text: str | None = None
    regex: str | None = None
    newest_first: bool = True


@strawberry.type(description="An alarm transition or operator action, as archived")
class AlarmHistoryEntry:
    alarm_id: str
    time: datetime
    seq: int
    action: str
    severity: str
    latched: str
    state: str
    acked: bool
    user: str | None
    comment: str | None
    reason: str
    attributes: strawberry.scalars.JSON


@strawberry.type(description="A live alarm event with its sequence number (pass it as `after` to resume)")
class AlarmEventUpdate:
    seq: str
    event: AlarmHistoryEntry


@strawberry.type(description="A live log record with its sequence number (pass it as `after` to resume)")
class LogUpdate:
    seq: str
    entry: LogEntry


@strawberry.input(description="Which live log records to receive")
class LiveLogFilter:
    min_level: str = "DEBUG"
    sources: list[str] | None = None
    text: str | None = None


@strawberry.type(description="An alarm as the operator sees it, with the rule's guidance and its consequence")
class Alarm:
    alarm_id: str
    status: str
    severity: str
    latched: str
    acked: bool
    acked_severity: str
    shelved_until: datetime | None
    shelved_by: str | None
    reason: str
    changed: datetime
    kind: str
    description: str
    guidance: str
    consequence: str
    attributes: strawberry.scalars.JSON


@strawberry.type(description="One OB placed in the night plan")
class PlanBlock:
    ob_id: str
    name: str
    target_name: str
    ob_type: str
    priority: int
    start: datetime
    end: datetime
    exposure_s: float
    ra_deg: float
    dec_deg: float
    magnitude: float | None


@strawberry.type(description="The current plan of a night, with why it last changed")
class NightPlan:
    seq: str = strawberry.field(description="stream sequence of this plan (for resuming the subscription)")
    plan_id: str
    night: str
    created: datetime
    reason: str
    trigger_alarm: str | None
    trigger_kind: str | None
    blocks: list[PlanBlock]
    trigger_user: str | None = strawberry.field(default=None, description="who asked, for a manual re-plan")
