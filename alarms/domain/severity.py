"""Severity from a value (levels with hysteresis) and from time (activation delay per level, clear delay)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from skyops.records import AlarmSeverity

LEVELS: tuple[AlarmSeverity, ...] = (AlarmSeverity.WARNING, AlarmSeverity.SERIOUS, AlarmSeverity.CRITICAL)
_LEVEL_INTS: tuple[int, ...] = tuple(int(s) for s in LEVELS)
_SEVERITIES: tuple[AlarmSeverity, ...] = tuple(sorted(AlarmSeverity))  # by value: _SEVERITIES[int(s)] is s


@dataclass(frozen=True, slots=True)
class ThresholdHandler:
    """Levels per severity with hysteresis, as in Rubin's Watcher.

    Entering a level needs the value to reach it; staying at (or above) a level the alarm already
    holds only needs the value within `hysteresis` of it, so a value dithering on a limit does not
    make the alarm flap.
    """

    levels: tuple[tuple[AlarmSeverity, float], ...]  # (severity, level), any order
    hysteresis: float = 0.0
    big_is_bad: bool = True
    what: str = "value"
    unit: str = ""

    def __post_init__(self) -> None:
        if self.hysteresis < 0:
            raise ValueError("hysteresis must be >= 0")
        if not self.levels:
            raise ValueError("a threshold needs at least one level")
        ordered = sorted(self.levels, key=lambda sl: sl[0])
        values = [v for _, v in ordered]
        pairs = list(itertools.pairwise(values))
        good = all(a < b for a, b in pairs) if self.big_is_bad else all(a > b for a, b in pairs)
        if not good:
            word = "increase" if self.big_is_bad else "decrease"
            raise ValueError(f"levels must strictly {word} with severity when big_is_bad={self.big_is_bad}")
        object.__setattr__(self, "levels", tuple(sorted(self.levels, key=lambda sl: -sl[0])))

    def severity(self, value: float, current: AlarmSeverity = AlarmSeverity.NONE) -> tuple[AlarmSeverity, str]:
        """The severity `value` deserves, given the severity held now, and why."""
        for sev, level in self.levels:
            slack = self.hysteresis if sev <= current else 0.0
            hit = value >= level - slack if self.big_is_bad else value <= level + slack
            if hit:
                cmp = ">=" if self.big_is_bad else "<="
                return sev, f"{self.what} {value:.6g}{self.unit} {cmp} {sev.name} level {level:.6g}{self.unit}"
        return AlarmSeverity.NONE, f"{self.what} {value:.6g}{self.unit} within limits"


@dataclass(slots=True)
class SeverityFilter:
    """Turns a raw severity series into the alarm's severity: a level is taken once the raw severity
    has held at or above it for its activation delay, and let go once the raw severity has stayed
    below it for the clear delay (a brief return to a lower level holds that level, not the peak).

    Time is given (µs since the epoch), never read, so a replayed series gives the same result.
    """

    activation_us: dict[AlarmSeverity, int]
    clear_us: int = 0
    current: AlarmSeverity = AlarmSeverity.NONE
    # Per level: since when the raw severity has been at or above it / below it, without a break.
    since_us: dict[int, int] = field(default_factory=dict)
    below_us: dict[int, int] = field(default_factory=dict)
    revision: int = 0  # grows with every change of the fields above: callers tell a change by it (not saved)

    def step(self, raw: AlarmSeverity, now_us: int) -> AlarmSeverity:
        # Plain ints in the loops: this runs for every rule evaluated, and enum arithmetic is slow.
        since, below = self.since_us, self.below_us
        r = int(raw)
        for s in _LEVEL_INTS:
            if r >= s:
                if s not in since:
                    since[s] = now_us
                    self.revision += 1
                if below.pop(s, None) is not None:
                    self.revision += 1
            else:
                if since.pop(s, None) is not None:
                    self.revision += 1
                if s not in below:
                    below[s] = now_us
                    self.revision += 1
        reached = 0
        for s in _LEVEL_INTS:
            start = since.get(s)
            if start is not None and now_us - start >= self.activation_us.get(_SEVERITIES[s], 0):
                reached = s
        held = 0
        for s in range(reached + 1, int(self.current) + 1):
            below_since = below.get(s)
            if below_since is None or now_us - below_since < self.clear_us:
                held = s
        current = _SEVERITIES[max(reached, held)]
        if current != self.current:
            self.current = current
            self.revision += 1
        return current

    def forget_timers(self) -> None:
        """Input went invalid: what happened meanwhile is unknown, so delays start again."""
        if self.since_us or self.below_us:
            self.revision += 1
        self.since_us.clear()
        self.below_us.clear()

    def dump(self) -> dict[str, Any]:
        return {
            "current": int(self.current),
            "since_us": {str(k): v for k, v in self.since_us.items()},
            "below_us": {str(k): v for k, v in self.below_us.items()},
        }

    def load(self, data: dict[str, Any]) -> None:
        self.current = AlarmSeverity(int(data["current"]))
        self.revision += 1
        self.since_us = {int(k): int(v) for k, v in dict(data["since_us"]).items()}
        self.below_us = {int(k): int(v) for k, v in dict(data["below_us"]).items()}
