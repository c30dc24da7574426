"""Syslog messages (RFC 5424 and RFC 3164) and TCP framing (RFC 6587) turned into LogRecords."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np

from logging_svc.domain.levels import SYSLOG_SEVERITY, SYSLOG_SEVERITY_NAMES
from logging_svc.domain.rejects import Rejected, RejectReason
from skyops.errors import InvalidRecordError
from skyops.records import LogBatch, LogRecord
from skyops.timeutil import from_us, require_utc, to_us

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
)
_PRI = re.compile(rb"<(\d{1,3})>")
_VERSION = re.compile(rb"\d{1,2} \S")  # RFC 3164 headers start with a month name, never a number
_BOM = b"\xef\xbb\xbf"
_SD_PARAM = re.compile(r'\s*([^= \]"]{1,32})="((?:[^"\\]|\\.)*)"')
_3164_TS = re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) ")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_TAG = re.compile(r"([^\s:\[\]]{1,48})(?:\[([^\]\s]{1,128})\])?: ?")


class SyslogError(InvalidRecordError):
    """A syslog message that cannot be understood; the message says why."""


@dataclass(frozen=True, slots=True)
class SyslogContext:
    """What the listener knows beyond the message: when it arrived, from where, and the source map."""

    now: datetime
    peer_host: str
    default_source: str
    sources_by_host: Mapping[str, str]


def _split_pri(data: bytes) -> tuple[int, int, bytes]:
    m = _PRI.match(data)
    if m is None:
        raise SyslogError("no <PRI> header: a syslog message starts with '<' and a priority number")
    pri = int(m.group(1))
    if pri > 191:
        raise SyslogError(f"priority {pri} is outside 0..191")
    return pri >> 3, pri & 7, data[m.end():]


def _field(token: str, what: str) -> str:
    if token == "-":
        return ""
    if not token.isascii() or not token.isprintable():
        raise SyslogError(f"{what} {token!r} is not printable ASCII")
    return token


def _rfc3339(token: str) -> datetime | None:
    if token == "-":
        return None
    try:
        ts = datetime.fromisoformat(token)
    except ValueError:
        raise SyslogError(f"timestamp {token!r} is not RFC 3339") from None
    if ts.tzinfo is None:
        raise SyslogError(f"timestamp {token!r} has no zone")
    return require_utc(ts)


def _structured_data(text: str) -> tuple[dict[str, str], str]:
    """The SD elements as `sdid.param` attributes, and what follows them."""
    if text.startswith("-"):
        return {}, text[1:]
    attrs: dict[str, str] = {}
    pos = 0
    while pos < len(text) and text[pos] == "[":
        end_id = pos + 1
        while end_id < len(text) and text[end_id] not in " ]":
            end_id += 1
        sd_id = text[pos + 1:end_id]
        if not sd_id or end_id >= len(text):
            raise SyslogError("unterminated structured data element")
        pos = end_id
        while True:
            m = _SD_PARAM.match(text, pos)
            if m is None:
                break
            value = re.sub(r'\\(["\\\]])', r"\1", m.group(2))
            attrs[f"{sd_id}.{m.group(1)}"] = value
            pos = m.end()
        if pos >= len(text) or text[pos] != "]":
            raise SyslogError(f"malformed structured data element [{sd_id} …]")
        pos += 1
    if pos == 0:
        raise SyslogError("structured data must be '-' or start with '['")
    return attrs, text[pos:]


def _parse_5424(rest: bytes) -> tuple[datetime | None, str, str, dict[str, str], str]:
    parts = rest.split(b" ", 6)
    if len(parts) < 7:
        raise SyslogError("RFC 5424 header is incomplete: expected VERSION TIMESTAMP HOST APP PROCID MSGID SD")
    try:
        fields = [p.decode("ascii") for p in parts[:6]]
    except UnicodeDecodeError:
        raise SyslogError("RFC 5424 header is not ASCII") from None
    version, ts_text, host, app, procid, msgid = fields
    if version != "1":
        raise SyslogError(f"unsupported syslog version {version!r}")
    ts = _rfc3339(ts_text)
    sd_and_msg = parts[6]
    # Structured data is ASCII up to the message; the message itself may be UTF-8 after a BOM.
    try:
        sd_text = sd_and_msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SyslogError(f"invalid UTF-8 at byte {exc.start} of the structured data and message") from None
    attrs, msg = _structured_data(sd_text)
    if msg.startswith(" "):
        msg = msg[1:]
    elif msg:
        raise SyslogError("structured data must be followed by a space before the message")
    msg = msg.removeprefix(_BOM.decode("utf-8"))
    attrs.update({k: v for k, v in (("procid", _field(procid, "PROCID")), ("msgid", _field(msgid, "MSGID"))) if v})
    return ts, _field(host, "HOSTNAME"), _field(app, "APP-NAME"), attrs, msg


def _parse_3164(rest: bytes, now: datetime) -> tuple[datetime | None, str, str, dict[str, str], str]:
    # Old devices send whatever 8-bit text they have: UTF-8 when valid, else Latin-1, never refused.
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        text = rest.decode("latin-1")
    ts = None
    host = ""
    m = _3164_TS.match(text)
    if m is not None:
        month = _MONTHS.get(m.group(1))
        if month is None:
            raise SyslogError(f"unknown month {m.group(1)!r} in the RFC 3164 timestamp")
        day, hh, mm, ss = (int(g) for g in m.groups()[1:])
        ts = _year_guess(now, month, day, hh, mm, ss)
        text = text[m.end():]
        host, sep, after = text.partition(" ")
        if sep and not host.endswith(":") and "[" not in host:
            text = after
        else:
            host = ""
    attrs: dict[str, str] = {}
    app = ""
    t = _TAG.match(text)
    if t is not None:
        app = t.group(1)
        if t.group(2):
            attrs["procid"] = t.group(2)
        text = text[t.end():]
    return ts, host, app, attrs, text


def _year_guess(now: datetime, month: int, day: int, hh: int, mm: int, ss: int) -> datetime:
    """RFC 3164 has no year: take the one that puts the message nearest before `now` (device clocks are UTC)."""
    try:
        ts = datetime(now.year, month, day, hh, mm, ss, tzinfo=UTC)
        if ts - now > timedelta(days=1):
            ts = ts.replace(year=now.year - 1)
    except ValueError:
        raise SyslogError(f"impossible date {month:02d}-{day:02d} {hh:02d}:{mm:02d}:{ss:02d}") from None
    return ts


class SyslogFields(NamedTuple):
    """A parsed message in the archive's fields, before it joins a LogBatch (cheaper than a LogRecord)."""

    ts_us: int
    level: int
    source: str
    component: str
    host: str
    message: str
    attributes: dict[str, str]


