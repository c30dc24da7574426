"""The alarm state machine: severity, active/cleared, acked/unacked, latched at the highest severity seen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from skyops.errors import SkyopsError
from skyops.records import AlarmEvent, AlarmSeverity
from skyops.timeutil import from_us, to_us

SYSTEM_USER = "system"


class AlarmStatus(StrEnum):
    OK = "OK"
    ACTIVE_UNACKED = "ACTIVE_UNACKED"
    ACTIVE_ACKED = "ACTIVE_ACKED"
    CLEARED_UNACKED = "CLEARED_UNACKED"
    INVALID = "INVALID"


class AlarmActionError(SkyopsError, ValueError):
    """An operator action that does not apply to the alarm as it is now (the message says why)."""


class AckRefusedError(AlarmActionError):
    """The severity rose above what the operator saw: they must look again before acknowledging."""

    def __init__(self, message: str, event: AlarmEvent) -> None:
        super().__init__(message)
        self.event = event


def _required(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise AlarmActionError(f"{what} is required")
    return value.strip()


@dataclass(slots=True)
class AlarmState:
    """One alarm's state. Mutated only through its methods, each returning the events it caused: every
    transition and every operator action is recorded with who, when and why."""

    alarm_id: str
    severity: AlarmSeverity = AlarmSeverity.NONE
    latched: AlarmSeverity = AlarmSeverity.NONE
    acked: bool = False
    acked_severity: AlarmSeverity = AlarmSeverity.NONE
    valid: bool = True
    reason: str = ""
    shelved_until_us: int | None = None
    shelved_by: str | None = None
    seq: int = 0
    changed_us: int = 0
    attributes: dict[str, str] = field(default_factory=dict)

    # --- reading ------------------------------------------------------------------------------
    @property
    def status(self) -> AlarmStatus:
        if not self.valid:
            return AlarmStatus.INVALID
        if self.severity > AlarmSeverity.NONE:
            return AlarmStatus.ACTIVE_ACKED if self.acked else AlarmStatus.ACTIVE_UNACKED
        if self.latched > AlarmSeverity.NONE:
            return AlarmStatus.CLEARED_UNACKED
        return AlarmStatus.OK

    @property
    def shelved(self) -> bool:
        return self.shelved_until_us is not None

    @property
    def needs_attention(self) -> bool:
        """Shown in the operator's active list: anything but OK."""
        return self.status is not AlarmStatus.OK

    def _event(
        self, now_us: int, action: str, *, user: str | None = None, comment: str | None = None,
        reason: str | None = None, extra: Mapping[str, str] | None = None,
    ) -> AlarmEvent:
        self.seq += 1
        self.changed_us = now_us
        attrs = dict(self.attributes)
        attrs["status"] = self.status.value
        if self.shelved_until_us is not None:
            attrs["shelved_until"] = from_us(self.shelved_until_us).isoformat()
            attrs["shelved_by"] = self.shelved_by or ""
        if self.acked:
            attrs["acked_severity"] = self.acked_severity.name
        if extra:
            attrs.update(extra)
        return AlarmEvent(
            alarm_id=self.alarm_id, ts=from_us(now_us), seq=self.seq, action=action, severity=self.severity,
            latched=self.latched, state=self.status.value, acked=self.acked, user=user, comment=comment,
            reason=self.reason if reason is None else reason, attributes=attrs,
        )

    # --- evaluation ---------------------------------------------------------------------------
    def update(
        self, now_us: int, severity: AlarmSeverity, *, valid: bool, reason: str,
        attributes: Mapping[str, str] | None = None,
    ) -> list[AlarmEvent]:
        """Take the rule's filtered severity (or its INVALID verdict); returns the transitions.

        The attributes (the value, the sector...) are those of the last transition, not of every evaluation.
        """
        attrs = dict(attributes or {})
        events: list[AlarmEvent] = []
        if not valid:
            if self.valid:
                self.valid = False
                self.reason = reason
                self.attributes = attrs
                events.append(self._event(now_us, "invalid"))
            return events
        if not self.valid:
            self.valid = True
            self.reason = reason
            self.attributes = attrs
            events.append(self._event(now_us, "valid"))
        if severity == self.severity:
            return events
        self.reason = reason
        self.attributes = attrs
        old = self.severity
        self.severity = severity
        if severity > self.latched:
            # A rise above anything latched re-alarms even an acknowledged alarm.
            self.latched = severity
            self.acked = False
            self.acked_severity = AlarmSeverity.NONE
            events.append(self._event(now_us, "raise", extra={"from": old.name}))
        elif severity == AlarmSeverity.NONE:
            if self.acked:
                # Acknowledged until clear: the cleared alarm is back to OK, the next one needs a new ack.
                self.latched = AlarmSeverity.NONE
                self.acked = False
                self.acked_severity = AlarmSeverity.NONE
            events.append(self._event(now_us, "clear", extra={"from": old.name}))
        else:
            events.append(self._event(now_us, "change", extra={"from": old.name}))
        return events

    # --- operator actions ---------------------------------------------------------------------
    def ack(self, now_us: int, *, user: str, comment: str, seen: AlarmSeverity | None = None) -> list[AlarmEvent]:
        """Acknowledge what the operator saw (`seen`); refused if the alarm has latched higher since."""
        user = _required(user, "user")
        comment = _required(comment, "comment")
        if self.latched == AlarmSeverity.NONE:
            raise AlarmActionError(f"{self.alarm_id} has nothing to acknowledge")
        if self.acked:
            raise AlarmActionError(f"{self.alarm_id} is already acknowledged at {self.acked_severity.name}")
        if seen is not None and self.latched > seen:
            why = f"severity rose to {self.latched.name} since {seen.name} was displayed; look again and re-acknowledge"
            event = self._event(now_us, "ack_refused", user=user, comment=comment, reason=why,
                                extra={"seen_severity": seen.name})
            raise AckRefusedError(f"{self.alarm_id}: acknowledgement refused: {why}", event)
        self.acked = True
        self.acked_severity = self.latched
        reason = f"acknowledged at {self.latched.name}"
        if self.severity == AlarmSeverity.NONE:
            self.latched = AlarmSeverity.NONE
            self.acked = False
            self.acked_severity = AlarmSeverity.NONE
            reason = f"{reason}; already cleared, now OK"
        return [self._event(now_us, "ack", user=user, comment=comment, reason=reason)]

    def shelve(
        self, now_us: int, *, user: str, comment: str, until_us: int, max_shelve: timedelta
    ) -> list[AlarmEvent]:
        """Silence the alarm's notifications until `until_us` (mandatory, at most `max_shelve` away)."""
        user = _required(user, "user")
        comment = _required(comment, "comment")
        if until_us <= now_us:
            raise AlarmActionError("shelve expiry must be in the future")
        limit_us = now_us + int(max_shelve / timedelta(microseconds=1))
        if until_us > limit_us:
            raise AlarmActionError(f"shelve expiry is beyond the limit of {max_shelve}; shelve for less")
        self.shelved_until_us = until_us
        self.shelved_by = user
        return [self._event(now_us, "shelve", user=user, comment=comment,
                            reason=f"shelved until {from_us(until_us).isoformat()}")]

    def unshelve(self, now_us: int, *, user: str, comment: str) -> list[AlarmEvent]:
        user = _required(user, "user")
        comment = _required(comment, "comment")
        if not self.shelved:
            raise AlarmActionError(f"{self.alarm_id} is not shelved")
        self.shelved_until_us = None
        self.shelved_by = None
        return [self._event(now_us, "unshelve", user=user, comment=comment, reason="unshelved")]

    def expire_shelve(self, now_us: int) -> list[AlarmEvent]:
        if self.shelved_until_us is None or now_us < self.shelved_until_us:
            return []
        self.shelved_until_us = None
        self.shelved_by = None
        return [self._event(now_us, "unshelve", user=SYSTEM_USER, reason="shelve expired")]

    def comment(self, now_us: int, *, user: str, comment: str) -> list[AlarmEvent]:
        user = _required(user, "user")
        comment = _required(comment, "comment")
        return [self._event(now_us, "comment", user=user, comment=comment, reason="comment")]

    # --- persistence --------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id, "severity": int(self.severity), "latched": int(self.latched),
            "acked": self.acked, "acked_severity": int(self.acked_severity), "valid": self.valid,
            "reason": self.reason, "shelved_until_us": self.shelved_until_us, "shelved_by": self.shelved_by,
            "seq": self.seq, "changed_us": self.changed_us, "attributes": dict(self.attributes),
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> AlarmState:
        shelved = data.get("shelved_until_us")
        return cls(
            alarm_id=str(data["alarm_id"]), severity=AlarmSeverity(int(data["severity"])),
            latched=AlarmSeverity(int(data["latched"])), acked=bool(data["acked"]),
            acked_severity=AlarmSeverity(int(data["acked_severity"])), valid=bool(data["valid"]),
            reason=str(data["reason"]), shelved_until_us=None if shelved is None else int(shelved),
            shelved_by=data.get("shelved_by"), seq=int(data["seq"]), changed_us=int(data["changed_us"]),
            attributes={str(k): str(v) for k, v in dict(data.get("attributes", {})).items()},
        )


def until_us(until: datetime) -> int:
    return to_us(until, what="shelve expiry")
