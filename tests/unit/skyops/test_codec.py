"""The bus codec: exact round trips, and corrupt or foreign payloads refused with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from skyops.codec import (
    READS_UP_TO,
    NewerCodecVersionError,
    PayloadKind,
    decode_alarm_events,
    decode_log_batch,
    decode_logs,
    decode_samples,
    encode_alarm_events,
    encode_logs,
    encode_logs_v1,
    encode_samples,
    newer_version,
    versioned_header,
)
from skyops.errors import CodecError
from skyops.records import AlarmEvent, AlarmSeverity, LogRecord, Quality, Sample, SampleBatch

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def batch() -> SampleBatch:
    return SampleBatch.from_samples([
        Sample("ntt.tcs.altitude", T0, 45.5), Sample("ntt.tcs.state", T0, "TRACKING ✓"),
        Sample("ntt.tcs.altitude", T0 + timedelta(microseconds=1), None, Quality.BAD),
        Sample("ntt.dome.open", T0, True), Sample("ntt.tcs.ob_id", T0, 2**63 - 1),
    ])


def test_samples_round_trip() -> None:
    b = batch()
    assert list(decode_samples(encode_samples(b)).samples()) == list(b.samples())


def test_empty_batch_round_trips() -> None:
    assert len(decode_samples(encode_samples(SampleBatch.empty()))) == 0


def test_packed_columns_are_compact() -> None:
    n = 1000
    b = SampleBatch.from_floats([f"p.x{i}" for i in range(n)], np.arange(n), np.arange(n), np.ones(n))
    # 8 (ts) + 8 (value) + 4 (point index) + 2 (kind, quality) bytes a sample plus the point names.
    assert len(encode_samples(b)) < n * 30


def test_logs_round_trip() -> None:
    recs = [LogRecord(ts=T0, level=30, source="planner", message="re-plan ✓", component="scheduler", host="wt1",
                      attributes={"alarm": "Wind.ASM:1"}, trace_id="abc", ob_id="OB-1"),
            LogRecord(ts=T0, level=10, source="ves", message="")]
    assert decode_logs(encode_logs(recs)) == recs


def test_alarm_events_round_trip() -> None:
    evs = [AlarmEvent(alarm_id="Wind.ASM:1", ts=T0, seq=3, action="ack", severity=AlarmSeverity.CRITICAL,
                      latched=AlarmSeverity.CRITICAL, state="ACTIVE", acked=True, user="op", comment="seen",
                      reason="wind 21 m/s", attributes={"sector": "120-180"})]
    assert decode_alarm_events(encode_alarm_events(evs)) == evs


@pytest.mark.parametrize("mangle", [
    lambda p: b"",
    lambda p: p[:-3],
    lambda p: p + b"\x00",
    lambda p: b"\x4c" + p[1:],
    lambda p: p[:1] + b"\xff" * 12,
])
def test_corrupt_or_foreign_payloads_are_refused(mangle: object) -> None:
    payload = encode_samples(batch())
    with pytest.raises(CodecError):
        decode_samples(mangle(payload))  # type: ignore[operator]


def test_a_log_payload_is_not_a_sample_batch() -> None:
    with pytest.raises(CodecError, match="not a sample batch"):
        decode_samples(encode_logs([]))


DECODERS = {PayloadKind.SAMPLES: decode_samples, PayloadKind.LOGS: decode_log_batch,
            PayloadKind.ALARM_EVENTS: decode_alarm_events}


@pytest.mark.parametrize("kind", list(PayloadKind))
def test_a_payload_of_a_newer_codec_is_told_apart_from_garbage(kind: PayloadKind) -> None:
    v99 = versioned_header(kind, 99) + b"a body this process cannot know"

    with pytest.raises(NewerCodecVersionError) as caught:
        DECODERS[kind](v99)

    assert (caught.value.kind, caught.value.version, caught.value.reads_up_to) == (kind, 99, READS_UP_TO[kind])
    assert f"written by codec v99, this process reads up to v{READS_UP_TO[kind]}: upgrade it" in str(caught.value)
    # Code outside a consumer group (live views) keeps treating it as one more undecodable payload.
    assert isinstance(caught.value, CodecError)
    assert newer_version(v99) is not None


def test_newer_version_is_none_for_every_payload_this_codec_reads_and_for_garbage() -> None:
    readable = [encode_samples(batch()), encode_logs([]), encode_logs_v1([]), encode_alarm_events([])]
    garbage = [b"", b"\xff", b"\xffS", b'{"plan": 1}', b"\xffZ\x63\x00", bytes(range(255, -1, -1))]
    assert [newer_version(p) for p in readable + garbage] == [None] * (len(readable) + len(garbage))


def test_a_newer_batch_of_another_kind_is_refused_as_foreign_not_as_newer() -> None:
    with pytest.raises(CodecError, match="not a sample batch payload") as caught:
        decode_samples(versioned_header(PayloadKind.LOGS, 99))
    assert not isinstance(caught.value, NewerCodecVersionError)


def test_a_versioned_header_of_a_version_already_known_is_corrupt() -> None:
    # v1/v2 have their own tags: a header claiming v2 was not written by this platform's codecs.
    forged = bytes((0xFF,)) + b"S" + (2).to_bytes(2, "little") + encode_samples(batch())[1:]
    with pytest.raises(CodecError, match="versioned header this codec does not know") as caught:
        decode_samples(forged)
    assert not isinstance(caught.value, NewerCodecVersionError)


@pytest.mark.parametrize("version", [0, 1, 2, 65536])
def test_versioned_header_refuses_versions_outside_3_to_65535(version: int) -> None:
    with pytest.raises(ValueError, match=r"version must be in 3\.\.65535"):
        versioned_header(PayloadKind.SAMPLES, version)