def parse_syslog_fields(data: bytes, ctx: SyslogContext) -> SyslogFields:
    """One syslog message (either RFC) in the archive's fields; SyslogError says what was wrong."""
    data = data.rstrip(b"\r\n\x00")
    facility, severity, rest = _split_pri(data)
    if _VERSION.match(rest):
        ts, host, app, attrs, msg = _parse_5424(rest)
        attrs["rfc"] = "5424"
    else:
        ts, host, app, attrs, msg = _parse_3164(rest, ctx.now)
        attrs["rfc"] = "3164"
    attrs["facility"] = FACILITIES[facility]
    attrs["severity"] = SYSLOG_SEVERITY_NAMES[severity]
    host = host or ctx.peer_host
    if len(msg) > LogRecord.MAX_MESSAGE:
        raise SyslogError(f"message is {len(msg)} characters long; the limit is {LogRecord.MAX_MESSAGE}")
    if len(app) > 200:
        raise SyslogError(f"APP-NAME is {len(app)} characters long; the limit is 200")
    if len(host) > 255:
        raise SyslogError(f"HOSTNAME is {len(host)} characters long; the limit is 255")
    return SyslogFields(to_us(ts or ctx.now), SYSLOG_SEVERITY[severity],
                        ctx.sources_by_host.get(host, ctx.default_source), app, host, msg, attrs)


