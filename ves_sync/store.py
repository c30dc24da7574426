"""`VesSyncStore`: the VES sync's memory in the operational DB (OB links, synced nights, VES history)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from skyops.errors import BackendUnavailableError
from skyops.timeutil import require_utc
from ves_sync.domain.execution import Execution, Outcome
from ves_sync.domain.ves import VesChange
from ves_sync.models import P2ObLink, QueuedExecutionRow, SyncedNight, VesChangeRow


@dataclass(frozen=True)
class ObLink:
    """Our OB `ob_id` lives in P2 as `p2_ob_id`; `p2_ob`/`p2_etag` are what P2 answered to our last write."""

    ob_id: str
    p2_ob_id: int
    container_id: int
    content_digest: str
    p2_ob: dict[str, Any]
    p2_etag: str
    p2_status: str
    updated_at: datetime
    template: dict[str, Any] | None = None
    template_etag: str = ""


def _link(row: P2ObLink) -> ObLink:
    return ObLink(
        ob_id=row.ob_id, p2_ob_id=row.p2_ob_id, container_id=row.container_id, content_digest=row.content_digest,
        p2_ob=json.loads(row.p2_ob_json), p2_etag=row.p2_etag, p2_status=row.p2_status, updated_at=row.updated_at,
        template=json.loads(row.template_json) if row.template_json else None, template_etag=row.template_etag,
    )


def _change(row: VesChangeRow) -> VesChange:
    return VesChange(
        ts=row.ts, instrument=row.instrument, written_by=row.written_by, night=row.night, plan_id=row.plan_id,
        reason=row.reason, trigger_kind=row.trigger_kind, alarm_id=row.alarm_id, too_ob_id=row.too_ob_id,
        before=tuple(json.loads(row.before_ob_ids)), after=tuple(json.loads(row.after_ob_ids)),
    )


@dataclass(frozen=True)
class LinkUpdate:
    """What a sync learned about one of our OBs in P2, to be remembered."""

    ob_id: str
    p2_ob_id: int
    container_id: int
    content_digest: str
    p2_ob: dict[str, Any]
    p2_etag: str
    template: dict[str, Any] | None = None
    template_etag: str = ""


def _change_row(change: VesChange) -> VesChangeRow:
    return VesChangeRow(
        ts=require_utc(change.ts), instrument=change.instrument, written_by=change.written_by, night=change.night,
        plan_id=change.plan_id, reason=change.reason, trigger_kind=change.trigger_kind, alarm_id=change.alarm_id,
        too_ob_id=change.too_ob_id, before_ob_ids=json.dumps(list(change.before)),
        after_ob_ids=json.dumps(list(change.after)),
    )


class VesSyncStore:
    """Keyword-only data access; callers see plain values, never rows or queries."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def links(self) -> dict[str, ObLink]:
        with self._sessions() as session:
            return {row.ob_id: _link(row) for row in session.scalars(select(P2ObLink))}

    def link(self, ob_id: str) -> ObLink | None:
        with self._sessions() as session:
            row = session.get(P2ObLink, ob_id)
            return None if row is None else _link(row)

    def save_link(self, *, ob_id: str, p2_ob_id: int, container_id: int, content_digest: str,
                  p2_ob: dict[str, Any], p2_etag: str, now: datetime, template: dict[str, Any] | None = None,
                  template_etag: str = "") -> ObLink:
        update = LinkUpdate(ob_id=ob_id, p2_ob_id=p2_ob_id, container_id=container_id, content_digest=content_digest,
                            p2_ob=p2_ob, p2_etag=p2_etag, template=template, template_etag=template_etag)
        self.save_links([update], now=now)
        link = self.link(ob_id)
        assert link is not None
        return link

    def save_links(self, updates: Sequence[LinkUpdate], *, now: datetime) -> None:
        """Remember several OBs' P2 state in one transaction (one commit per sync, not one per OB)."""
        now = require_utc(now)
        if not updates:
            return
        with self._sessions.begin() as session:
            for u in updates:
                # Another OB id pointing at the same P2 OB would be a stale link (e.g. our OB was renamed).
                for stale in session.scalars(select(P2ObLink).where(P2ObLink.p2_ob_id == u.p2_ob_id,
                                                                    P2ObLink.ob_id != u.ob_id)):
                    session.delete(stale)
                session.flush()
                row = session.get(P2ObLink, u.ob_id)
                if row is None:
                    row = P2ObLink(ob_id=u.ob_id)
                    session.add(row)
                row.p2_ob_id = u.p2_ob_id
                row.container_id = u.container_id
                row.content_digest = u.content_digest
                row.p2_ob_json = json.dumps(u.p2_ob, sort_keys=True)
                row.p2_etag = u.p2_etag
                row.p2_status = str(u.p2_ob.get("obStatus", "?"))[:4]
                row.template_json = "" if u.template is None else json.dumps(u.template, sort_keys=True)
                row.template_etag = u.template_etag
                row.updated_at = now
                session.flush()

    def set_statuses(self, *, statuses: dict[str, str], now: datetime) -> None:
        """Record the P2 status of our OBs (by our OB id), as last read from P2."""
        now = require_utc(now)
        with self._sessions.begin() as session:
            for ob_id, status in statuses.items():
                row = session.get(P2ObLink, ob_id)
                if row is not None:
                    row.p2_status = status[:4]
                    row.updated_at = now

    def statuses(self) -> dict[str, str]:
        """Our OB ids and their P2 status as last seen ('+' ready, 'S' started, 'X' executed, 'P' revised…)."""
        with self._sessions() as session:
            return {ob_id: status for ob_id, status in session.execute(select(P2ObLink.ob_id, P2ObLink.p2_status))}

    def forget_link(self, *, ob_id: str) -> None:
        with self._sessions.begin() as session:
            row = session.get(P2ObLink, ob_id)
            if row is not None:
                session.delete(row)

    def synced_plan_created(self, *, night: str) -> datetime | None:
        with self._sessions() as session:
            row = session.get(SyncedNight, night)
            return None if row is None else row.plan_created

    def mark_synced(self, *, night: str, plan_id: str, plan_created: datetime, now: datetime,
                    change: VesChange | None = None) -> None:
        """Record that `plan_id` is the night's plan in P2, with the VES change it made (same transaction)."""
        with self._sessions.begin() as session:
            row = session.get(SyncedNight, night)
            if row is None:
                row = SyncedNight(night=night)
                session.add(row)
            row.plan_id = plan_id
            row.plan_created = require_utc(plan_created)
            row.synced_at = require_utc(now)
            if change is not None:
                session.add(_change_row(change))

    def record_change(self, change: VesChange) -> None:
        with self._sessions.begin() as session:
            session.add(_change_row(change))

    def history(self, *, night: str | None = None, limit: int = 100) -> list[VesChange]:
        """VES changes, newest first."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        query = select(VesChangeRow).order_by(VesChangeRow.id.desc()).limit(limit)
        if night is not None:
            query = query.where(VesChangeRow.night == night)
        with self._sessions() as session:
            return [_change(row) for row in session.scalars(query)]

    def recent_nights(self, *, limit: int = 2) -> list[str]:
        """The nights whose plans reached P2, newest first."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        query = select(SyncedNight.night).order_by(SyncedNight.night.desc()).limit(limit)
        with self._sessions() as session:
            return list(session.scalars(query))

    # -- the executor's outbox: execution reports P2 has not accepted yet -----------------------------
    # A database that cannot be reached raises `BackendUnavailableError`: the executor waits it out.

    @contextmanager
    def _reachable(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise BackendUnavailableError(f"the operational DB cannot be reached: {exc.orig}") from exc

    def queue_execution(self, execution: Execution, *, now: datetime) -> None:
        """Keep `execution` until P2 accepts it; it replaces a queued report of the same OB and start."""
        now = require_utc(now)
        start = require_utc(execution.start, what="execution start")
        with self._reachable() as session:
            session.execute(delete(QueuedExecutionRow).where(QueuedExecutionRow.p2_ob_id == execution.p2_ob_id,
                                                             QueuedExecutionRow.start == start))
            session.add(QueuedExecutionRow(p2_ob_id=execution.p2_ob_id, start=start, night=execution.night,
                                           outcome=str(execution.outcome), end=execution.end, queued_at=now))

    def queued_executions(self) -> list[Execution]:
        """The execution reports P2 has not accepted yet, oldest first."""
        with self._reachable() as session:
            rows = session.scalars(select(QueuedExecutionRow).order_by(QueuedExecutionRow.id))
            return [Execution(row.p2_ob_id, row.night, row.start, Outcome(row.outcome), row.end) for row in rows]

    def execution_sent(self, execution: Execution) -> bool:
        """P2 took `execution`: forget it, unless a newer report of the same execution replaced it meanwhile."""
        row = QueuedExecutionRow
        with self._reachable() as session:
            result = session.execute(delete(row).where(
                row.p2_ob_id == execution.p2_ob_id, row.start == require_utc(execution.start),
                row.outcome == str(execution.outcome),
                row.end.is_(None) if execution.end is None else row.end == execution.end,
            ))
            return bool(getattr(result, "rowcount", 0))
