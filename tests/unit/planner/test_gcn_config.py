"""The GCN consumer's configuration: the shipped YAML loads, and bad files are refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_db.gcn import GcnSettings, NoticeKind, load_gcn_config
from config_db.loader import ConfigError
from planner.gcn.factory import GcnConfigError, kafka_source
from planner.gcn.kafka import consumer_config


def test_shipped_config_subscribes_to_the_json_topics_with_a_position() -> None:
    config = load_gcn_config()

    assert config.topics["gcn.notices.swift.bat.guano"].kind is NoticeKind.SWIFT_BAT_GUANO
    assert config.topics["gcn.notices.einstein_probe.wxt.alert"].kind is NoticeKind.EINSTEIN_PROBE_WXT
    assert config.topics["igwn.gwalert"].kind is NoticeKind.IGWN_ALERT
    assert config.criteria.max_error_radius_deg == 0.05
    assert config.too.priority == 1
    assert config.kafka.group_id == "skyops-ntt-gcn"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gcn.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("topics: {}", "topics: Dictionary should have at least 1 item"),
        ("topics:\n  a.b: {kind: swift}", "topics.a.b.kind: Input should be 'swift_bat_guano'"),
        ("topics:\n  'bad topic!': {kind: svom}", "not Kafka topic names: bad topic!"),
        ("topics:\n  a: {kind: svom, max_far_hz: -1}", "topics.a.max_far_hz: Input should be greater than 0"),
        ("topics:\n  a: {kind: svom, colour: red}", "topics.a.colour: Extra inputs are not permitted"),
        (
            "kafka: {properties: {enable.auto.commit: true}}\ntopics:\n  a: {kind: svom}",
            "kafka.properties: Value error, enable.auto.commit are set by the consumer",
        ),
        (
            "kafka: {properties: {sasl.oauthbearer.client.secret: s3cret}}\ntopics:\n  a: {kind: svom}",
            "sasl.oauthbearer.client.secret are set by the consumer",
        ),
        ("criteria: {max_error_radius_deg: 0}\ntopics:\n  a: {kind: svom}", "criteria.max_error_radius_deg"),
        ("too: {twilight: dusk}\ntopics:\n  a: {kind: svom}", "too.twilight: Input should be 'astronomical'"),
        ("topics: [a, b", "line 1"),
    ],
)
def test_bad_config_is_refused_naming_file_and_field(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as info:
        load_gcn_config(path)

    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_consumer_commits_by_hand_whatever_the_properties_say(tmp_path: Path) -> None:
    config = load_gcn_config(write(tmp_path, "kafka: {properties: {bootstrap.servers: '127.0.0.1:1'}}\n"
                                             "topics:\n  a: {kind: svom}"))

    properties = consumer_config(config.kafka)

    assert properties["enable.auto.commit"] is False
    assert properties["group.id"] == "skyops-ntt-gcn"
    assert properties["bootstrap.servers"] == "127.0.0.1:1"


def test_gcn_kafka_without_credentials_is_refused_at_build() -> None:
    config = load_gcn_config()

    with pytest.raises(GcnConfigError, match="SKYOPS_GCN_CLIENT_ID"):
        kafka_source(config, GcnSettings(client_id=None))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYOPS_GCN_CLIENT_ID", "abc")
    monkeypatch.setenv("SKYOPS_GCN_CLIENT_SECRET", "xyz")

    settings = GcnSettings()

    assert settings.client_id == "abc"
    assert settings.client_secret is not None and settings.client_secret.get_secret_value() == "xyz"
    assert "xyz" not in repr(settings)
