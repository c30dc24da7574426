"""The clock a process runs on: the wall clock, or an accelerated one from a chosen start (`--speed`, `--start`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from planner.config import SiteConfig
from planner.ephemeris import compute_night
from planner.service import night_of
from skyops.timeutil import AcceleratedClock, Clock, SystemClock, require_utc


def evening_start(site: SiteConfig, now: datetime) -> datetime:
    """The start of the next night's plan grid (the evening twilight), or of the current night if it is under way."""
    for offset in (0, 1):
        grid = compute_night(site, night_of(site, now) + timedelta(days=offset))
        start = datetime.fromtimestamp(grid.start_unix, UTC)
        end = start + timedelta(seconds=grid.step_s * (grid.sun_alt_deg.shape[0] - 1))
        if now < end:
            return max(start, now)
    raise AssertionError("the next night always ends after now")


def parse_start(text: str, *, now: datetime, site: SiteConfig) -> datetime:
    """`now`, `evening` (the next night's twilight, or now if the night is under way) or an ISO time (UTC if bare)."""
    t = text.strip().lower()
    if t == "now":
        return now
    if t == "evening":
        return evening_start(site, now)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"start {text!r} is not 'now', 'evening' or an ISO 8601 time") from None
    return require_utc(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC), what="start")


def make_clock(*, speed: float, start: datetime | None, now: datetime) -> Clock:
    """The wall clock when it would be the same (speed 1 from now), else an accelerated clock."""
    if speed == 1 and (start is None or start == now):
        return SystemClock()
    return AcceleratedClock(start or now, speed)


class AnchoredClock:
    """`start` at the wall time `anchor`, running `speed` times faster: every process given the same three
    numbers reads the same time, so a distributed platform can live through a night in the day.
    """

    def __init__(self, start: datetime, anchor: datetime, speed: float = 1.0, *, wall: Clock | None = None) -> None:
        if not 0 < speed < float("inf"):
            raise ValueError(f"speed must be a positive finite factor, got {speed!r}")
        self.start = require_utc(start, what="start")
        self.anchor = require_utc(anchor, what="anchor")
        self.speed = float(speed)
        self._wall = wall or SystemClock()

    def now(self) -> datetime:
        return self.start + (self._wall.now() - self.anchor) * self.speed


class ClockSettings(BaseSettings):
    """The time of a distributed process (SKYOPS_CLOCK_START, _ANCHOR, _SPEED); none set: the wall clock."""

    model_config = SettingsConfigDict(env_prefix="SKYOPS_CLOCK_", extra="forbid")

    start: AwareDatetime | None = Field(default=None, description="the time the clock reads at `anchor`")
    anchor: AwareDatetime | None = Field(default=None, description="wall time (UTC) at which the clock reads start")
    speed: float = Field(default=1.0, gt=0, le=10_000, allow_inf_nan=False)

    @model_validator(mode="after")
    def _both_or_neither(self) -> ClockSettings:
        if (self.start is None) != (self.anchor is None):
            raise ValueError("SKYOPS_CLOCK_START and SKYOPS_CLOCK_ANCHOR go together (the same in every process)")
        if self.start is None and self.speed != 1:
            raise ValueError("SKYOPS_CLOCK_SPEED needs SKYOPS_CLOCK_START and SKYOPS_CLOCK_ANCHOR")
        return self

    def clock(self) -> Clock:
        if self.start is None or self.anchor is None:
            return SystemClock()
        return AnchoredClock(self.start, self.anchor, self.speed)
