"""What a planned block becomes in P2: the OB's name, target, constraints and template parameters (pure)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from skyops.messages import PlannedBlock

P2_NAME_MAX = 32
ACQUISITION_TEMPLATE = "SOXS_acq_img"
SCIENCE_TEMPLATE = "SOXS_spec_obs_stare"
# Statuses in which P2 lets an OB into a visitor execution sequence.
VES_STATUSES = frozenset({"+", "A", "X", "S"})

DEFAULT_AIRMASS = 2.0
DEFAULT_SEEING_ARCSEC = 2.0
DEFAULT_MOON_DISTANCE_DEG = 30


def p2_name(ob_id: str) -> str:
    """The P2 OB name that carries our OB id: how a lost mapping is found again instead of duplicating the OB."""
    if len(ob_id) <= P2_NAME_MAX:
        return ob_id
    digest = hashlib.sha1(ob_id.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{ob_id[: P2_NAME_MAX - 9]}~{digest}"


def ra_sexagesimal(ra_deg: float) -> str:
    """Right ascension in degrees as P2's HH:MM:SS.sss."""
    ms = round((ra_deg % 360.0) / 15.0 * 3_600_000)
    ms %= 24 * 3_600_000
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    return f"{h:02d}:{m:02d}:{rest / 1000:06.3f}"


def dec_sexagesimal(dec_deg: float) -> str:
    """Declination in degrees as P2's [+-]DD:MM:SS.ss."""
    if not -90.0 <= dec_deg <= 90.0 or math.isnan(dec_deg):
        raise ValueError(f"declination {dec_deg} is outside [-90, 90]")
    sign = "-" if dec_deg < 0 else "+"
    cs = round(abs(dec_deg) * 360_000)
    d, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6_000)
    return f"{sign}{d:02d}:{m:02d}:{rest / 100:05.2f}"


@dataclass(frozen=True)
class DesiredOb:
    """The parts of a P2 OB that the plan decides; everything else in the OB is left as P2 has it."""

    ob_id: str
    name: str
    target: dict[str, Any]
    constraints: dict[str, Any]
    description: dict[str, Any]
    science_params: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """A fingerprint of the content: an unchanged block needs no P2 call at all."""
        payload = json.dumps(
            [self.name, self.target, self.constraints, self.description, self.science_params], sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def desired_ob(block: PlannedBlock) -> DesiredOb:
    """Translate a planned block into the OB content P2 should hold for it."""
    constraints = {
        "name": f"{block.ob_type} constraints"[:100],
        "airmass": block.max_airmass if block.max_airmass is not None else DEFAULT_AIRMASS,
        "seeing": block.max_seeing_arcsec if block.max_seeing_arcsec is not None else DEFAULT_SEEING_ARCSEC,
        "moonDistance": (round(block.min_moon_distance_deg) if block.min_moon_distance_deg is not None
                         else DEFAULT_MOON_DISTANCE_DEG),
    }
    description = {"name": block.name[:100], "userComments": f"skyops OB {block.ob_id} ({block.ob_type})"[:2000]}
    target = {"name": block.target_name, "ra": ra_sexagesimal(block.ra_deg), "dec": dec_sexagesimal(block.dec_deg)}
    return DesiredOb(
        ob_id=block.ob_id,
        name=p2_name(block.ob_id),
        target=target,
        constraints=constraints,
        description=description,
        science_params={"SEQ.EXPTIME": float(block.exposure_s), "SEQ.NEXP": 1},
    )


def apply_to(ob: dict[str, Any], desired: DesiredOb) -> dict[str, Any]:
    """The OB `ob` (as P2 returned it) with the plan's fields written in; fields the plan does not own are kept."""
    out = copy.deepcopy(ob)
    out["name"] = desired.name
    for section, values in (("target", desired.target), ("constraints", desired.constraints),
                            ("obsDescription", desired.description)):
        out.setdefault(section, {}).update(values)
    return out


def differs(ob: dict[str, Any], desired: DesiredOb) -> bool:
    """Whether P2's OB lacks any of the plan's values (e.g. after someone edited it in P2)."""
    return apply_to(ob, desired) != ob


def params_to_set(template: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The template parameters whose value in P2 differs from what the plan wants."""
    current = {p["name"]: p.get("value") for p in template.get("parameters", [])}
    return {name: value for name, value in wanted.items() if current.get(name) != value}
