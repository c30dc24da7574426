"""GCN JSON notices (pure): parsing each schema into one `Notice`, the acceptance criteria, and the ToO OB request."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from config_db.gcn import GcnCriteria, NoticeKind, ToOTemplate, TopicCriteria
from planner.domain.night import NightGrid
from planner.domain.observability import (
    Constraints,
    ObRequest,
    ObTable,
    Twilight,
    constraint_masks,
    longest_true_run,
    observability,
)
from skyops.timeutil import require_utc

NOTICE_MAX_BYTES = 10 * 1024 * 1024  # IGWN notices carry a base64 sky map of a few MB


class NoticeError(ValueError):
    """A message that is not a valid notice of its topic's schema; the message names the field."""


class Rejection(StrEnum):
    """Why a notice did not become a ToO OB (the counters' labels)."""

    UNKNOWN_TOPIC = "unknown_topic"
    MALFORMED = "malformed"
    TEST = "test"
    RETRACTION = "retraction"
    NO_POSITION = "no_position"
    NO_ERROR_REGION = "no_error_region"
    ERROR_TOO_LARGE = "error_too_large"
    FAR_TOO_HIGH = "far_too_high"
    SNR_TOO_LOW = "snr_too_low"
    PVALUE_TOO_HIGH = "pvalue_too_high"
    P_ASTRO_TOO_LOW = "p_astro_too_low"
    TOO_OLD = "too_old"
    DUPLICATE = "duplicate"
    NOT_OBSERVABLE = "not_observable"


@dataclass(frozen=True)
class Verdict:
    """Accepted, or rejected with a reason a person can act on."""

    rejection: Rejection | None
    detail: str

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    @classmethod
    def ok(cls, detail: str = "") -> Verdict:
        return cls(None, detail)

    @classmethod
    def no(cls, rejection: Rejection, detail: str) -> Verdict:
        return cls(rejection, detail)


@dataclass(frozen=True)
class Notice:
    """What the planner needs of a notice, whatever its schema."""

    kind: NoticeKind
    event_id: str
    source: str  # mission/instrument, for names and logs
    retraction: bool
    test: bool
    trigger_time: datetime | None
    ra_deg: float | None = None
    dec_deg: float | None = None
    error_radius_deg: float | None = None
    far_hz: float | None = None
    snr: float | None = None
    pvalue: float | None = None
    p_astro: float | None = None
    record_number: int | None = None
    alert_type: str | None = None

    @property
    def key(self) -> str:
        """The event's identity across notices and topics of the same schema: the deduplication key."""
        return f"{self.kind.value}:{self.event_id}"

    @property
    def has_position(self) -> bool:
        return self.ra_deg is not None and self.dec_deg is not None


# --- parsing ----------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    # GCN times are UTC; some schemas (SVOM) write them without a zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