def parse_syslog(data: bytes, ctx: SyslogContext) -> LogRecord:
    """One syslog message (either RFC) as a LogRecord; SyslogError says what was wrong."""
    f = parse_syslog_fields(data, ctx)
    try:
        return LogRecord(ts=from_us(f.ts_us), level=f.level, source=f.source, message=f.message, component=f.component,
                         host=f.host, attributes=f.attributes)
    except InvalidRecordError as exc:
        raise SyslogError(str(exc)) from None


def fields_to_batch(fields: Sequence[SyslogFields]) -> LogBatch:
    n = len(fields)
    return LogBatch(
        ts_us=np.fromiter((f.ts_us for f in fields), np.int64, n),
        level=np.fromiter((f.level for f in fields), np.uint8, n),
        source=[f.source for f in fields],
        component=[f.component for f in fields],
        host=[f.host for f in fields],
        message=[f.message for f in fields],
        attributes=[f.attributes for f in fields],
        trace_id=[None] * n,
        ob_id=[None] * n,
    )


def parse_or_reject(data: bytes, ctx: SyslogContext, number: int, max_bytes: int) -> SyslogFields | Rejected:
    """`parse_syslog_fields`, with the refusal as a value (what the listeners count and log)."""
    if len(data) > max_bytes:
        return Rejected(number, RejectReason.OVERSIZE, f"message is {len(data)} bytes long; the limit is {max_bytes}")
    try:
        return parse_syslog_fields(data, ctx)
    except SyslogError as exc:
        return Rejected(number, RejectReason.SYSLOG_GARBAGE, str(exc))


class TcpFramer:
    """Splits a syslog TCP byte stream into messages: octet counting (`LEN SP MSG`) or LF-terminated.

    The framing is chosen per message, as RFC 6587 receivers do: a leading digit means octet
    counting. A frame beyond `max_bytes` is skipped (its bytes are discarded as they arrive) and
    reported once.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversize counted frame still to discard
        self._skip_to_lf = False  # discarding an oversize LF frame up to its end
        self.frames = 0

    def feed(self, data: bytes) -> list[bytes | Rejected]:
        self._buf += data
        out: list[bytes | Rejected] = []
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                if self._skip:
                    return out
            if self._skip_to_lf:
                i = self._buf.find(b"\n")
                if i < 0:
                    self._buf.clear()
                    return out
                del self._buf[: i + 1]
                self._skip_to_lf = False
            while self._buf and self._buf[0] in (0x0A, 0x0D, 0x00):
                del self._buf[:1]
            if not self._buf:
                return out
            if self._buf[:1].isdigit():
                sp = self._buf.find(b" ", 0, 12)
                if sp < 0:
                    if len(self._buf) >= 12 or not self._buf.isdigit():
                        out.append(self._reject("octet count is not a number followed by a space"))
                        self._skip_to_lf = True
                        continue
                    return out
                length_text = bytes(self._buf[:sp])
                if not length_text.isdigit():
                    out.append(self._reject(f"octet count {length_text!r} is not a number"))
                    self._skip_to_lf = True
                    continue
                length = int(length_text)
                if length > self.max_bytes:
                    out.append(self._oversize(length))
                    del self._buf[: sp + 1]
                    self._skip = length
                    continue
                if len(self._buf) < sp + 1 + length:
                    return out
                self.frames += 1
                out.append(bytes(self._buf[sp + 1 : sp + 1 + length]))
                del self._buf[: sp + 1 + length]
            else:
                i = self._buf.find(b"\n")
                if i < 0:
                    if len(self._buf) > self.max_bytes:
                        out.append(self._oversize(len(self._buf)))
                        self._buf.clear()
                        self._skip_to_lf = True
                    return out
                if i > self.max_bytes:
                    out.append(self._oversize(i))
                else:
                    self.frames += 1
                    out.append(bytes(self._buf[:i]))
                del self._buf[: i + 1]

    def _reject(self, reason: str) -> Rejected:
        self.frames += 1
        return Rejected(self.frames, RejectReason.SYSLOG_GARBAGE, reason)

    def _oversize(self, size: int) -> Rejected:
        self.frames += 1
        reason = f"frame is {size}+ bytes long; the limit is {self.max_bytes}"
        return Rejected(self.frames, RejectReason.OVERSIZE, reason)
