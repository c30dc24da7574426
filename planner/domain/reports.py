"""Management reports over a period: duty cycle, completed proposals, transient hit/miss, GTO vs ESO time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ObRecord:
    """What a report needs to know of one OB."""

    ob_id: int
    ob_type: str  # CTOB, FUOB, ESO, ToO
    programme: str
    time_share: str  # GTO or ESO
    exposure_s: float
    state: str
    observed_at: datetime | None = None
    expired_at: datetime | None = None


@dataclass(frozen=True)
class ProgrammeCompletion:
    programme: str
    observed: int
    total: int

    @property
    def fraction(self) -> float:
        return self.observed / self.total if self.total else 0.0


@dataclass(frozen=True)
class PeriodReport:
    start: datetime
    end: datetime
    dark_hours: float
    science_hours: float
    duty_cycle: float
    proposals: tuple[ProgrammeCompletion, ...]
    completed_proposals_fraction: float
    transient_hits: int
    transient_misses: int
    gto_hours: float
    eso_hours: float

    @property
    def hit_rate(self) -> float:
        seen = self.transient_hits + self.transient_misses
        return self.transient_hits / seen if seen else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "dark_hours": self.dark_hours,
            "science_hours": self.science_hours,
            "duty_cycle": self.duty_cycle,
            "completed_proposals_fraction": self.completed_proposals_fraction,
            "proposals": [
                {"programme": p.programme, "observed": p.observed, "total": p.total, "fraction": p.fraction}
                for p in self.proposals
            ],
            "transients": {"hits": self.transient_hits, "misses": self.transient_misses, "hit_rate": self.hit_rate},
            "time_share_hours": {"GTO": self.gto_hours, "ESO": self.eso_hours},
        }


def period_report(records: Sequence[ObRecord], *, start: datetime, end: datetime, dark_hours: float) -> PeriodReport:
    """The figures SOXS management follows, for OBs observed or expired in [start, end).

    Duty cycle: science exposure time over dark time. A proposal is complete when every one of its OBs
    (ESO type, not deleted) has been observed. A transient (CTOB) is a hit if observed before its expiry,
    a miss if it expired unobserved.
    """
    if end <= start:
        raise ValueError("end must be after start")
    if dark_hours < 0:
        raise ValueError("dark_hours must not be negative")

    def inside(when: datetime | None) -> bool:
        return when is not None and start <= when < end

    observed = [r for r in records if inside(r.observed_at)]
    science_s = sum(r.exposure_s for r in observed)
    gto_s = sum(r.exposure_s for r in observed if r.time_share == "GTO")
    by_programme: dict[str, list[ObRecord]] = defaultdict(list)
    for r in records:
        if r.ob_type == "ESO" and r.state != "deleted":
            by_programme[r.programme].append(r)
    proposals = tuple(
        ProgrammeCompletion(
            programme=name,
            observed=sum(1 for r in obs if r.observed_at is not None and r.observed_at < end),
            total=len(obs),
        )
        for name, obs in sorted(by_programme.items())
    )
    completed = sum(1 for p in proposals if p.observed == p.total)
    hits = sum(1 for r in observed if r.ob_type == "CTOB")
    misses = sum(1 for r in records if r.ob_type == "CTOB" and inside(r.expired_at))
    science_h = science_s / 3600.0
    return PeriodReport(
        start=start,
        end=end,
        dark_hours=dark_hours,
        science_hours=science_h,
        duty_cycle=science_h / dark_hours if dark_hours else 0.0,
        proposals=proposals,
        completed_proposals_fraction=completed / len(proposals) if proposals else 0.0,
        transient_hits=hits,
        transient_misses=misses,
        gto_hours=gto_s / 3600.0,
        eso_hours=(science_s - gto_s) / 3600.0,
    )
