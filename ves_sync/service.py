"""`VesSyncService`: one night plan → its OBs in the SOXS container and the Operator's VES in plan order, verified."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from skyops.messages import PlanEvent, PlannedBlock
from skyops.timeutil import Clock
from ves_sync.domain.content import (
    ACQUISITION_TEMPLATE,
    SCIENCE_TEMPLATE,
    VES_STATUSES,
    DesiredOb,
    apply_to,
    desired_ob,
    params_to_set,
)
from ves_sync.domain.execution import STATUS_AFTER, execution_ends
from ves_sync.domain.ves import VesChange, VesMismatchError, change_for, check_read_back, is_superseded
from ves_sync.p2 import P2CallError, P2Client, P2UnreachableError
from ves_sync.store import LinkUpdate, ObLink, VesSyncStore

log = logging.getLogger(__name__)
Json = Any


class ObRejectedError(Exception):
    """P2 refused an OB's content or found it not observable; the message says which field and why."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a whole sync is retried on transient trouble (P2 down, 5xx, lost races)."""

    attempts: int = 4
    initial_wait_s: float = 0.2
    max_wait_s: float = 5.0
    conflict_retries: int = 5  # re-read-and-retry rounds after a 412 on one object


@dataclass(frozen=True)
class SyncReport:
    """What one sync did: OBs created, updated or left alone, OBs P2 rejected (and why), the VES now in P2."""

    plan_id: str
    night: str
    superseded: bool = False
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    ves: tuple[int, ...] = ()
    ves_changed: bool = False
    conflicts: int = 0
    # Every OB of ours in the plan, as P2 now holds it (also unchanged ones: a replayed sync announces again).
    links: tuple[LinkedOb, ...] = ()
    # Status moves P2 showed before this sync wrote anything (an execution may be among them).
    status_changes: tuple[ObStatusChange, ...] = ()


@dataclass(frozen=True)
class LinkedOb:
    """Our OB `ob_id` is P2 OB `p2_ob_id`, whose content is at `p2_version` (P2's ETag)."""

    ob_id: str
    p2_ob_id: int
    p2_version: str


@dataclass(frozen=True)
class ObStatusChange:
    """An OB whose status in P2 moved since we last looked (executed, started, revised by someone…)."""

    ob_id: str
    p2_ob_id: int
    before: str
    after: str
    # When the execution that made this status ended, as P2 recorded it; None if unknown or not an execution.
    execution_end: datetime | None = None


