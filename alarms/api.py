"""The public alarm functions the HMI and the CLI call: active alarms, history, ack, shelve, unshelve, comment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from alarms.commands import ALARM_COMMANDS, AlarmCommand, AlarmCommandError, send_command
from alarms.domain.state import AlarmState, AlarmStatus
from alarms.store import AlarmStateStore
from skyops.archive.port import Archive
from skyops.bus import Bus
from skyops.records import AlarmEvent, AlarmSeverity
from skyops.timeutil import Clock, from_us, require_utc


@dataclass(frozen=True, slots=True)
class AlarmView:
    """An alarm as the operator sees it: its state with the rule's guidance and consequence."""

    alarm_id: str
    status: AlarmStatus
    severity: AlarmSeverity
    latched: AlarmSeverity
    acked: bool
    acked_severity: AlarmSeverity
    shelved_until: datetime | None
    shelved_by: str | None
    reason: str
    changed: datetime
    kind: str
    description: str
    guidance: str
    consequence: str
    attributes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: enums by name, times in ISO 8601 UTC."""
        return {
            "alarm_id": self.alarm_id, "status": self.status.value, "severity": self.severity.name,
            "latched": self.latched.name, "acked": self.acked, "acked_severity": self.acked_severity.name,
            "shelved_until": None if self.shelved_until is None else self.shelved_until.isoformat(),
            "shelved_by": self.shelved_by, "reason": self.reason, "changed": self.changed.isoformat(),
            "kind": self.kind, "description": self.description, "guidance": self.guidance,
            "consequence": self.consequence, "attributes": dict(self.attributes),
        }


def alarm_view(state: AlarmState, rule: dict[str, Any]) -> AlarmView:
    return AlarmView(
        alarm_id=state.alarm_id, status=state.status, severity=state.severity, latched=state.latched,
        acked=state.acked, acked_severity=state.acked_severity,
        shelved_until=None if state.shelved_until_us is None else from_us(state.shelved_until_us),
        shelved_by=state.shelved_by, reason=state.reason, changed=from_us(state.changed_us),
        kind=str(rule.get("kind", "")), description=str(rule.get("description", "")),
        guidance=str(rule.get("guidance", "")),
        consequence=str(dict(rule.get("consequence") or {}).get("kind", "none")),
        attributes=dict(state.attributes),
    )


def _severity(value: AlarmSeverity | str | None) -> AlarmSeverity | None:
    if value is None or isinstance(value, AlarmSeverity):
        return value
    try:
        return AlarmSeverity[value.strip().upper()]
    except KeyError:
        raise AlarmCommandError(
            f"unknown severity {value!r}; use one of {', '.join(s.name for s in AlarmSeverity)}"
        ) from None


class AlarmService:
    """Reads alarm state from the store and history from the archive; actions go to the supervisor."""

    def __init__(self, bus: Bus, store: AlarmStateStore, archive: Archive | None, clock: Clock, *,
                 timeout_s: float = 5.0, commands_stream: str = ALARM_COMMANDS) -> None:
        self.commands_stream = commands_stream
        self.bus = bus
        self.store = store
        self.archive = archive
        self.clock = clock
        self.timeout_s = timeout_s

    async def alarms(self, *, active_only: bool = True) -> list[AlarmView]:
        """Alarms needing attention (all when `active_only` is false), worst and newest first."""
        states, rules = await self.store.states(), await self.store.rules()
        views = []
        for alarm_id, data in states.items():
            state = AlarmState.load(data["state"])
            if not active_only or state.needs_attention:
                views.append(alarm_view(state, rules.get(alarm_id, {})))
        views.sort(key=lambda v: (-max(int(v.latched), int(v.severity)), -v.changed.timestamp(), v.alarm_id))
        return views

    async def alarm(self, alarm_id: str) -> AlarmView:
        for view in await self.alarms(active_only=False):
            if view.alarm_id == alarm_id:
                return view
        raise AlarmCommandError(f"no alarm named {alarm_id!r}")

    async def history(self, *, start: datetime, end: datetime, alarm_id: str | None = None,
                      limit: int = 1000) -> list[AlarmEvent]:
        if self.archive is None:
            raise AlarmCommandError("no archive is configured for alarm history")
        return await self.archive.alarm_history(start=require_utc(start, what="start"),
                                                end=require_utc(end, what="end"), alarm_id=alarm_id, limit=limit)

    async def _send(self, **fields: Any) -> None:
        try:
            command = AlarmCommand(**fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise AlarmCommandError(problems) from None
        await send_command(self.bus, command, timeout_s=self.timeout_s, stream=self.commands_stream)

    async def ack(self, alarm_id: str, *, user: str, comment: str, seen: AlarmSeverity | str | None = None) -> None:
        """Acknowledge; refused (AlarmCommandError) if the severity rose above `seen` meanwhile."""
        await self._send(action="ack", alarm_id=alarm_id, user=user, comment=comment, seen=_severity(seen))

    async def shelve(self, alarm_id: str, *, user: str, comment: str, until: datetime | None = None,
                     duration: timedelta | None = None) -> datetime:
        """Shelve until `until` (or for `duration`); one of the two is required. Returns the expiry."""
        if (until is None) == (duration is None):
            raise AlarmCommandError("shelving needs exactly one of an expiry time or a duration")
        expiry = require_utc(until, what="shelve expiry") if until is not None else self.clock.now() + (
            duration or timedelta(0))
        await self._send(action="shelve", alarm_id=alarm_id, user=user, comment=comment, until=expiry)
        return expiry

    async def unshelve(self, alarm_id: str, *, user: str, comment: str) -> None:
        await self._send(action="unshelve", alarm_id=alarm_id, user=user, comment=comment)

    async def comment(self, alarm_id: str, *, user: str, comment: str) -> None:
        await self._send(action="comment", alarm_id=alarm_id, user=user, comment=comment)
