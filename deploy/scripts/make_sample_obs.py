"""Writes the shipped sample OB set (deploy/data/sample_obs.json) from a fixed seed: same seed, same file.

usage: python deploy/scripts/make_sample_obs.py [--seed 20261122] [--out deploy/data/sample_obs.json]

The set mixes what the SOXS scheduler sees in a semester: Marshall transients for classification
(auto OBs, 15.5-19.3 mag), follow-ups of classified sources with the PI's setup, ESO-programme OBs and
spectrophotometric standards, and a few manual ToOs. Right ascensions cover the whole sky, so every
season has targets up at night; declinations stay where La Silla (latitude -29.26 deg) sees them
above airmass 2.
"""

from __future__ import annotations

import argparse
import json
import string
from pathlib import Path
from typing import Any

import numpy as np

from deploy.sample_obs import SAMPLE_OBS_PATH, SampleObSet

DEFAULT_SEED = 20261122

# Spectrophotometric standards (ESO's list) that La Silla observes all year round: name, RA, Dec (deg, J2000).
STANDARDS: list[tuple[str, float, float, float]] = [
    ("LTT 377", 10.445, -33.652, 11.2),
    ("LTT 1020", 28.709, -27.477, 11.5),
    ("EG 21", 47.629, -68.601, 11.4),
    ("GD 71", 88.115, 15.887, 13.0),
    ("LTT 3218", 130.385, -32.942, 11.9),
    ("LTT 3864", 158.058, -35.628, 12.2),
    ("LTT 4364", 176.429, -64.842, 11.5),
    ("Feige 56", 181.697, 11.670, 11.1),
    ("LTT 6248", 234.748, -28.594, 11.8),
    ("EG 274", 245.891, -39.230, 11.0),
    ("LTT 7379", 279.109, -44.310, 10.2),
    ("LTT 7987", 302.737, -30.218, 12.2),
    ("LTT 9239", 343.171, -20.598, 12.1),
    ("Feige 110", 349.993, -5.166, 11.8),
]

# ESO programmes sharing the NTT (period 118): id, science case, typical exposure range (s).
PROGRAMMES: list[tuple[str, str, tuple[int, int]]] = [
    ("118.D-0412(A)", "tidal disruption events", (900, 2400)),
    ("118.C-0178(B)", "type Ia supernova host galaxies", (1200, 3000)),
    ("118.A-0920(A)", "young stellar objects in Lupus", (600, 1800)),
    ("118.B-0333(A)", "high-redshift quasars", (1800, 3600)),
    ("118.F-0051(C)", "brown-dwarf binaries", (300, 1200)),
]

SETUPS = [
    {"arms": "UV-VIS+NIR", "slit_arcsec": 1.0, "readout": "slow"},
    {"arms": "UV-VIS+NIR", "slit_arcsec": 1.5, "readout": "slow"},
    {"arms": "UV-VIS", "slit_arcsec": 1.0, "readout": "fast"},
    {"arms": "NIR", "slit_arcsec": 0.5, "readout": "slow", "nodding": True},
]


def _dec_visible(rng: np.random.Generator, n: int) -> np.ndarray:
    """Declinations uniform on the sphere between -85 and +20 deg (above airmass 2 at some hour from La Silla)."""
    lo, hi = np.sin(np.radians(-85.0)), np.sin(np.radians(20.0))
    return np.degrees(np.arcsin(rng.uniform(lo, hi, n)))


def _tns_name(rng: np.random.Generator, year: int) -> str:
    letters = "".join(rng.choice(list(string.ascii_lowercase), 3))
    return f"AT {year}{letters}"