def status_changes(links: Iterable[ObLink], statuses: Mapping[int, str]) -> list[ObStatusChange]:
    """The linked OBs whose status in P2 (`statuses`, by P2 OB id) is not the one remembered."""
    return [
        ObStatusChange(link.ob_id, link.p2_ob_id, link.p2_status, statuses[link.p2_ob_id])
        for link in links
        # An OB deleted in P2 is not a status: the next sync of a plan that holds it creates it again.
        if link.p2_ob_id in statuses and statuses[link.p2_ob_id] != link.p2_status
    ]


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: P2 unreachable or failing, a lost race (412), a lost session (401), a VES that did not stick."""
    if isinstance(exc, P2UnreachableError | VesMismatchError):
        return True
    return isinstance(exc, P2CallError) and (exc.status >= 500 or exc.status in (401, 412, 429))


def _is_content_error(exc: P2CallError) -> bool:
    return 400 <= exc.status < 500 and exc.status not in (401, 412, 429)


class VesSyncService:
    """Synchronous (p2api is): run `sync` in a worker thread. Idempotent: replaying a plan changes nothing.

    OBs are created by `owner` (the SOXS account) in `container_id`; the VES is the `operator`'s, who
    sees SOXS's OBs through Phase 2 delegation.
    """

    def __init__(self, *, owner: P2Client, operator: P2Client, store: VesSyncStore, container_id: int,
                 instrument: str, clock: Clock, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, actor: str = "ves_sync") -> None:
        self.owner = owner
        self.operator = operator
        self.store = store
        self.container_id = container_id
        self.instrument = instrument
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.actor = actor

    def sync(self, event: PlanEvent) -> SyncReport:
        """Bring P2 in line with `event`, retrying transient failures with exponential backoff."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.initial_wait_s, max=self.retry.max_wait_s),
            retry=retry_if_exception(is_transient),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: log.warning(
                "VES sync of plan %s failed (attempt %d), retrying: %s", event.plan_id, state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
            ),
        )
        report: SyncReport = retrying(self.sync_once, event)
        return report

    def sync_once(self, event: PlanEvent) -> SyncReport:
        if is_superseded(event, self.store.synced_plan_created(night=event.night)):
            log.info("plan %s for %s is older than the one already in P2; ignored", event.plan_id, event.night)
            return SyncReport(plan_id=event.plan_id, night=event.night, superseded=True)
        summary, _ = self.owner.get_ob_summary(self.container_id)
        in_p2: dict[int, Json] = {int(e["obId"]): e for e in summary}
        by_name = {str(e["name"]): int(e["obId"]) for e in summary}
        links = self.store.links()
        moved = status_changes(links.values(), {p2_id: str(e.get("obStatus")) for p2_id, e in in_p2.items()})
        run = _Run()
        ves_ids: list[int] = []
        placed: dict[str, int] = {}
        seen: set[str] = set()
        try:
            for block in event.blocks:
                if block.ob_id in seen:
                    log.warning("plan %s lists OB %s twice; only its first place counts", event.plan_id, block.ob_id)
                    continue
                seen.add(block.ob_id)
                try:
                    p2_id = self._place(block, links.get(block.ob_id), in_p2, by_name, run)
                except ObRejectedError as exc:
                    run.rejected[block.ob_id] = str(exc)
                    log.warning("plan %s: OB %s left out of the VES: %s", event.plan_id, block.ob_id, exc)
                    continue
                if block.p2_ob_id is None:
                    placed[block.ob_id] = p2_id
                if p2_id not in ves_ids:
                    ves_ids.append(p2_id)
        finally:
            # Also after a failure: what reached P2 is remembered, so the retry does not redo it.
            self.store.save_links(run.links, now=self.clock.now())
        change = self._write_ves(event, ves_ids, run)
        self.store.mark_synced(night=event.night, plan_id=event.plan_id, plan_created=event.created,
                               now=self.clock.now(), change=change)
        ves_changed = change is not None
        versions = {ob_id: link.p2_etag for ob_id, link in links.items()} | {u.ob_id: u.p2_etag for u in run.links}
        return SyncReport(
            plan_id=event.plan_id, night=event.night, created=tuple(run.created), updated=tuple(run.updated),
            unchanged=run.unchanged, rejected=dict(run.rejected), ves=tuple(ves_ids), ves_changed=ves_changed,
            conflicts=run.conflicts,
            links=tuple(LinkedOb(ob_id, p2_id, versions.get(ob_id, "")) for ob_id, p2_id in placed.items()),
            status_changes=tuple(self.with_execution_ends(moved)),
        )

    def refresh_statuses(self) -> list[ObStatusChange]:
        """Read our OBs' statuses from P2 (one call), remember them, and return those that changed."""
        changes = self.read_status_changes()
        self.remember_statuses(changes)
        return changes

    def read_status_changes(self) -> list[ObStatusChange]:
        """Our OBs whose status in P2 (one call) moved since last remembered; nothing is remembered yet, so a
        caller that must pass the changes on does so before `remember_statuses` (none is lost on a crash)."""
        summary, _ = self.owner.get_ob_summary(self.container_id)
        in_p2 = {int(e["obId"]): str(e["obStatus"]) for e in summary}
        return self.with_execution_ends(status_changes(self.store.links().values(), in_p2))

    def with_execution_ends(self, changes: list[ObStatusChange]) -> list[ObStatusChange]:
        """`changes` with the end of the execution that made each status, from P2's executions of the latest
        synced nights (asked only when an execution may be behind a change). Best effort: without them, the
        planner falls back on when the change was seen."""
        if not any(c.after in STATUS_AFTER.values() for c in changes):
            return changes
        try:
            executions = [e for night in self.store.recent_nights()
                          for e in self.owner.get_night_executions(self.instrument, night)]
        except (P2CallError, P2UnreachableError) as exc:
            log.warning("P2's executions could not be read, status changes go without their times: %s", exc)
            return changes
        ends = execution_ends(executions)
        return [replace(c, execution_end=ends.get((c.p2_ob_id, c.after))) for c in changes]

    def remember_statuses(self, changes: Iterable[ObStatusChange]) -> None:
        statuses = {c.ob_id: c.after for c in changes}
        if statuses:
            self.store.set_statuses(statuses=statuses, now=self.clock.now())

    def linked_obs(self) -> list[tuple[LinkedOb, str]]:
        """Every OB of ours in P2 with its status as last seen there (for announcing them all again)."""
        return [(LinkedOb(link.ob_id, link.p2_ob_id, link.p2_etag), link.p2_status)
                for link in self.store.links().values()]

    # -- OBs ---------------------------------------------------------------------------------------

    def _place(self, block: PlannedBlock, link: ObLink | None, in_p2: dict[int, Json], by_name: dict[str, int],
               run: _Run) -> int:
        """The P2 OB id for `block`, after creating or updating that OB as needed."""
        if block.p2_ob_id is not None:
            return self._foreign(block)
        desired = desired_ob(block)
        linked = link if link is not None and self._still_in_p2(link, in_p2) else None
        p2_id = linked.p2_ob_id if linked else by_name.get(desired.name)
        try:
            if p2_id is None:
                ob, etag = self.owner.create_ob(self.container_id, desired.name)
                p2_id = int(ob["obId"])
                # Remembered before it is filled in: a crash now must not create a second OB later.
                self.store.save_link(ob_id=block.ob_id, p2_ob_id=p2_id, container_id=self.container_id,
                                     content_digest="", p2_ob=ob, p2_etag=etag or "", now=self.clock.now())
                run.created.append(block.ob_id)
            elif (linked is not None and linked.content_digest == desired.digest
                  and in_p2[p2_id].get("obStatus") in VES_STATUSES):
                run.unchanged += 1
                return p2_id
            else:
                if linked is not None and linked.p2_ob_id == p2_id and linked.p2_etag:
                    ob, etag = linked.p2_ob, linked.p2_etag
                else:
                    ob, etag = self.owner.get_ob(p2_id)
                    linked = None
                run.updated.append(block.ob_id)
            status = str(in_p2[p2_id].get("obStatus")) if p2_id in in_p2 else str(ob.get("obStatus"))
            self._fill(p2_id, ob, etag, status, desired, run, linked)
        except P2CallError as exc:
            if _is_content_error(exc):
                raise ObRejectedError(f"P2 refused OB {block.ob_id} (P2 OB {p2_id}): {exc.message}") from exc
            raise
        return p2_id

    def _still_in_p2(self, link: ObLink, in_p2: dict[int, Json]) -> bool:
        if link.p2_ob_id in in_p2:
            return True
        # Not in the container any more: moved to a folder by someone (still ours), or deleted.
        try:
            ob, _ = self.owner.get_ob(link.p2_ob_id)
        except P2CallError as exc:
            if exc.status in (403, 404):
                return False
            raise
        in_p2[link.p2_ob_id] = {"obId": link.p2_ob_id, "name": ob.get("name"), "obStatus": ob.get("obStatus")}
        return True

    def _fill(self, p2_id: int, ob: Json, etag: str | None, status: str, desired: DesiredOb, run: _Run,
              linked: ObLink | None) -> None:
        """Write the plan's content into P2 OB `p2_id`, starting from `ob`/`etag` (possibly remembered, stale)."""
        for _ in range(self.retry.conflict_retries + 1):
            new = apply_to(ob, desired)
            if new == ob:
                break
            try:
                ob, etag = self.owner.save_ob(new, etag)
                status = str(ob.get("obStatus"))
                break
            except P2CallError as exc:
                if exc.status != 412:
                    raise
                # Someone edited the OB in P2 since we last read it: take their version, put ours on top.
                run.conflicts += 1
                log.info("P2 OB %d changed under us (412); re-reading and retrying", p2_id)
                ob, etag = self.owner.get_ob(p2_id)
                status = str(ob.get("obStatus"))
        else:
            raise P2CallError(412, "PUT", f"/obsBlocks/{p2_id}", "still conflicting after re-reading")
        science = self._templates(p2_id, desired, run, linked)
        if science.wrote:
            # P2 recomputed the OB's exposure and execution time: its ETag moved on.
            ob, etag = self.owner.get_ob(p2_id)
            status = str(ob.get("obStatus"))
        if status not in VES_STATUSES:
            result, _ = self.owner.verify_ob(p2_id, True)
            if not result.get("observable", False):
                raise ObRejectedError(f"P2 OB {p2_id} is not observable: {'; '.join(result.get('messages', []))}")
            ob, etag = self.owner.get_ob(p2_id)
        run.links.append(LinkUpdate(ob_id=desired.ob_id, p2_ob_id=p2_id, container_id=self.container_id,
                                    content_digest=desired.digest, p2_ob=ob, p2_etag=etag or "",
                                    template=science.template, template_etag=science.etag))

    def _templates(self, p2_id: int, desired: DesiredOb, run: _Run, linked: ObLink | None) -> _Science:
        """Make the OB carry both templates with the plan's exposure; the remembered science template saves reads."""
        if linked is not None and linked.template is not None and linked.template_etag:
            science = _Science(linked.template, linked.template_etag)
            try:
                return self._set_params(p2_id, science, desired, run)
            except P2CallError as exc:
                if exc.status != 404:
                    raise
                log.info("P2 OB %d lost its science template; looking again", p2_id)
        templates, _ = self.owner.get_templates(p2_id)
        wrote = False
        if ACQUISITION_TEMPLATE not in [t["templateName"] for t in templates]:
            self.owner.create_template(p2_id, ACQUISITION_TEMPLATE)
            wrote = True
        found = next((t for t in templates if t["templateName"] == SCIENCE_TEMPLATE), None)
        if found is None:
            template, tpl_etag = self.owner.create_template(p2_id, SCIENCE_TEMPLATE)
            wrote = True
        else:
            template, tpl_etag = self.owner.get_template(p2_id, int(found["templateId"]))
        science = self._set_params(p2_id, _Science(template, tpl_etag or ""), desired, run)
        return _Science(science.template, science.etag, wrote or science.wrote)

    def _set_params(self, p2_id: int, science: _Science, desired: DesiredOb, run: _Run) -> _Science:
        template, tpl_etag = science.template, science.etag
        for _ in range(self.retry.conflict_retries + 1):
            changes = params_to_set(template, desired.science_params)
            if not changes:
                return _Science(template, tpl_etag)
            try:
                saved, new_etag = self.owner.set_template_params(p2_id, template, changes, tpl_etag)
                return _Science(saved, new_etag or "", wrote=True)
            except P2CallError as exc:
                if exc.status != 412:
                    raise
                run.conflicts += 1
                template, fresh_etag = self.owner.get_template(p2_id, int(template["templateId"]))
                tpl_etag = fresh_etag or ""
        raise P2CallError(412, "PUT", f"/obsBlocks/{p2_id}/templates", "still conflicting after re-reading")

    def _foreign(self, block: PlannedBlock) -> int:
        """An OB the plan takes from another programme as it is in P2 (e.g. a PI's visitor OB)."""
        assert block.p2_ob_id is not None
        try:
            ob, _ = self.operator.get_ob(block.p2_ob_id)
        except P2CallError as exc:
            if _is_content_error(exc):
                raise ObRejectedError(f"P2 OB {block.p2_ob_id} cannot be used: {exc.message}") from exc
            raise
        if ob.get("obStatus") not in VES_STATUSES:
            raise ObRejectedError(f"P2 OB {block.p2_ob_id} is in status {ob.get('obStatus')!r}, not ready for the VES")
        return block.p2_ob_id

    # -- VES ---------------------------------------------------------------------------------------

    def _write_ves(self, event: PlanEvent, ves_ids: list[int], run: _Run) -> VesChange | None:
        """Write the VES (re-reading on 412), read it back, and return the change made (None if already right)."""
        changed = False
        before: list[int] = []
        for _ in range(self.retry.conflict_retries + 1):
            current, etag = self.operator.get_execution_sequence(self.instrument)
            before = [int(e["obId"]) for e in current]
            if before == ves_ids:
                break
            try:
                self.operator.save_execution_sequence(self.instrument, ves_ids, etag)
                changed = True
                break
            except P2CallError as exc:
                if exc.status != 412:
                    raise
                run.conflicts += 1
                log.info("the %s VES changed under us (412); re-reading and retrying", self.instrument)
        else:
            raise P2CallError(412, "PUT", f"/executionSequences/{self.instrument}", "still conflicting")
        read_back, _ = self.operator.get_execution_sequence(self.instrument)
        check_read_back(ves_ids, [int(e["obId"]) for e in read_back])
        if not changed:
            return None
        return change_for(
            event, ts=self.clock.now(), instrument=self.instrument,
            written_by=f"{self.actor} as P2 user {self.operator.account.username}", before=before, after=ves_ids,
        )


@dataclass(frozen=True)
class _Science:
    """The OB's science template as P2 returned it, its ETag, and whether this sync wrote any template."""

    template: Json
    etag: str
    wrote: bool = False


@dataclass
class _Run:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    conflicts: int = 0
    links: list[LinkUpdate] = field(default_factory=list)
