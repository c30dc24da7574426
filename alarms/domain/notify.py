"""Which alarm events become notifications, when an unacknowledged CRITICAL escalates, and the retry outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from skyops.records import AlarmEvent, AlarmSeverity
from skyops.timeutil import US_PER_S, from_us

Channel = Literal["email", "webhook"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one channel target (a list of mail recipients, or one webhook URL)."""

    id: str  # stable per event and target: a replayed event is not sent twice
    channel: Channel
    target: str
    subject: str
    body: str
    payload: dict[str, Any]

    def dump(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "target": self.target, "subject": self.subject,
                "body": self.body, "payload": self.payload}

    @classmethod
    def load(cls, d: dict[str, Any]) -> Notification:
        return cls(id=d["id"], channel=d["channel"], target=d["target"], subject=d["subject"], body=d["body"],
                   payload=dict(d["payload"]))


def _describe(event: AlarmEvent) -> dict[str, Any]:
    return {
        "alarm_id": event.alarm_id, "ts": event.ts.isoformat(), "seq": event.seq, "action": event.action,
        "severity": event.severity.name, "latched": event.latched.name, "state": event.state,
        "acked": event.acked, "reason": event.reason, "attributes": dict(event.attributes),
    }


@dataclass(frozen=True, slots=True)
class NotificationPolicy:
    min_severity: AlarmSeverity
    email_to: tuple[str, ...] = ()
    webhook_urls: tuple[str, ...] = ()
    escalation_to: tuple[str, ...] = ()
    escalation_delay_us: int = 600 * US_PER_S

    def _messages(self, event: AlarmEvent, kind: str, recipients: Sequence[str], subject: str,
                  body: str) -> list[Notification]:
        payload = {"kind": kind, "event": _describe(event)}
        out: list[Notification] = []
        if recipients:
            out.append(Notification(f"{kind}:{event.alarm_id}:{event.seq}:email", "email", ",".join(recipients),
                                    subject, body, payload))
        out.extend(
            Notification(f"{kind}:{event.alarm_id}:{event.seq}:webhook:{url}", "webhook", url, subject, body, payload)
            for url in self.webhook_urls
        )
        return out

    def for_events(self, events: Iterable[AlarmEvent]) -> list[Notification]:
        """A notification for each rise to a notifiable severity of an alarm that is not shelved."""
        out: list[Notification] = []
        for e in events:
            if e.action != "raise" or e.severity < self.min_severity or "shelved_until" in e.attributes:
                continue
            subject = f"[skyops] {e.severity.name} {e.alarm_id}"
            body = f"{e.alarm_id} is {e.severity.name} since {e.ts.isoformat()}.\n\n{e.reason}\n"
            out.extend(self._messages(e, "alarm", self.email_to, subject, body))
        return out

    def escalation(self, event: AlarmEvent, now_us: int) -> list[Notification]:
        minutes = (now_us - event.ts_us) / (60 * US_PER_S)
        subject = f"[skyops] ESCALATION: {event.alarm_id} CRITICAL and unacknowledged"
        body = (f"{event.alarm_id} has been CRITICAL without acknowledgement for {minutes:.0f} min "
                f"(since {event.ts.isoformat()}, now {from_us(now_us).isoformat()}).\n\n{event.reason}\n")
        recipients = self.escalation_to or self.email_to
        return self._messages(event, "escalation", recipients, subject, body)


@dataclass(slots=True)
class EscalationTracker:
    """Unacknowledged CRITICAL alarms and since when; each escalates once per raise."""

    delay_us: int
    pending: dict[str, tuple[AlarmEvent, bool]] = field(default_factory=dict)  # alarm → (raise event, escalated)

    def observe(self, events: Iterable[AlarmEvent]) -> None:
        for e in events:
            unacked_critical = (
                e.latched == AlarmSeverity.CRITICAL and not e.acked and e.state in ("ACTIVE_UNACKED", "CLEARED_UNACKED")
                and "shelved_until" not in e.attributes
            )
            if not unacked_critical:
                self.pending.pop(e.alarm_id, None)
            elif e.alarm_id not in self.pending:
                self.pending[e.alarm_id] = (e, False)

    def due(self, now_us: int) -> list[AlarmEvent]:
        out = []
        for alarm_id, (event, escalated) in list(self.pending.items()):
            if not escalated and now_us - event.ts_us >= self.delay_us:
                self.pending[alarm_id] = (event, True)
                out.append(event)
        return out


@dataclass(slots=True)
class OutboxItem:
    notification: Notification
    next_us: int
    attempts: int = 0
    last_error: str = ""

    def dump(self) -> dict[str, Any]:
        return {"notification": self.notification.dump(), "next_us": self.next_us, "attempts": self.attempts,
                "last_error": self.last_error}

    @classmethod
    def load(cls, d: dict[str, Any]) -> OutboxItem:
        return cls(Notification.load(d["notification"]), int(d["next_us"]), int(d["attempts"]), str(d["last_error"]))


@dataclass(slots=True)
class Outbox:
    """Notifications waiting to be sent; a failed one is retried with a growing delay and never dropped."""

    initial_us: int
    max_us: int
    items: dict[str, OutboxItem] = field(default_factory=dict)

    def add(self, notifications: Iterable[Notification], now_us: int) -> list[OutboxItem]:
        added = []
        for n in notifications:
            if n.id not in self.items:
                item = OutboxItem(n, now_us)
                self.items[n.id] = item
                added.append(item)
        return added

    def due(self, now_us: int) -> list[OutboxItem]:
        return sorted((i for i in self.items.values() if i.next_us <= now_us), key=lambda i: i.next_us)

    def succeeded(self, item: OutboxItem) -> None:
        self.items.pop(item.notification.id, None)

    def failed(self, item: OutboxItem, now_us: int, error: str) -> int:
        """Schedule the next attempt; returns the delay in µs."""
        item.attempts += 1
        item.last_error = error
        delay = int(min(self.initial_us * 2 ** min(item.attempts - 1, 30), self.max_us))
        item.next_us = now_us + delay
        return delay
