"""GCN notices: each schema's real example parsed, bad input refused with the field named, the criteria as a table."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config_db.gcn import GcnCriteria, NoticeKind, ToOTemplate, TopicCriteria
from planner.config import SchedulerConfig, SiteConfig
from planner.domain.gcn import (
    Notice,
    NoticeError,
    Rejection,
    ob_name,
    observable_tonight,
    parse_notice,
    screen,
    too_request,
)
from planner.domain.night import NightGrid
from planner.ephemeris import compute_night

DATA = Path(__file__).parents[2] / "data" / "gcn"
# The GUANO arcmin example (RA 336.26°, Dec +25.14°) is up at La Silla for ~3 h late in this night.
GOOD_NIGHT = date(2025, 9, 10)
GOOD_NOW = datetime(2025, 9, 10, 23, 30, tzinfo=UTC)
GUANO_TOPIC = "gcn.notices.swift.bat.guano"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def redated(name: str, trigger_time: datetime, **changes: Any) -> bytes:
    """A real example re-dated to `trigger_time` (the examples are years old), with optional field changes."""
    data = example(name)
    stamp = trigger_time.isoformat().replace("+00:00", "Z")
    for field in ("trigger_time", "alert_datetime", "time_created"):
        if field in data:
            data[field] = stamp
    data.update(changes)
    return json.dumps(data).encode()


@pytest.fixture(scope="session")
def good_night(site: SiteConfig, config: SchedulerConfig) -> NightGrid:
    return compute_night(site, GOOD_NIGHT, config=config)


def parse(kind: NoticeKind, name: str) -> Notice:
    return parse_notice(kind, (DATA / name).read_bytes())


# --- parsing: every stored example ----------------------------------------------------------------


def test_guano_arcmin_localisation() -> None:
    n = parse(NoticeKind.SWIFT_BAT_GUANO, "swift_bat_guano.loc_arcmin.json")

    assert n.key == "swift_bat_guano:694215995"
    assert (n.ra_deg, n.dec_deg, n.error_radius_deg) == (336.26, 25.139, 0.05)
    assert n.far_hz == 1e-5
    assert n.snr == 13.94  # the image S/N when there is one
    assert n.trigger_time == datetime(2022, 12, 31, 21, 46, 5, 130000, tzinfo=UTC)
    assert n.record_number == 3
    assert not n.test and not n.retraction


def test_guano_sky_map_update_has_no_position_and_a_string_id() -> None:
    n = parse(NoticeKind.SWIFT_BAT_GUANO, "swift_bat_guano.loc_map.json")

    assert n.key == "swift_bat_guano:694215995"  # ["694215995"] and [694215995] are the same event
    assert not n.has_position
    assert n.snr == 7.5  # the rate S/N when there is no image


def test_guano_retraction() -> None:
    n = parse(NoticeKind.SWIFT_BAT_GUANO, "swift_bat_guano.retraction.json")

    assert n.retraction and not n.has_position


def test_einstein_probe_wxt() -> None:
    n = parse(NoticeKind.EINSTEIN_PROBE_WXT, "einstein_probe.wxt.alert.json")

    assert n.key == "einstein_probe_wxt:01708973486"  # the leading zero survives
    assert (n.ra_deg, n.dec_deg, n.error_radius_deg, n.snr) == (120.0, 40.0, 0.02, 1.0)
    assert not n.test  # no alert_tense: a current notice


def test_icecube_gold_bronze_uses_the_event_name() -> None:
    n = parse(NoticeKind.ICECUBE_TRACK, "icecube.gold_bronze_track_alerts.json")

    assert n.key == "icecube_track:IceCube-230416A"
    assert (n.error_radius_deg, n.far_hz, n.p_astro) == (0.5, 8.029e-8, 0.34064)


def test_icecube_lvk_track_search_takes_the_most_probable_direction() -> None:
    n = parse(NoticeKind.ICECUBE_LVK_NU_TRACK, "icecube.lvk_nu_track_search.json")

    assert n.key == "icecube_lvk_nu_track:S230914ak"
    assert (n.ra_deg, n.dec_deg, n.error_radius_deg, n.pvalue) == (17.49, 16.18, 0.5, 0.0191)
    assert not n.test


def test_igwn_alerts_give_no_point_position_and_mock_events_are_tests() -> None:
    preliminary = parse(NoticeKind.IGWN_ALERT, "igwn.gwalert.preliminary.json")
    retraction = parse(NoticeKind.IGWN_ALERT, "igwn.gwalert.retraction.json")

    assert preliminary.key == "igwn_alert:MS181101ab"
    assert preliminary.test  # MS…: a mock superevent
    assert not preliminary.has_position
    assert preliminary.far_hz == 9.11069936486e-14
    assert retraction.retraction and retraction.trigger_time == datetime(2018, 11, 1, 23, 36, 23, tzinfo=UTC)


def test_igwn_real_superevent_is_not_a_test() -> None:
    data = example("igwn.gwalert.preliminary.json") | {"superevent_id": "S181101ab"}

    assert not parse_notice(NoticeKind.IGWN_ALERT, json.dumps(data).encode()).test


def test_svom_times_without_zone_are_utc() -> None:
    eclairs = parse(NoticeKind.SVOM, "svom.eclairs.trigger_slewing.json")
    mxt = parse(NoticeKind.SVOM, "svom.mxt.localization.json")

    assert eclairs.test  # alert_tense: test
    assert eclairs.source == "SVOM ECLAIRs"
    assert mxt.trigger_time == datetime(2024, 2, 22, 8, 51, 31, 320000, tzinfo=UTC)
    assert (mxt.ra_deg, mxt.dec_deg, mxt.error_radius_deg) == (143.2478, -68.0289, 0.1)


# --- parsing: bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "JSON object, not list"),
        (b'"a string"', "JSON object, not str"),
        (b'{"ra": 10, "dec": 5}', "id: the notice names no event"),
        (b'{"id": [1], "ra": 400, "dec": 5}', "ra: Input should be less than or equal to 360"),
        (b'{"id": [1], "ra": 10, "dec": -91}', "dec: Input should be greater than or equal to -90"),
        (b'{"id": [1], "ra": "north", "dec": 5}', "ra: Input should be a valid number"),
        (b'{"id": [1], "ra": NaN, "dec": 5}', "ra: Input should be a finite number"),
        (b'{"id": [1], "ra_uncertainty": [-1]}', "ra_uncertainty.0: Input should be greater than or equal to 0"),
        (b'{"id": [1], "trigger_time": "[UTC, ISO 8601]"}', "trigger_time: Input should be a valid datetime"),
        (b'{"id": {"a": 1}}', "id: Input should be a valid list"),
    ],
)
def test_malformed_unified_notices_are_refused_naming_the_field(payload: bytes | None, problem: str) -> None:
    with pytest.raises(NoticeError, match=problem.replace("[", r"\[").replace("(", r"\(")):
        parse_notice(NoticeKind.SWIFT_BAT_GUANO, payload)


def test_the_old_guano_template_with_placeholder_times_is_refused() -> None:
    # gcn-schema once had a template with "[UTC, ISO 8601]" where the times go: such a message is malformed.
    template = {"alert_info": {"alert_datetime": "[UTC, ISO 8601]"}, "event_info": {"event_id": "name"}}
    with pytest.raises(NoticeError, match="no event"):
        parse_notice(NoticeKind.SWIFT_BAT_GUANO, json.dumps(template).encode())


def test_malformed_schema_specific_notices() -> None:
    with pytest.raises(NoticeError, match="superevent_id: Field required"):
        parse_notice(NoticeKind.IGWN_ALERT, b'{"alert_type": "PRELIMINARY"}')
    with pytest.raises(NoticeError, match="ref_ID: Field required"):
        parse_notice(NoticeKind.ICECUBE_LVK_NU_TRACK, b'{"pval_generic": 0.1}')
    with pytest.raises(NoticeError, match=r"coincident_events\.0\.localization\.dec: Field required"):
        parse_notice(
            NoticeKind.ICECUBE_LVK_NU_TRACK,
            b'{"ref_ID": "S1", "coincident_events": [{"localization": {"ra": 1}}]}',
        )


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(NoticeError, match="more than"):
        parse_notice(NoticeKind.IGWN_ALERT, b"{" + b" " * (10 * 1024 * 1024) + b"}")


# --- criteria ----------------------------------------------------------------------------------------

CRITERIA = GcnCriteria(max_error_radius_deg=0.05, max_notice_age_h=24)
NOW = datetime(2025, 9, 10, 23, 30, tzinfo=UTC)


def notice(**changes: Any) -> Notice:
    base: dict[str, Any] = {
        "kind": NoticeKind.SWIFT_BAT_GUANO,
        "event_id": "1",
        "source": "Swift BAT-GUANO",
        "retraction": False,
        "test": False,
        "trigger_time": NOW - timedelta(hours=1),
        "ra_deg": 336.26,
        "dec_deg": 25.139,
        "error_radius_deg": 0.05,
        "far_hz": 1e-5,
        "snr": 13.9,
    }
    return Notice(**(base | changes))


GUANO = TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO, max_far_hz=1e-4)


@pytest.mark.parametrize(
    ("changes", "topic", "rejection", "detail"),
    [
        ({}, GUANO, None, ""),
        ({"test": True}, GUANO, Rejection.TEST, "test or mock"),
        ({"retraction": True}, GUANO, Rejection.RETRACTION, "retracted"),
        ({"test": True, "retraction": True}, GUANO, Rejection.TEST, "test"),
        ({"ra_deg": None, "dec_deg": None}, GUANO, Rejection.NO_POSITION, "no point position"),
        ({"error_radius_deg": None}, GUANO, Rejection.NO_ERROR_REGION, "no error radius"),
        ({"error_radius_deg": 0.051}, GUANO, Rejection.ERROR_TOO_LARGE, "0.051° is larger than 0.05°"),
        (
            {"error_radius_deg": 0.2},
            TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO, max_error_radius_deg=0.25),
            None,
            "",
        ),
        ({"far_hz": 2e-4}, GUANO, Rejection.FAR_TOO_HIGH, "FAR [Hz] 0.0002 is above the limit 0.0001"),
        ({"far_hz": None}, GUANO, Rejection.FAR_TOO_HIGH, "gives no FAR [Hz]"),
        ({"far_hz": None}, TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO), None, ""),
        ({"snr": 6.9}, TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO, min_snr=7), Rejection.SNR_TOO_LOW, "below"),
        ({"pvalue": 0.02}, TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO, max_pvalue=0.01),
         Rejection.PVALUE_TOO_HIGH, "p-value 0.02 is above"),
        ({"p_astro": 0.3}, TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO, min_p_astro=0.5),
         Rejection.P_ASTRO_TOO_LOW, "p_astro 0.3 is below"),
        ({"trigger_time": NOW - timedelta(hours=25)}, GUANO, Rejection.TOO_OLD, "25.0 h ago, more than 24 h"),
        ({"trigger_time": None}, GUANO, Rejection.TOO_OLD, "no trigger time"),
    ],
)
def test_screen(changes: dict[str, Any], topic: TopicCriteria, rejection: Rejection | None, detail: str) -> None:
    verdict = screen(notice(**changes), CRITERIA, topic, NOW)

    assert verdict.rejection is rejection
    assert verdict.accepted is (rejection is None)
    assert detail in verdict.detail


def test_age_is_not_judged_when_switched_off() -> None:
    criteria = GcnCriteria(max_notice_age_h=None)

    assert screen(notice(trigger_time=None), criteria, GUANO, NOW).accepted


def test_real_examples_under_the_shipped_criteria_at_a_good_time() -> None:
    """The stored examples, re-dated to an hour before the clock, meet the fates the data README lists."""
    from config_db.gcn import load_gcn_config

    config = load_gcn_config()
    topic_of = {t.kind: t for t in config.topics.values()}
    svom = TopicCriteria(kind=NoticeKind.SVOM)
    cases = [
        ("swift_bat_guano.loc_arcmin.json", NoticeKind.SWIFT_BAT_GUANO, None),
        ("swift_bat_guano.loc_map.json", NoticeKind.SWIFT_BAT_GUANO, Rejection.NO_POSITION),
        ("swift_bat_guano.retraction.json", NoticeKind.SWIFT_BAT_GUANO, Rejection.RETRACTION),
        ("einstein_probe.wxt.alert.json", NoticeKind.EINSTEIN_PROBE_WXT, Rejection.SNR_TOO_LOW),
        ("icecube.gold_bronze_track_alerts.json", NoticeKind.ICECUBE_TRACK, Rejection.ERROR_TOO_LARGE),
        ("icecube.lvk_nu_track_search.json", NoticeKind.ICECUBE_LVK_NU_TRACK, Rejection.ERROR_TOO_LARGE),
        ("igwn.gwalert.preliminary.json", NoticeKind.IGWN_ALERT, Rejection.TEST),
        ("svom.eclairs.trigger_slewing.json", NoticeKind.SVOM, Rejection.TEST),
        ("svom.mxt.localization.json", NoticeKind.SVOM, Rejection.ERROR_TOO_LARGE),
    ]
    for name, kind, rejection in cases:
        n = parse_notice(kind, redated(name, NOW - timedelta(hours=1)))
        assert screen(n, config.criteria, topic_of.get(kind, svom), NOW).rejection is rejection, name


def test_real_examples_at_their_own_time_are_too_old_a_year_later() -> None:
    n = parse(NoticeKind.SWIFT_BAT_GUANO, "swift_bat_guano.loc_arcmin.json")

    verdict = screen(n, CRITERIA, GUANO, datetime(2023, 1, 1, 22, tzinfo=UTC))

    assert verdict.rejection is Rejection.TOO_OLD


# --- the ToO OB and its observability -----------------------------------------------------------------


def test_too_request_follows_the_template_and_the_topic_priority() -> None:
    template = ToOTemplate(exposure_s=1200, priority=2, max_airmass=1.8, twilight="astronomical")
    topic = TopicCriteria(kind=NoticeKind.SWIFT_BAT_GUANO, priority=1)

    r = too_request(notice(ra_deg=360.0), template, topic)

    assert r.ra_deg == 0.0  # RA 360 is RA 0
    assert (r.exposure_s, r.priority, r.ob_type) == (1200, 1, "ToO")
    assert r.constraints.max_airmass == 1.8 and r.constraints.twilight.value == "astronomical"
    assert r.name == "GCN swift_bat_guano:1" == ob_name(notice())


def test_too_request_needs_a_position() -> None:
    with pytest.raises(ValueError, match="no position"):
        too_request(notice(ra_deg=None), ToOTemplate(), GUANO)


def test_observable_in_the_coming_night(good_night: NightGrid, config: SchedulerConfig) -> None:
    r = too_request(notice(), ToOTemplate(), GUANO)

    verdict = observable_tonight(r, good_night, GOOD_NOW, overhead_s=config.overhead_s)

    assert verdict.accepted
    assert "observable from 2025-09-11 02:" in verdict.detail


def test_set_for_the_rest_of_the_night(good_night: NightGrid, config: SchedulerConfig) -> None:
    r = too_request(notice(), ToOTemplate(), GUANO)
    late = datetime(2025, 9, 11, 6, 30, tzinfo=UTC)  # after it sank below airmass 2

    verdict = observable_tonight(r, good_night, late, overhead_s=config.overhead_s)

    assert verdict.rejection is Rejection.NOT_OBSERVABLE
    assert "never met: airmass ≤ 2" in verdict.detail


def test_too_short_a_window_for_the_exposure(good_night: NightGrid, config: SchedulerConfig) -> None:
    long = too_request(notice(), ToOTemplate(exposure_s=5 * 3600), GUANO)

    verdict = observable_tonight(long, good_night, GOOD_NOW, overhead_s=config.overhead_s)

    assert verdict.rejection is Rejection.NOT_OBSERVABLE
    assert "min needed" in verdict.detail and "never met" not in verdict.detail


def test_a_northern_target_never_rises_high_enough(good_night: NightGrid, config: SchedulerConfig) -> None:
    r = too_request(notice(ra_deg=336.0, dec_deg=40.0), ToOTemplate(), GUANO)

    verdict = observable_tonight(r, good_night, GOOD_NOW, overhead_s=config.overhead_s)

    assert verdict.rejection is Rejection.NOT_OBSERVABLE
    assert "never met: airmass ≤ 2" in verdict.detail


def test_after_the_night_ends(good_night: NightGrid, config: SchedulerConfig) -> None:
    r = too_request(notice(), ToOTemplate(), GUANO)
    after = datetime.fromtimestamp(good_night.end_unix + 60, tz=UTC)

    verdict = observable_tonight(r, good_night, after, overhead_s=config.overhead_s)

    assert verdict.rejection is Rejection.NOT_OBSERVABLE
    assert "is over" in verdict.detail


def test_ra_wraps_when_checking_observability(good_night: NightGrid, config: SchedulerConfig) -> None:
    """RA −0° and 360° are the same sky as 0°: no crash, one verdict."""
    a, b = (
        observable_tonight(too_request(notice(ra_deg=ra), ToOTemplate(), GUANO), good_night, GOOD_NOW, overhead_s=300)
        for ra in (0.0, 360.0)
    )

    assert a == b
