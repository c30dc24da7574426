"""Builders of OB sets for the planner tests."""

from __future__ import annotations

import numpy as np

from planner.domain.observability import Constraints, ObRequest, Twilight


def random_requests(n: int, seed: int) -> list[ObRequest]:
    rng = np.random.default_rng(seed)
    return [
        ObRequest(
            ob_id=f"ob{i}",
            ra_deg=float(rng.uniform(0, 360)),
            dec_deg=float(np.degrees(np.arcsin(rng.uniform(-1.0, 0.5)))),
            exposure_s=float(rng.choice([300, 600, 900, 1200, 1800, 2700, 3600])),
            priority=int(rng.integers(1, 6)),
            constraints=Constraints(
                max_airmass=float(rng.choice([1.5, 1.8, 2.0, 2.5])),
                twilight=Twilight(rng.choice(["astronomical", "nautical"])),
                min_moon_separation_deg=float(rng.choice([10, 20, 30])),
                max_moon_illumination=float(rng.choice([0.7, 1.0])),
                max_seeing_arcsec=float(rng.choice([0.8, 1.2, 2.0])),
            ),
        )
        for i in range(n)
    ]
