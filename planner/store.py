"""The OB store (operational DB): OBs with every change in their history, and the Marshall operations."""

from __future__ import annotations

import builtins
import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import JSON, CheckConstraint, Double, Enum, ForeignKey, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from planner.config import SiteConfig
from planner.domain.execution import Outcome, next_state
from planner.domain.observability import Constraints, ObRequest, Twilight
from planner.domain.reports import ObRecord
from skyops.errors import ConflictError, NotFoundError
from skyops.opdb.models import Base
from skyops.timeutil import require_utc

# SOXS (Landoni et al. 2020, §2.1): the Marshall sends transients brighter than 19.5 mag, and an auto OB
# that has not been observed within three weeks is removed.
AUTO_MAG_LIMIT = 19.5
AUTO_LIFETIME = timedelta(weeks=3)
# Exposure of an auto OB from its magnitude: the SOXS scheduler's standard setup scales with the flux,
# 752 s at 17.3 mag (its List-of-OBs figure: 15.9 → 207 s, 18.4 → 2070 s, 19.94 → 8556 s all follow).
AUTO_EXPOSURE_REF_S = 752.0
AUTO_EXPOSURE_REF_MAG = 17.3
AUTO_PRIORITY = 3
NAME_MAX = 100


class ObType(StrEnum):
    """Where an OB comes from (SOXS): Marshall classification and follow-up, ESO proposals, manual ToOs."""

    CTOB = "CTOB"
    FUOB = "FUOB"
    ESO = "ESO"
    TOO = "ToO"


class ObState(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    OBSERVED = "observed"
    FAILED = "failed"
    EXPIRED = "expired"
    DELETED = "deleted"


LIVE_STATES = (ObState.QUEUED, ObState.SCHEDULED)


class TimeShare(StrEnum):
    GTO = "GTO"
    ESO = "ESO"


def auto_exposure_s(magnitude: float) -> float:
    """The documented rule: t = 752 s × 10^(0.4 (m − 17.3)), to the whole second, at least 1 s."""
    return float(max(1, round(AUTO_EXPOSURE_REF_S * 10 ** (0.4 * (magnitude - AUTO_EXPOSURE_REF_MAG)))))


def _enum(enum: type[StrEnum], name: str) -> Enum:
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        values_callable=lambda e: [m.value for m in e],
        length=16,
        validate_strings=True,
    )


