"""Syslog parsing (RFC 5424 and RFC 3164) and TCP framing (RFC 6587), garbage refused with a reason."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logging_svc.domain.rejects import Rejected, RejectReason
from logging_svc.domain.syslog import SyslogContext, SyslogError, TcpFramer, parse_or_reject, parse_syslog

NOW = datetime(2026, 11, 22, 3, 20, tzinfo=UTC)
CTX = SyslogContext(now=NOW, peer_host="192.0.2.50", default_source="devices",
                    sources_by_host={"dome-plc.lasilla.eso.org": "dome", "dome-plc": "dome"})
GOOD = Path(__file__).parents[2] / "data" / "logging_svc" / "syslog_good.txt"


def good_lines() -> list[bytes]:
    return [line for line in GOOD.read_bytes().splitlines() if line and not line.startswith(b"#")]


@pytest.mark.parametrize("line", good_lines(), ids=lambda b: b[:40].decode())
def test_every_sample_parses(line: bytes) -> None:
    parse_syslog(line, CTX)


def test_rfc5424_fields_land_in_the_record() -> None:
    r = parse_syslog(b"<34>1 2026-11-22T03:14:15.003Z dome-plc.lasilla.eso.org dome 1234 ID47 - shutter\xc3\xa9", CTX)
    assert r.ts == datetime(2026, 11, 22, 3, 14, 15, 3000, tzinfo=UTC)
    assert (r.level, r.source, r.host, r.component, r.message) == (
        logging.CRITICAL, "dome", "dome-plc.lasilla.eso.org", "dome", "shutteré")
    assert r.attributes == {"procid": "1234", "msgid": "ID47", "rfc": "5424", "facility": "auth", "severity": "crit"}


def test_rfc5424_structured_data_offsets_and_bom() -> None:
    r = parse_syslog(b'<165>1 2026-11-22T00:14:15.5-03:00 ups1 evntslog - ID47 '
                     b'[ex@32473 iut="3" msg="say \\"hi\\" \\]"][p@1 class="high"] \xef\xbb\xbfon battery', CTX)
    assert r.ts == datetime(2026, 11, 22, 3, 14, 15, 500_000, tzinfo=UTC)
    assert r.attributes["ex@32473.iut"] == "3"
    assert r.attributes["ex@32473.msg"] == 'say "hi" ]'
    assert r.attributes["p@1.class"] == "high"
    assert r.message == "on battery" and r.level == logging.INFO and r.source == "devices"


def test_rfc5424_nil_values_fall_back_to_arrival_time_and_peer() -> None:
    r = parse_syslog(b"<14>1 - - - - - -", CTX)
    assert (r.ts, r.host, r.component, r.message) == (NOW, "192.0.2.50", "", "")


def test_rfc3164_with_tag_pid_and_year_guess() -> None:
    r = parse_syslog(b"<13>Nov 22 03:14:15 dome-plc shutterd[881]: shutter open", CTX)
    assert (r.ts, r.host, r.source, r.component, r.message) == (
        datetime(2026, 11, 22, 3, 14, 15, tzinfo=UTC), "dome-plc", "dome", "shutterd", "shutter open")
    assert r.attributes["procid"] == "881" and r.attributes["rfc"] == "3164"
    assert r.level == logging.INFO  # notice
    december = parse_syslog(b"<13>Dec 31 23:59:59 host tag: last year", CTX)
    assert december.ts.year == 2025


def test_rfc3164_without_header_and_in_latin1() -> None:
    r = parse_syslog(b"<4>kernel: caf\xe9 link down", CTX)
    assert (r.ts, r.host, r.component, r.message, r.level) == (NOW, "192.0.2.50", "kernel", "café link down", 30)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello world", "no <PRI>"),
        (b"", "no <PRI>"),
        (b"<999>1 - - - - - -", "outside 0..191"),
        (b"<34>2 2026-11-22T03:14:15Z h a p m - x", "unsupported syslog version"),
        (b"<34>1 2026-11-22T03:14:15Z h a", "incomplete"),
        (b"<34>1 yesterday h a p m - x", "not RFC 3339"),
        (b"<34>1 2026-11-22T03:14:15 h a p m - x", "no zone"),
        (b"<34>1 2026-11-22T03:14:15Z h a p m [unterminated x", "structured data"),
        (b"<34>1 2026-11-22T03:14:15Z h a p m oops x", "must be '-' or start with"),
        (b"<34>1 2026-11-22T03:14:15Z h a p m - \xff\xfe", "invalid UTF-8"),
        (b"<13>Feb 30 03:14:15 host tag: no such day", "impossible date"),
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SyslogError, match=reason):
        parse_syslog(data, CTX)
    rejected = parse_or_reject(data, CTX, 7, 1000)
    assert isinstance(rejected, Rejected) and rejected.kind is RejectReason.SYSLOG_GARBAGE and rejected.line == 7


def test_oversize_messages_are_refused_before_parsing() -> None:
    rejected = parse_or_reject(b"<13>" + b"x" * 100, CTX, 1, 50)
    assert isinstance(rejected, Rejected) and rejected.kind is RejectReason.OVERSIZE


def test_tcp_framer_handles_both_framings_split_anywhere() -> None:
    stream = b"11 <13>hello a\n<13>line b\n\n14 <13>multi\nline<13>tail c\n"
    for cut in range(len(stream) + 1):
        framer = TcpFramer(max_bytes=100)
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert out == [b"<13>hello a", b"<13>line b", b"<13>multi\nline", b"<13>tail c"], cut


def test_tcp_framer_skips_oversize_frames_and_keeps_the_next() -> None:
    framer = TcpFramer(max_bytes=10)
    out = framer.feed(b"50 " + b"y" * 20) + framer.feed(b"y" * 30 + b"5 <1>ok") + framer.feed(b"z" * 30)
    out += framer.feed(b"zz\n<1>fine\n")
    assert [o.kind if isinstance(o, Rejected) else o for o in out] == [
        RejectReason.OVERSIZE, b"<1>ok", RejectReason.OVERSIZE, b"<1>fine"]


def test_tcp_framer_refuses_a_bad_octet_count() -> None:
    framer = TcpFramer(max_bytes=100)
    out = framer.feed(b"12345678901234 garbage\n<1>next\n")
    assert isinstance(out[0], Rejected) and out[0].kind is RejectReason.SYSLOG_GARBAGE
    assert out[1:] == [b"<1>next"]