def generate(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The whole OB set as JSON-ready data."""
    rng = np.random.default_rng(seed)
    obs: list[dict[str, Any]] = []
    used_names: set[str] = set()

    def unique_name() -> str:
        while True:
            name = _tns_name(rng, 2026)
            if name not in used_names:
                used_names.add(name)
                return name

    n_auto, n_fu, n_eso, n_too = 110, 60, 56, 6
    ras, decs = rng.uniform(0, 360, n_auto), _dec_visible(rng, n_auto)
    mags = rng.uniform(15.5, 19.3, n_auto)
    for i in range(n_auto):
        obs.append({"kind": "auto", "data": {
            "mid": 100_000 + i, "target_name": unique_name(), "ra_deg": round(float(ras[i]), 5),
            "dec_deg": round(float(decs[i]), 5), "magnitude": round(float(mags[i]), 2),
            "mag_filter": str(rng.choice(["g", "r", "o", "c"])),
        }})

    ras, decs = rng.uniform(0, 360, n_fu), _dec_visible(rng, n_fu)
    mags = rng.uniform(15.0, 19.0, n_fu)
    for i in range(n_fu):
        kind = str(rng.choice(["SN Ia", "SN II", "SN Ibc", "TDE", "AGN flare", "kilonova candidate"]))
        target = unique_name().replace("AT", "SN", 1) if kind.startswith("SN") else unique_name()
        exposure = int(rng.choice([600, 900, 1200, 1800, 2400, 3600]))
        obs.append({"kind": "follow_up", "data": {
            "mid": 200_000 + i, "name": f"{target} {kind} epoch {int(rng.integers(2, 6))}", "target_name": target,
            "ra_deg": round(float(ras[i]), 5), "dec_deg": round(float(decs[i]), 5),
            "magnitude": round(float(mags[i]), 2), "mag_filter": "r", "exposure_s": exposure,
            "priority": int(rng.choice([1, 2, 2, 3])),
            "constraints": {"max_airmass": float(rng.choice([1.6, 1.8, 2.0])),
                            "max_seeing_arcsec": float(rng.choice([1.2, 1.5, 2.0])),
                            "min_moon_separation_deg": 30.0},
            "setup": SETUPS[int(rng.integers(len(SETUPS)))],
        }})

    for name, ra, dec, mag in STANDARDS:
        obs.append({"kind": "ob", "data": {
            "ob_type": "ESO", "name": f"{name} flux standard", "target_name": name, "ra_deg": ra, "dec_deg": dec,
            "magnitude": mag, "exposure_s": 300, "priority": 2, "programme": "60.A-9022(C)",
            "time_share": "ESO", "constraints": {"max_airmass": 2.0, "max_seeing_arcsec": 3.0,
                                                 "twilight": "nautical"},
            "setup": {"arms": "UV-VIS+NIR", "slit_arcsec": 5.0, "readout": "fast"},
        }})
    n_prog = n_eso - len(STANDARDS)
    ras, decs = rng.uniform(0, 360, n_prog), _dec_visible(rng, n_prog)
    for i in range(n_prog):
        programme, case, (t_lo, t_hi) = PROGRAMMES[i % len(PROGRAMMES)]
        target = f"J{ras[i] / 15:07.4f}{decs[i]:+08.4f}".replace(".", "")
        obs.append({"kind": "ob", "data": {
            "ob_type": "ESO", "name": f"{programme} {case} {i // len(PROGRAMMES) + 1}", "target_name": target,
            "ra_deg": round(float(ras[i]), 5), "dec_deg": round(float(decs[i]), 5),
            "magnitude": round(float(rng.uniform(14.0, 20.5)), 2),
            "exposure_s": int(rng.integers(t_lo // 60, t_hi // 60 + 1)) * 60, "priority": int(rng.integers(2, 6)),
            "programme": programme, "time_share": "ESO",
            "constraints": {"max_airmass": float(rng.choice([1.5, 1.8, 2.0])),
                            "max_moon_illumination": float(rng.choice([0.4, 0.7, 1.0])),
                            "max_seeing_arcsec": float(rng.choice([1.0, 1.3, 1.8])),
                            "twilight": str(rng.choice(["astronomical", "nautical"]))},
            "setup": SETUPS[int(rng.integers(len(SETUPS)))],
        }})

    ras, decs = rng.uniform(0, 360, n_too), _dec_visible(rng, n_too)
    for i in range(n_too):
        grb = f"GRB 2611{int(rng.integers(1, 29)):02d}{'ABC'[i % 3]}"
        obs.append({"kind": "ob", "data": {
            "ob_type": "ToO", "name": f"{grb} afterglow", "target_name": grb,
            "ra_deg": round(float(ras[i]), 5), "dec_deg": round(float(decs[i]), 5),
            "magnitude": round(float(rng.uniform(17.0, 20.0)), 2), "exposure_s": 1800, "priority": 1,
            "programme": "SOXS-GTO-ToO", "time_share": "GTO",
            "constraints": {"max_airmass": 2.5, "twilight": "nautical", "min_moon_separation_deg": 15.0},
            "setup": SETUPS[0],
        }})
    return {"generator": f"python deploy/scripts/make_sample_obs.py --seed {seed}", "obs": obs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=SAMPLE_OBS_PATH)
    args = parser.parse_args()
    data = generate(args.seed)
    SampleObSet.model_validate(data)  # a generator bug is caught here, not at `skyops up`
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"{len(data['obs'])} OBs written to {args.out}")


if __name__ == "__main__":
    main()
