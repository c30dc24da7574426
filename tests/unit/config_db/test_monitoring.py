"""The monitoring configuration: shipped defaults, good and bad files, and the archive's retention map."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config_db.loader import ConfigError
from config_db.monitoring import RETENTION_CLASSES, Backoff, load_monitoring, load_site, retention_classes
from skyops.archive.port import DEFAULT_RETENTION
from skyops.archive.sqlite import SqliteArchive

DATA = Path(__file__).parents[2] / "data" / "collectors" / "config"

# Points other services (alarms, planner, HMI) rely on; the defaults must keep them.
REQUIRED_POINTS = {
    "lasilla.asm.wind_speed": "m/s", "lasilla.asm.wind_direction": "deg", "lasilla.asm.wind_gust": "m/s",
    "lasilla.asm.humidity": "%", "lasilla.asm.temperature": "°C", "lasilla.asm.dew_point": "°C",
    "lasilla.asm.seeing": "arcsec", "lasilla.asm.pressure": "hPa", "lasilla.asm.transparency": "",
    "lasilla.asm.data_age_s": "s", "ntt.opcua.connected": "", "ntt.tcs.altitude": "deg",
    "ntt.tcs.azimuth": "deg", "ntt.tcs.state": "", "ntt.dome.azimuth": "deg", "ntt.dome.shutter": "",
    "ntt.m1.temperature": "°C", "ntt.instrument.state": "", "ntt.exposure.ob_id": "",
    "ntt.exposure.state": "", "ntt.exposure.remaining_s": "s", "skyops.ves_sync.last_success_age_s": "s",
    "skyops.ves_sync.consecutive_failures": "", "skyops.ves_sync.lag_s": "s",
}


def test_defaults_hold_every_point_the_other_services_use() -> None:
    config = load_monitoring()
    units = {p.name: p.unit for p in config.points}
    for name, unit in REQUIRED_POINTS.items():
        assert units.get(name) == unit, name
    assert config.point("ntt.tcs.state").kind == "str"
    assert config.point("ntt.opcua.connected").kind == "bool"


def test_every_default_source_feeds_a_defined_point() -> None:
    config = load_monitoring()
    assert config.sources.asm[0].fields["seeing"] == "lasilla.asm.seeing"
    assert {n.point for n in config.sources.opcua[0].nodes} >= {"ntt.tcs.altitude", "ntt.dome.shutter"}


def test_retention_map_is_accepted_by_the_archive(tmp_path: Path) -> None:
    mapping = retention_classes()
    assert set(mapping.values()) <= set(RETENTION_CLASSES) == {r.name for r in DEFAULT_RETENTION}
    archive = SqliteArchive(tmp_path / "a.sqlite3", points=mapping)
    assert archive.known_points() == mapping


@pytest.mark.parametrize("path", sorted(DATA.glob("good_*.yaml")), ids=lambda p: p.stem)
def test_good_files_load(path: Path) -> None:
    config = load_monitoring(path)
    assert config.points


@pytest.mark.parametrize("path", sorted(DATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_files_are_refused_naming_file_field_and_problem(path: Path) -> None:
    expected = re.search(r"# expect: (.+)", path.read_text(encoding="utf-8"))
    assert expected is not None, f"{path.name} must say what error it expects"
    with pytest.raises(ConfigError) as info:
        load_monitoring(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected.group(1).strip() in message


def test_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.yaml: cannot read"):
        load_monitoring(tmp_path / "nothing.yaml")


def test_backoff_doubles_up_to_its_cap() -> None:
    b = Backoff(initial_s=0.5, max_s=3.0)
    assert [b.delay(i) for i in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_site_is_the_ntt_at_la_silla() -> None:
    site = load_site()
    assert (site.latitude_deg, site.longitude_deg, site.elevation_m) == (-29.2567, -70.7346, 2375)


def test_bad_site_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text("name: x\nlatitude_deg: -95\nlongitude_deg: 0\nelevation_m: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="latitude_deg"):
        load_site(f)
