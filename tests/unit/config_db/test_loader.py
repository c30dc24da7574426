"""The YAML loader names the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from config_db.loader import ConfigError, load_model


class Site(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    latitude_deg: float


def test_valid_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text("name: La Silla\nlatitude_deg: -29.2567\n")
    assert load_model(f, Site).latitude_deg == -29.2567


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: La Silla\nlatitude_deg: north\n", "latitude_deg: Input should be a valid number"),
        ("name: La Silla\nlatitude_deg: 1\naltitude: 2400\n", "altitude: Extra inputs are not permitted"),
        ("name: [unclosed\n", "line 2"),
        ("", "name: Field required"),
    ],
)
def test_bad_files_name_file_field_and_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=r"site\.yaml") as info:
        load_model(f, Site)
    assert message in str(info.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_model(tmp_path / "nope.yaml", Site)