GcnTime = Annotated[datetime, AfterValidator(_utc)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Ra = Annotated[float, Field(ge=0, le=360, allow_inf_nan=False)]
Dec = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Ident = str | int


class _Shape(BaseModel):
    # GCN schemas allow additional properties: unknown fields are ignored, known ones are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Unified(_Shape):
    """The unified-schema fields that Swift GUANO, Einstein Probe, IceCube Gold/Bronze and SVOM share."""

    mission: str | None = None
    instrument: str | None = None
    id: list[Ident] = Field(default_factory=list)
    event_name: list[str] = Field(default_factory=list)
    record_number: int | None = None
    alert_type: str | None = None
    alert_tense: str | None = None
    trigger_time: GcnTime | None = None
    ra: Ra | None = None
    dec: Dec | None = None
    ra_dec_error: NonNegative | None = None
    ra_uncertainty: list[NonNegative] = Field(default_factory=list)
    far: NonNegative | None = None
    image_snr: Finite | None = None
    rate_snr: Finite | None = None
    p_astro: Annotated[float, Field(ge=0, le=1)] | None = None


class _Point(_Shape):
    ra: Ra
    dec: Dec


class _Localization(_Point):
    ra_dec_error: NonNegative | None = None


class _CoincidentEvent(_Shape):
    localization: _Localization


class _LvkNuTrack(_Shape):
    ref_ID: str = Field(min_length=1)  # the schema's spelling
    trigger_time: GcnTime | None = None
    alert_datetime: GcnTime | None = None
    pval_generic: Annotated[float, Field(ge=0, le=1)] | None = None
    most_probable_direction: _Point | None = None
    coincident_events: list[_CoincidentEvent] = Field(default_factory=list)


class _IgwnEvent(_Shape):
    time: GcnTime | None = None
    far: NonNegative | None = None
    significant: bool | None = None


class _Igwn(_Shape):
    superevent_id: str = Field(min_length=1)
    alert_type: str
    time_created: GcnTime | None = None
    event: _IgwnEvent | None = None


UNIFIED_SOURCES = {
    NoticeKind.SWIFT_BAT_GUANO: "Swift BAT-GUANO",
    NoticeKind.EINSTEIN_PROBE_WXT: "EP WXT",
    NoticeKind.ICECUBE_TRACK: "IceCube",
    NoticeKind.SVOM: "SVOM",
}


def _unified(kind: NoticeKind, data: Any) -> Notice:
    n = _Unified.model_validate(data)
    if n.event_name:
        event_id = n.event_name[0]
    elif n.id:
        event_id = str(n.id[0])
    else:
        raise NoticeError("id: the notice names no event")
    error = n.ra_dec_error if n.ra_dec_error is not None else (max(n.ra_uncertainty) if n.ra_uncertainty else None)
    source = UNIFIED_SOURCES[kind] if kind is not NoticeKind.SVOM else f"SVOM {n.instrument or ''}".strip()
    return Notice(
        kind=kind,
        event_id=event_id,
        source=source,
        retraction=(n.alert_type or "").lower() == "retraction",
        test=(n.alert_tense or "current").lower() != "current",
        trigger_time=n.trigger_time,
        ra_deg=n.ra % 360.0 if n.ra is not None else None,
        dec_deg=n.dec,
        error_radius_deg=error,
        far_hz=n.far,
        snr=n.image_snr if n.image_snr is not None else n.rate_snr,
        p_astro=n.p_astro,
        record_number=n.record_number,
        alert_type=n.alert_type,
    )


def _lvk_nu_track(data: Any) -> Notice:
    n = _LvkNuTrack.model_validate(data)
    direction = n.most_probable_direction
    error: float | None = None
    if direction is not None and n.coincident_events:
        # The error region is the one of the coincident neutrino nearest the most probable direction.
        target = _unit(direction.ra, direction.dec)
        nearest = max(n.coincident_events, key=lambda e: float(_unit(e.localization.ra, e.localization.dec) @ target))
        error = nearest.localization.ra_dec_error
    return Notice(
        kind=NoticeKind.ICECUBE_LVK_NU_TRACK,
        event_id=n.ref_ID,
        source="IceCube LVK track search",
        retraction=False,
        # LVK superevent ids: S… are real, MS… mock (MDC) and TS… test events.
        test=not n.ref_ID.startswith("S"),
        trigger_time=n.trigger_time or n.alert_datetime,
        ra_deg=direction.ra % 360.0 if direction is not None else None,
        dec_deg=direction.dec if direction is not None else None,
        error_radius_deg=error,
        pvalue=n.pval_generic,
    )


def _igwn(data: Any) -> Notice:
    n = _Igwn.model_validate(data)
    event = n.event
    return Notice(
        kind=NoticeKind.IGWN_ALERT,
        event_id=n.superevent_id,
        source="IGWN",
        retraction=n.alert_type.upper() == "RETRACTION",
        test=not n.superevent_id.startswith("S"),
        trigger_time=(event.time if event is not None else None) or n.time_created,
        far_hz=event.far if event is not None else None,
        alert_type=n.alert_type,
    )


def _unit(ra_deg: float, dec_deg: float) -> Any:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


PARSERS: dict[NoticeKind, Callable[[Any], Notice]] = {
    NoticeKind.SWIFT_BAT_GUANO: lambda d: _unified(NoticeKind.SWIFT_BAT_GUANO, d),
    NoticeKind.EINSTEIN_PROBE_WXT: lambda d: _unified(NoticeKind.EINSTEIN_PROBE_WXT, d),
    NoticeKind.ICECUBE_TRACK: lambda d: _unified(NoticeKind.ICECUBE_TRACK, d),
    NoticeKind.SVOM: lambda d: _unified(NoticeKind.SVOM, d),
    NoticeKind.ICECUBE_LVK_NU_TRACK: _lvk_nu_track,
    NoticeKind.IGWN_ALERT: _igwn,
}


def parse_notice(kind: NoticeKind, payload: bytes | None) -> Notice:
    """The notice in `payload` (JSON bytes) read with the schema of `kind`; NoticeError says what is wrong."""
    if payload is None or not payload.strip():
        raise NoticeError("the message is empty")
    if len(payload) > NOTICE_MAX_BYTES:
        raise NoticeError(f"the message has {len(payload)} bytes, more than {NOTICE_MAX_BYTES}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NoticeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NoticeError(f"a notice is a JSON object, not {type(data).__name__}")
    try:
        return PARSERS[kind](data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(notice)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise NoticeError("; ".join(problems)) from None


# --- criteria ---------------------------------------------------------------------------------------


def screen(notice: Notice, criteria: GcnCriteria, topic: TopicCriteria, now: datetime) -> Verdict:
    """The criteria a notice alone can be judged on, in the order an operator would ask about them."""
    if notice.test:
        return Verdict.no(Rejection.TEST, f"{notice.source} {notice.event_id} is a test or mock notice")
    if notice.retraction:
        return Verdict.no(Rejection.RETRACTION, f"{notice.source} {notice.event_id} was retracted")
    if not notice.has_position:
        return Verdict.no(Rejection.NO_POSITION, f"{notice.source} {notice.event_id} gives no point position")
    limit = topic.max_error_radius_deg if topic.max_error_radius_deg is not None else criteria.max_error_radius_deg
    if notice.error_radius_deg is None:
        return Verdict.no(Rejection.NO_ERROR_REGION, f"{notice.source} {notice.event_id} gives no error radius")
    if notice.error_radius_deg > limit:
        return Verdict.no(
            Rejection.ERROR_TOO_LARGE,
            f"error radius {notice.error_radius_deg:g}° is larger than {limit:g}° (SOXS acquisition field)",
        )
    for verdict in _thresholds(notice, topic):
        if not verdict.accepted:
            return verdict
    if criteria.max_notice_age_h is not None:
        if notice.trigger_time is None:
            return Verdict.no(Rejection.TOO_OLD, "the notice gives no trigger time to judge its age by")
        age = require_utc(now) - notice.trigger_time
        if age > timedelta(hours=criteria.max_notice_age_h):
            return Verdict.no(
                Rejection.TOO_OLD,
                f"triggered {age.total_seconds() / 3600:.1f} h ago, more than {criteria.max_notice_age_h:g} h",
            )
    return Verdict.ok()


def _thresholds(notice: Notice, topic: TopicCriteria) -> list[Verdict]:
    def check(
        value: float | None, limit: float | None, name: str, rejection: Rejection, *, upper: bool
    ) -> Verdict:
        if limit is None:
            return Verdict.ok()
        if value is None:
            return Verdict.no(rejection, f"the notice gives no {name} to compare with the limit {limit:g}")
        if (value > limit) if upper else (value < limit):
            return Verdict.no(rejection, f"{name} {value:g} is {'above' if upper else 'below'} the limit {limit:g}")
        return Verdict.ok()

    return [
        check(notice.far_hz, topic.max_far_hz, "FAR [Hz]", Rejection.FAR_TOO_HIGH, upper=True),
        check(notice.snr, topic.min_snr, "S/N", Rejection.SNR_TOO_LOW, upper=False),
        check(notice.pvalue, topic.max_pvalue, "p-value", Rejection.PVALUE_TOO_HIGH, upper=True),
        check(notice.p_astro, topic.min_p_astro, "p_astro", Rejection.P_ASTRO_TOO_LOW, upper=False),
    ]


# --- the ToO OB ------------------------------------------------------------------------------------


def too_constraints(template: ToOTemplate) -> Constraints:
    return Constraints(
        max_airmass=template.max_airmass,
        twilight=Twilight(template.twilight),
        min_moon_separation_deg=template.min_moon_separation_deg,
        max_moon_illumination=template.max_moon_illumination,
        max_seeing_arcsec=template.max_seeing_arcsec,
    )


def too_request(notice: Notice, template: ToOTemplate, topic: TopicCriteria, *, ob_id: str = "gcn") -> ObRequest:
    """The ToO OB a notice with a position asks for, as the scheduler sees it."""
    if notice.ra_deg is None or notice.dec_deg is None:
        raise ValueError(f"notice {notice.key} has no position")
    return ObRequest(
        ob_id=ob_id,
        ra_deg=notice.ra_deg % 360.0,
        dec_deg=notice.dec_deg,
        exposure_s=template.exposure_s,
        priority=topic.priority if topic.priority is not None else template.priority,
        constraints=too_constraints(template),
        target_name=target_name(notice),
        name=ob_name(notice),
        ob_type="ToO",
    )


def target_name(notice: Notice) -> str:
    return f"{notice.source} {notice.event_id}"[:100]


def ob_name(notice: Notice) -> str:
    """The OB's name carries the notice's event key, so an operator (and the deduplication) can find it."""
    return f"GCN {notice.key}"[:100]


def observable_tonight(request: ObRequest, night: NightGrid, now: datetime, *, overhead_s: float) -> Verdict:
    """Whether the OB fits, with all its constraints, in what is left of `night` after `now`."""
    table = ObTable.from_requests([request])
    obs = observability(table, night, overhead_s=overhead_s)
    first_cell = max(0, math.ceil((require_utc(now).timestamp() - night.start_unix) / night.step_s))
    needed_min = int(obs.nslots[0]) * night.slot_minutes
    if first_cell >= night.n_cells:
        return Verdict.no(Rejection.NOT_OBSERVABLE, f"the night of {night.night} is over")
    cells = obs.cells[:, first_cell:]
    run_min = int(longest_true_run(cells)[0]) * night.slot_minutes
    if run_min >= needed_min:
        start = first_cell + int(np.argmax(cells[0]))
        when = datetime.fromtimestamp(night.start_unix + start * night.step_s, tz=UTC)
        return Verdict.ok(f"observable from {when:%Y-%m-%d %H:%M} UTC, {run_min} min in one stretch")
    masks = constraint_masks(table, night)
    c = request.constraints
    never = [
        label
        for label, mask in (
            (f"airmass ≤ {c.max_airmass:g}", masks.airmass),
            (f"{c.twilight.value} twilight", masks.twilight),
            (f"Moon ≥ {c.min_moon_separation_deg:g}° away", masks.moon_separation),
            (f"Moon illumination ≤ {c.max_moon_illumination:g}", masks.moon_illumination),
            (f"seeing ≤ {c.max_seeing_arcsec:g}″", masks.seeing),
        )
        if not mask[0, first_cell:].any()
    ]
    why = f"; never met: {', '.join(never)}" if never else ""
    return Verdict.no(
        Rejection.NOT_OBSERVABLE,
        f"observable for at most {run_min} min in one stretch in the rest of the night of {night.night}, "
        f"{needed_min} min needed{why}",
    )


def refinement(notice: Notice, error_radius_deg: float | None) -> str | None:
    """Why a later notice of an event improves the position its ToO OB has (error radius `error_radius_deg`, None
    when unknown), or None: only a smaller error radius moves the OB, so a coarser alert never undoes a finer one."""
    if not notice.has_position or notice.error_radius_deg is None:
        return None
    if error_radius_deg is not None and notice.error_radius_deg >= error_radius_deg:
        return None
    before = "unknown" if error_radius_deg is None else f"{error_radius_deg:g}°"
    return f"error radius {before} → {notice.error_radius_deg:g}°"