class ObservingBlock(Base):
    """One OB and what the scheduler and the VES sync need to know about it."""

    __tablename__ = "planner_obs"
    __table_args__ = (
        CheckConstraint("ra_deg >= 0 AND ra_deg < 360", name="ra_range"),
        CheckConstraint("dec_deg >= -90 AND dec_deg <= 90", name="dec_range"),
        CheckConstraint("exposure_s > 0", name="exposure_positive"),
        CheckConstraint("priority >= 1", name="priority_positive"),
        Index("ix_planner_obs_mid", "mid"),
        Index("ix_planner_obs_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ob_type: Mapped[ObType] = mapped_column(_enum(ObType, "ob_type"))
    mid: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    target_name: Mapped[str] = mapped_column(String(NAME_MAX))
    ra_deg: Mapped[float] = mapped_column(Double)
    dec_deg: Mapped[float] = mapped_column(Double)
    magnitude: Mapped[float | None] = mapped_column(Double)
    mag_filter: Mapped[str | None] = mapped_column(String(16))
    exposure_s: Mapped[float] = mapped_column(Double)
    priority: Mapped[int] = mapped_column(Integer)
    max_airmass: Mapped[float] = mapped_column(Double)
    twilight: Mapped[Twilight] = mapped_column(_enum(Twilight, "twilight"))
    min_moon_separation_deg: Mapped[float] = mapped_column(Double)
    max_moon_illumination: Mapped[float] = mapped_column(Double)
    max_seeing_arcsec: Mapped[float] = mapped_column(Double)
    programme: Mapped[str] = mapped_column(String(64))
    time_share: Mapped[TimeShare] = mapped_column(_enum(TimeShare, "time_share"))
    setup: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[ObState] = mapped_column(_enum(ObState, "ob_state"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    p2_ob_id: Mapped[int | None] = mapped_column(Integer)
    p2_version: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)


class ObChange(Base):
    """One change of one OB: what was done, by whom, and the fields before and after."""

    __tablename__ = "planner_ob_history"
    __table_args__ = (Index("ix_planner_ob_history_ob_id", "ob_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ob_id: Mapped[int] = mapped_column(ForeignKey("planner_obs.id"))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- schemas ---------------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX)]
RaDeg = Annotated[float, Field(ge=0, lt=360, allow_inf_nan=False, description="ICRS right ascension")]
DecDeg = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, description="ICRS declination")]
Magnitude = Annotated[float, Field(ge=-30, le=35, allow_inf_nan=False)]


class ObConstraints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_airmass: float = Field(default=2.0, ge=1, le=10)
    twilight: Twilight = Twilight.NAUTICAL
    min_moon_separation_deg: float = Field(default=30.0, ge=0, le=180)
    max_moon_illumination: float = Field(default=1.0, ge=0, le=1)
    max_seeing_arcsec: float = Field(default=2.0, gt=0, le=10)


class AutoObCreate(BaseModel):
    """createAutoOB: a new unclassified transient from the Marshall (standard setup, exposure from magnitude)."""

    model_config = ConfigDict(extra="forbid")

    mid: int = Field(gt=0, description="Marshall id (transientBucketID)")
    target_name: Name
    ra_deg: RaDeg
    dec_deg: DecDeg
    magnitude: Magnitude
    mag_filter: str | None = Field(default=None, max_length=16)


class FollowUpObCreate(BaseModel):
    """createFollowUpOB: an OB with the PI's fine-grained setup for a source in follow-up."""

    model_config = ConfigDict(extra="forbid")

    mid: int = Field(gt=0)
    name: Name
    target_name: Name
    ra_deg: RaDeg
    dec_deg: DecDeg
    magnitude: Magnitude | None = None
    mag_filter: str | None = Field(default=None, max_length=16)
    exposure_s: float = Field(gt=0, allow_inf_nan=False)
    priority: int = Field(default=2, ge=1, le=10)
    constraints: ObConstraints = ObConstraints()
    setup: dict[str, str | float | int | bool] = Field(default_factory=dict)
    expires_at: AwareDatetime | None = None


class ObCreate(BaseModel):
    """An ESO-proposal OB or a manual ToO."""

    model_config = ConfigDict(extra="forbid")

    ob_type: ObType
    name: Name
    target_name: Name
    ra_deg: RaDeg
    dec_deg: DecDeg
    magnitude: Magnitude | None = None
    exposure_s: float = Field(gt=0, allow_inf_nan=False)
    priority: int = Field(ge=1, le=10)
    constraints: ObConstraints = ObConstraints()
    programme: str = Field(min_length=1, max_length=64)
    time_share: TimeShare
    mid: int | None = Field(default=None, gt=0)
    setup: dict[str, str | float | int | bool] = Field(default_factory=dict)
    expires_at: AwareDatetime | None = None


class ObUpdate(BaseModel):
    """Changes to an OB from the science team; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    target_name: Name | None = None
    ra_deg: RaDeg | None = None
    dec_deg: DecDeg | None = None
    magnitude: Magnitude | None = None
    exposure_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    priority: int | None = Field(default=None, ge=1, le=10)
    max_airmass: float | None = Field(default=None, ge=1, le=10)
    twilight: Twilight | None = None
    min_moon_separation_deg: float | None = Field(default=None, ge=0, le=180)
    max_moon_illumination: float | None = Field(default=None, ge=0, le=1)
    max_seeing_arcsec: float | None = Field(default=None, gt=0, le=10)
    expires_at: AwareDatetime | None = None


class ObPublic(BaseModel):
    """An OB as the rest of the platform sees it."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, frozen=True)

    id: int
    ob_type: ObType
    mid: int | None
    name: str
    target_name: str
    ra_deg: float
    dec_deg: float
    magnitude: float | None
    mag_filter: str | None
    exposure_s: float
    priority: int
    max_airmass: float
    twilight: Twilight
    min_moon_separation_deg: float
    max_moon_illumination: float
    max_seeing_arcsec: float
    programme: str
    time_share: TimeShare
    setup: dict[str, Any]
    state: ObState
    created_at: AwareDatetime
    updated_at: AwareDatetime
    expires_at: AwareDatetime | None
    p2_ob_id: int | None
    p2_version: str | None
    version: int

    def to_request(self) -> ObRequest:
        """The OB as the scheduler takes it."""
        return ObRequest(
            ob_id=str(self.id),
            ra_deg=self.ra_deg,
            dec_deg=self.dec_deg,
            exposure_s=self.exposure_s,
            priority=self.priority,
            constraints=Constraints(
                max_airmass=self.max_airmass,
                twilight=self.twilight,
                min_moon_separation_deg=self.min_moon_separation_deg,
                max_moon_illumination=self.max_moon_illumination,
                max_seeing_arcsec=self.max_seeing_arcsec,
            ),
            target_name=self.target_name,
            name=self.name,
            ob_type=self.ob_type.value,
            magnitude=self.magnitude,
            p2_ob_id=self.p2_ob_id,
        )


class ObChangePublic(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True, frozen=True)

    ob_id: int
    at: AwareDatetime
    action: str
    actor: str
    changes: dict[str, Any]


class NotObservableError(ValueError):
    """A transient that never rises high enough at the site for the standard airmass limit."""


_TRACKED = [c for c in ObPublic.model_fields if c not in ("id", "updated_at", "version")]


def _new_ob(now: datetime, **fields: Any) -> ObservingBlock:
    """A new OB row: queued, first version, not yet in P2; the caller gives what the OB is."""
    return ObservingBlock(state=ObState.QUEUED, created_at=now, updated_at=now, p2_ob_id=None, p2_version=None,
                          version=1, **fields)


class ObStore:
    """Keeps OBs in the operational database; every method is one transaction and writes its history."""

    def __init__(self, sessions: sessionmaker[Session], *, site: SiteConfig) -> None:
        self._sessions = sessions
        self._site = site

    # --- Marshall operations -------------------------------------------------------------------

    def create_auto_ob(self, *, data: AutoObCreate, now: datetime, actor: str = "marshall") -> ObPublic:
        """createAutoOB: a classification OB (CTOB) for a transient brighter than 19.5 mag seen from the site."""
        now = require_utc(now, what="now")
        if data.magnitude >= AUTO_MAG_LIMIT:
            raise ValueError(f"magnitude {data.magnitude} is not brighter than the auto-OB limit {AUTO_MAG_LIMIT}")
        constraints = ObConstraints()
        self._require_observable(data.dec_deg, constraints.max_airmass)
        with self._sessions.begin() as session:
            if self._live_auto(session, data.mid) is not None:
                raise ConflictError(f"MID {data.mid} already has a live auto OB")
            row = _new_ob(
                now,
                ob_type=ObType.CTOB,
                mid=data.mid,
                name=f"CTOB_{data.mid}",
                target_name=data.target_name,
                ra_deg=data.ra_deg,
                dec_deg=data.dec_deg,
                magnitude=data.magnitude,
                mag_filter=data.mag_filter,
                exposure_s=auto_exposure_s(data.magnitude),
                priority=AUTO_PRIORITY,
                **constraints.model_dump(),
                programme="SOXS-GTO",
                time_share=TimeShare.GTO,
                setup={},
                expires_at=now + AUTO_LIFETIME,
            )
            return self._insert(session, row, now=now, actor=actor)

    def auto_clean(self, *, now: datetime, actor: str = "autoCleanOBs") -> builtins.list[ObPublic]:
        """autoCleanOBs: auto OBs still unobserved at their expiry (3 weeks) become expired."""
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(ObservingBlock).where(
                    ObservingBlock.ob_type == ObType.CTOB,
                    ObservingBlock.state.in_(LIVE_STATES),
                    ObservingBlock.expires_at <= now,
                )
            ).all()
            return [
                self._change(session, row, {"state": ObState.EXPIRED}, now=now, actor=actor, action="expired")
                for row in rows
            ]

    def refine_position(
        self, *, ob_id: int, ra_deg: float, dec_deg: float, setup: dict[str, str | float | int | bool], now: datetime,
        actor: str,
    ) -> ObPublic:
        """A live OB's target moved to a better position (a later alert of the same transient); `setup` entries are
        added to or replace the OB's own."""
        now = require_utc(now, what="now")
        position = ObUpdate(ra_deg=ra_deg, dec_deg=dec_deg)  # the same checks as a science-team edit
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            if row.state not in LIVE_STATES:
                raise ValueError(f"OB {ob_id} is {row.state.value}: only a live OB can be refined")
            changes = {"ra_deg": position.ra_deg, "dec_deg": position.dec_deg, "setup": {**row.setup, **setup}}
            return self._change(session, row, changes, now=now, actor=actor, action="refined")

    def update_auto_ob_magnitude(
        self, *, mid: int, magnitude: float, now: datetime, actor: str = "marshall"
    ) -> ObPublic:
        """updateAutoOBMagnitude: the transient's new magnitude and the exposure that follows from it."""
        now = require_utc(now, what="now")
        if not math.isfinite(magnitude) or not -30 <= magnitude <= 35:
            raise ValueError(f"magnitude {magnitude!r} is not a magnitude")
        with self._sessions.begin() as session:
            row = self._live_auto(session, mid)
            if row is None:
                raise NotFoundError(f"unknown MID {mid}: no live auto OB")
            return self._change(
                session,
                row,
                {"magnitude": magnitude, "exposure_s": auto_exposure_s(magnitude)},
                now=now,
                actor=actor,
                action="magnitude_updated",
            )

    def create_follow_up_ob(self, *, data: FollowUpObCreate, now: datetime, actor: str = "marshall") -> ObPublic:
        """createFollowUpOB: a follow-up OB (FUOB) with the PI's setup; names are unique per MID."""
        now = require_utc(now, what="now")
        self._require_observable(data.dec_deg, data.constraints.max_airmass)
        with self._sessions.begin() as session:
            clash = session.scalars(
                select(ObservingBlock.id).where(
                    ObservingBlock.mid == data.mid,
                    ObservingBlock.name == data.name,
                    ObservingBlock.state.in_(LIVE_STATES),
                )
            ).first()
            if clash is not None:
                raise ConflictError(f"MID {data.mid} already has a live OB named {data.name!r}")
            row = _new_ob(
                now,
                ob_type=ObType.FUOB,
                mid=data.mid,
                name=data.name,
                target_name=data.target_name,
                ra_deg=data.ra_deg,
                dec_deg=data.dec_deg,
                magnitude=data.magnitude,
                mag_filter=data.mag_filter,
                exposure_s=data.exposure_s,
                priority=data.priority,
                **data.constraints.model_dump(),
                programme="SOXS-GTO",
                time_share=TimeShare.GTO,
                setup=dict(data.setup),
                expires_at=require_utc(data.expires_at) if data.expires_at else None,
            )
            return self._insert(session, row, now=now, actor=actor)

    def create_ob(self, *, data: ObCreate, now: datetime, actor: str) -> ObPublic:
        """An ESO-proposal OB or a manual ToO."""
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            row = _new_ob(
                now,
                ob_type=data.ob_type,
                mid=data.mid,
                name=data.name,
                target_name=data.target_name,
                ra_deg=data.ra_deg,
                dec_deg=data.dec_deg,
                magnitude=data.magnitude,
                mag_filter=None,
                exposure_s=data.exposure_s,
                priority=data.priority,
                **data.constraints.model_dump(),
                programme=data.programme,
                time_share=data.time_share,
                setup=dict(data.setup),
                expires_at=require_utc(data.expires_at) if data.expires_at else None,
            )
            return self._insert(session, row, now=now, actor=actor)

    def delete_ob(self, *, ob_id: int, now: datetime, actor: str = "marshall") -> ObPublic:
        """deleteOB: the OB leaves the queue (kept, with its history, in state deleted)."""
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            if row.state is ObState.DELETED:
                raise NotFoundError(f"OB {ob_id} is already deleted")
            return self._change(session, row, {"state": ObState.DELETED}, now=now, actor=actor, action="deleted")

    def update_ob(self, *, ob_id: int, data: ObUpdate, now: datetime, actor: str,
                  expected_version: int | None = None) -> ObPublic:
        """Edit a live OB; with `expected_version`, refused if someone changed it since it was read."""
        now = require_utc(now, what="now")
        changes = data.model_dump(exclude_none=True)
        if not changes:
            raise ValueError("nothing to change: name at least one field")
        if "expires_at" in changes:
            changes["expires_at"] = require_utc(changes["expires_at"], what="expires_at")
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            if row.state not in LIVE_STATES:
                raise ConflictError(f"OB {ob_id} is {row.state.value}: only queued or scheduled OBs can be edited")
            if expected_version is not None and row.version != expected_version:
                raise ConflictError(f"OB {ob_id} changed since it was read (version {row.version}, "
                                    f"not {expected_version}): reload it and edit again")
            if "dec_deg" in changes or "max_airmass" in changes:
                self._require_observable(changes.get("dec_deg", row.dec_deg),
                                         changes.get("max_airmass", row.max_airmass))
            return self._change(session, row, changes, now=now, actor=actor, action="edited")

    # --- the rest of the platform --------------------------------------------------------------

    def set_state(self, *, ob_id: int, state: ObState, now: datetime, actor: str) -> ObPublic:
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            return self._change(session, row, {"state": state}, now=now, actor=actor, action="state_changed")

    def set_p2(self, *, ob_id: int, p2_ob_id: int, p2_version: str, now: datetime, actor: str) -> ObPublic:
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            changes = {"p2_ob_id": p2_ob_id, "p2_version": p2_version}
            return self._change(session, row, changes, now=now, actor=actor, action="p2_synced")

    def mark_planned(self, *, ob_ids: set[int], now: datetime, actor: str = "planner") -> int:
        """One transaction after each plan: queued OBs in the plan become scheduled, scheduled OBs left out
        of it are queued again. Returns how many OBs changed."""
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            rows = session.scalars(select(ObservingBlock).where(ObservingBlock.state.in_(LIVE_STATES))).all()
            changed = 0
            for row in rows:
                wanted = ObState.SCHEDULED if row.id in ob_ids else ObState.QUEUED
                if row.state is not wanted:
                    self._change(session, row, {"state": wanted}, now=now, actor=actor, action="state_changed")
                    changed += 1
            return changed

    def get(self, *, ob_id: int) -> ObPublic:
        with self._sessions() as session:
            return ObPublic.model_validate(self._require(session, ob_id))

    def list(self, *, states: tuple[ObState, ...] | None = None) -> builtins.list[ObPublic]:
        """OBs (optionally only in `states`), by id."""
        query = select(ObservingBlock).order_by(ObservingBlock.id)
        if states is not None:
            query = query.where(ObservingBlock.state.in_(states))
        with self._sessions() as session:
            return [ObPublic.model_validate(row) for row in session.scalars(query).all()]

    def history(self, *, ob_id: int) -> builtins.list[ObChangePublic]:
        with self._sessions() as session:
            self._require(session, ob_id)
            rows = session.scalars(select(ObChange).where(ObChange.ob_id == ob_id).order_by(ObChange.id)).all()
            return [ObChangePublic.model_validate(row) for row in rows]

    def report_records(self) -> builtins.list[ObRecord]:
        """Every OB with when it was observed or expired (from its history), for the reports."""
        with self._sessions() as session:
            rows = session.scalars(select(ObservingBlock).order_by(ObservingBlock.id)).all()
            changes = session.scalars(select(ObChange).order_by(ObChange.id)).all()
            reached: dict[tuple[int, str], datetime] = {}
            for change in changes:
                state = change.changes.get("state")
                if isinstance(state, list) and len(state) == 2:
                    reached.setdefault((change.ob_id, str(state[1])), change.at)
            return [
                ObRecord(
                    ob_id=row.id,
                    ob_type=row.ob_type.value,
                    programme=row.programme,
                    time_share=row.time_share.value,
                    exposure_s=row.exposure_s,
                    state=row.state.value,
                    observed_at=reached.get((row.id, ObState.OBSERVED.value)),
                    expired_at=reached.get((row.id, ObState.EXPIRED.value)),
                )
                for row in rows
            ]

    # --- executions and P2 links (fed by the telescope's points and the VES sync) ---------------

    def record_execution(self, *, ob_id: int, outcome: Outcome, now: datetime, actor: str) -> ObPublic | None:
        """Move the OB as an execution `outcome` says (`planner.domain.execution.next_state`), in one transaction.

        None when the outcome changes nothing (already observed, a replayed or twice-reported execution, an
        expired or deleted OB), so the same execution is counted once whichever path reports it.
        """
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            state = next_state(row.state.value, outcome)
            if state is None:
                return None
            return self._change(session, row, {"state": ObState(state)}, now=now, actor=actor,
                                action=f"execution_{outcome.value}")

    def record_p2_link(self, *, ob_id: int, p2_ob_id: int, p2_version: str, now: datetime,
                       actor: str) -> ObPublic | None:
        """OB `ob_id` is P2 OB `p2_ob_id` at `p2_version`; None if that was already known (nothing written).

        Another OB that held `p2_ob_id` loses it (P2 ids are unique; the VES sync moved the link).
        """
        now = require_utc(now, what="now")
        with self._sessions.begin() as session:
            row = self._require(session, ob_id)
            if row.p2_ob_id == p2_ob_id and row.p2_version == p2_version:
                return None
            others = session.scalars(select(ObservingBlock).where(ObservingBlock.p2_ob_id == p2_ob_id,
                                                                   ObservingBlock.id != ob_id)).all()
            for other in others:
                self._change(session, other, {"p2_ob_id": None, "p2_version": None}, now=now, actor=actor,
                             action="p2_unlinked")
            return self._change(session, row, {"p2_ob_id": p2_ob_id, "p2_version": p2_version}, now=now,
                                actor=actor, action="p2_synced")

    def p2_links(self) -> dict[int, int]:
        """P2 OB id → planner OB id, for every OB the VES sync has put in P2."""
        query = select(ObservingBlock.p2_ob_id, ObservingBlock.id).where(ObservingBlock.p2_ob_id.is_not(None))
        with self._sessions() as session:
            return {p2: ob for p2, ob in session.execute(query) if p2 is not None}

    # --- internals -----------------------------------------------------------------------------

    def _require_observable(self, dec_deg: float, max_airmass: float) -> None:
        # The highest a target gets is at transit: 90° − |dec − latitude|.
        peak = 90.0 - abs(dec_deg - self._site.latitude_deg)
        needed = math.degrees(math.asin(1.0 / max_airmass))
        if peak < needed:
            raise NotObservableError(
                f"dec_deg {dec_deg} never rises above {needed:.1f}° (airmass {max_airmass}) at {self._site.name}"
            )

    @staticmethod
    def _live_auto(session: Session, mid: int) -> ObservingBlock | None:
        return session.scalars(
            select(ObservingBlock).where(
                ObservingBlock.mid == mid,
                ObservingBlock.ob_type == ObType.CTOB,
                ObservingBlock.state.in_(LIVE_STATES),
            )
        ).first()

    @staticmethod
    def _require(session: Session, ob_id: int) -> ObservingBlock:
        row = session.get(ObservingBlock, ob_id)
        if row is None:
            raise NotFoundError(f"unknown OB {ob_id}")
        return row

    @staticmethod
    def _insert(session: Session, row: ObservingBlock, *, now: datetime, actor: str) -> ObPublic:
        session.add(row)
        session.flush()
        public = ObPublic.model_validate(row)
        created = public.model_dump(mode="json", include=set(_TRACKED))
        session.add(ObChange(ob_id=row.id, at=now, action="created", actor=actor, changes=created))
        return public

    @staticmethod
    def _change(
        session: Session, row: ObservingBlock, changes: dict[str, Any], *, now: datetime, actor: str, action: str
    ) -> ObPublic:
        before = ObPublic.model_validate(row).model_dump(mode="json")
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_at = now
        row.version += 1
        session.flush()
        public = ObPublic.model_validate(row)
        after = public.model_dump(mode="json")
        diff = {name: [before[name], after[name]] for name in changes if before[name] != after[name]}
        session.add(ObChange(ob_id=row.id, at=now, action=action, actor=actor, changes=diff))
        return public
