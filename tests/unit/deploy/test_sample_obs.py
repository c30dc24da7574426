"""The shipped sample OB set: reproducible from its seed, valid, observable from La Silla in every season."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from deploy.sample_obs import SAMPLE_OBS_PATH, SampleObError, load_sample_obs, read_sample_obs
from deploy.scripts.make_sample_obs import DEFAULT_SEED, generate
from planner.config import SchedulerConfig, load_site
from planner.domain.replan import NightPlanner
from planner.ephemeris import compute_night
from planner.store import LIVE_STATES, ObStore
from skyops.opdb import make_engine, make_sessionmaker, upgrade

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> ObStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.sqlite3'}")
    upgrade(engine)
    return ObStore(make_sessionmaker(engine), site=load_site())


def test_the_shipped_file_is_what_the_generator_writes_from_its_seed() -> None:
    assert json.loads(SAMPLE_OBS_PATH.read_text()) == generate(DEFAULT_SEED)
    assert generate(1) != generate(DEFAULT_SEED)


def test_the_set_mixes_transients_follow_ups_programmes_and_toos() -> None:
    obs = read_sample_obs()
    assert len(obs.obs) >= 200
    kinds = Counter(e.kind for e in obs.obs)
    assert kinds["auto"] >= 100 and kinds["follow_up"] >= 50 and kinds["ob"] >= 50
    types = Counter(e.data.ob_type.value for e in obs.obs if e.kind == "ob")  # type: ignore[union-attr]
    assert types["ESO"] >= 40 and types["ToO"] >= 1
    ras = [e.data.ra_deg for e in obs.obs]
    assert all(sum(1 for ra in ras if h * 15 <= ra < (h + 1) * 15) >= 3 for h in range(24))  # every season
    assert all(-90 < e.data.dec_deg < 25 for e in obs.obs)  # above airmass 2 from La Silla at some hour


def test_loading_creates_every_ob_once(store: ObStore) -> None:
    obs = read_sample_obs()
    created = load_sample_obs(store, obs, now=NOW)
    assert len(created) == len(obs.obs)
    assert load_sample_obs(store, obs, now=NOW) == []  # a restart does not double the queue
    assert len(store.list(states=LIVE_STATES)) == len(obs.obs)
    autos = [o for o in created if o.ob_type.value == "CTOB"]
    assert autos and all(o.expires_at is not None and o.exposure_s > 0 for o in autos)


@pytest.mark.parametrize("night", [date(2026, 3, 20), date(2026, 6, 21), date(2026, 9, 22), date(2026, 12, 21)])
def test_every_season_has_a_full_night_of_blocks(store: ObStore, night: date) -> None:
    load_sample_obs(store, read_sample_obs(), now=datetime(2026, 1, 1, tzinfo=UTC))
    config = SchedulerConfig()
    grid = compute_night(load_site(), night, config=config)
    planner = NightPlanner(grid, [o.to_request() for o in store.list(states=LIVE_STATES)], config)
    blocks = planner.plan().blocks
    assert len(blocks) >= 8
    night_minutes = (grid.sun_alt_deg.shape[0] - 1) * grid.step_s / 60
    assert sum(b.end_min - b.start_min for b in blocks) >= 0.5 * night_minutes  # the night is mostly used


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "not JSON"),
    ('{"generator": "x", "obs": []}', "obs"),
    ('{"generator": "x", "obs": [{"kind": "auto", "data": {"mid": 1, "target_name": "AT 1", "ra_deg": 400, '
     '"dec_deg": 0, "magnitude": 17}}]}', "obs.0.auto.data.ra_deg"),
    ('{"generator": "x", "obs": [{"kind": "rocket", "data": {}}]}', "obs.0"),
])
def test_a_bad_file_names_the_entry_and_field(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "obs.json"
    path.write_text(text)
    with pytest.raises(SampleObError, match=problem.replace(".", r"\.")):
        read_sample_obs(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SampleObError, match="cannot read"):
        read_sample_obs(tmp_path / "absent.json")
