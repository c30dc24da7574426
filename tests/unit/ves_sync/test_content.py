"""The OB content a planned block becomes in P2."""

from __future__ import annotations

import pytest

from tests.unit.ves_sync.builders import block
from ves_sync.domain.content import (
    P2_NAME_MAX,
    apply_to,
    dec_sexagesimal,
    desired_ob,
    differs,
    p2_name,
    params_to_set,
    ra_sexagesimal,
)
from ves_sync.emulator.schemas import check_dec, check_ra


@pytest.mark.parametrize(
    ("deg", "text"),
    [(0.0, "00:00:00.000"), (15.0, "01:00:00.000"), (187.5, "12:30:00.000"), (359.99999999, "00:00:00.000"),
     (83.63308, "05:34:31.939")],
)
def test_ra_is_written_as_p2_sexagesimal(deg: float, text: str) -> None:
    assert ra_sexagesimal(deg) == text
    assert check_ra(ra_sexagesimal(deg)) == text


@pytest.mark.parametrize(
    ("deg", "text"),
    [(0.0, "+00:00:00.00"), (-0.5, "-00:30:00.00"), (-90.0, "-90:00:00.00"), (22.0145, "+22:00:52.20"),
     (-29.99999999, "-30:00:00.00")],
)
def test_dec_is_written_as_p2_sexagesimal_with_its_sign(deg: float, text: str) -> None:
    assert dec_sexagesimal(deg) == text
    assert check_dec(text) == text


def test_dec_beyond_the_pole_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        dec_sexagesimal(90.5)


def test_p2_name_is_the_ob_id_and_stays_unique_when_shortened() -> None:
    assert p2_name("soxs-ob-0001") == "soxs-ob-0001"
    long_a, long_b = "x" * 40 + "a", "x" * 40 + "b"
    assert len(p2_name(long_a)) == P2_NAME_MAX
    assert p2_name(long_a) != p2_name(long_b)
    assert p2_name(long_a) == p2_name(long_a)


def test_desired_ob_carries_target_constraints_and_exposure() -> None:
    desired = desired_ob(block(3, exposure_s=900, max_airmass=1.6))
    assert desired.name == "soxs-ob-0003"
    assert desired.target["name"] == "SN2026a003"
    assert desired.constraints["airmass"] == 1.6
    assert desired.science_params == {"SEQ.EXPTIME": 900.0, "SEQ.NEXP": 1}


def test_digest_changes_with_content_and_not_with_the_slot() -> None:
    base = desired_ob(block(1)).digest
    assert desired_ob(block(1)).digest == base
    assert desired_ob(block(1, exposure_s=601)).digest != base
    assert desired_ob(block(1, dec_deg=-10.0)).digest != base
    # The slot lives in the VES order, not in the OB: moving a block must not rewrite it.
    moved = block(1).model_copy(update={"start": block(7).start, "end": block(7).end})
    assert desired_ob(moved).digest == base


def test_apply_keeps_what_the_plan_does_not_own() -> None:
    ob = {"obId": 5, "name": "old", "userPriority": 7, "target": {"name": "x", "ra": "00:00:00.000",
          "dec": "+00:00:00.00", "epoch": 2000.0}, "constraints": {"fli": 0.5, "airmass": 3.0},
          "obsDescription": {"instrumentComments": "keep me"}}
    desired = desired_ob(block(2))
    new = apply_to(ob, desired)
    assert new["userPriority"] == 7
    assert new["constraints"]["fli"] == 0.5
    assert new["constraints"]["airmass"] == 1.8
    assert new["obsDescription"]["instrumentComments"] == "keep me"
    assert new["target"]["epoch"] == 2000.0
    assert ob["name"] == "old"  # the input is not modified
    assert differs(ob, desired)
    assert not differs(new, desired)


def test_params_to_set_lists_only_differences() -> None:
    template = {"parameters": [{"name": "SEQ.EXPTIME", "value": 600.0}, {"name": "SEQ.NEXP", "value": 1}]}
    assert params_to_set(template, {"SEQ.EXPTIME": 600.0, "SEQ.NEXP": 1}) == {}
    assert params_to_set(template, {"SEQ.EXPTIME": 900.0, "SEQ.NEXP": 1}) == {"SEQ.EXPTIME": 900.0}
