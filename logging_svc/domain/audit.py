"""User actions as audit log records: who did what to which object, from where, and why."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from skyops.errors import InvalidRecordError
from skyops.records import LogRecord

AUDIT_COMPONENT = "hmi.audit"


def audit_record(
    *,
    ts: datetime,
    user: str,
    action: str,
    target: str = "",
    outcome: str = "ok",
    host: str = "",
    comment: str | None = None,
    details: Mapping[str, str] | None = None,
    ob_id: str | None = None,
    source: str = "hmi",
) -> LogRecord:
    """One audit record; refused actions are archived at WARNING so a search for problems finds them."""
    if not user:
        raise InvalidRecordError("an audit record needs the user who acted")
    if not action:
        raise InvalidRecordError("an audit record needs the action")
    attributes = {**(details or {}), "user": user, "action": action, "outcome": outcome}
    if target:
        attributes["target"] = target
    if comment:
        attributes["comment"] = comment
    message = f"{user} {action}" + (f" {target}" if target else "") + ("" if outcome == "ok" else f": {outcome}")
    if comment:
        message += f" — {comment}"
    return LogRecord(ts=ts, level=logging.INFO if outcome == "ok" else logging.WARNING, source=source,
                     message=message, component=AUDIT_COMPONENT, host=host, attributes=attributes, ob_id=ob_id)
