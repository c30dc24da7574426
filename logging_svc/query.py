"""Public log queries for engineers, the CLI and the HMI: search, page through, follow live, export as JSON lines."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import TextIO

from logging_svc.domain.jsonlines import record_to_line
from skyops import codec, streams
from skyops.archive.port import Archive, LogPage, LogQuery
from skyops.bus import Bus
from skyops.errors import CodecError, InvalidRecordError
from skyops.records import LogRecord, parse_level

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `2d`, `1w` as a duration; anything else is refused with the accepted forms."""
    m = _SINCE.match(text)
    if m is None:
        raise InvalidRecordError(f"cannot read {text!r} as a duration; use e.g. 90s, 15m, 1h, 2d or 1w")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])


def make_query(
    *,
    start: datetime,
    end: datetime,
    min_level: int | str = 0,
    sources: Sequence[str] | None = None,
    hosts: Sequence[str] | None = None,
    components: Sequence[str] | None = None,
    text: str | None = None,
    regex: str | None = None,
    newest_first: bool = True,
    limit: int = 500,
    cursor: str | None = None,
) -> LogQuery:
    """A validated LogQuery from plain arguments (level by name or number; empty filters mean "any")."""
    return LogQuery(
        start=start,
        end=end,
        min_level=parse_level(min_level),
        sources=tuple(sources) if sources else None,
        hosts=tuple(hosts) if hosts else None,
        components=tuple(components) if components else None,
        text=text or None,
        regex=regex or None,
        newest_first=newest_first,
        limit=limit,
        cursor=cursor,
    )


async def search_logs(archive: Archive, query: LogQuery) -> LogPage:
    """One page of matching records; pass `next_cursor` back as `cursor` for the next."""
    return await archive.query_logs(query)


async def iter_logs(archive: Archive, query: LogQuery, *, max_records: int | None = None) -> AsyncIterator[LogRecord]:
    """Every matching record in the query's order, page after page."""
    sent = 0
    q = query
    while True:
        page = await archive.query_logs(q)
        for r in page.records:
            if max_records is not None and sent >= max_records:
                return
            yield r
            sent += 1
        if page.next_cursor is None:
            return
        q = LogQuery(start=q.start, end=q.end, min_level=q.min_level, sources=q.sources, hosts=q.hosts,
                     components=q.components, text=q.text, regex=q.regex, newest_first=q.newest_first,
                     limit=q.limit, cursor=page.next_cursor)


async def export_jsonl(archive: Archive, query: LogQuery, out: TextIO) -> int:
    """Write every matching record to `out` as one JSON object per line; returns how many."""
    n = 0
    async for r in iter_logs(archive, query):
        out.write(record_to_line(r))
        out.write("\n")
        n += 1
    return n


def live_matcher(query: LogQuery) -> Callable[[LogRecord], bool]:
    """The query's filters (not its time range) as a predicate over records arriving live."""
    return query.matches


async def follow_logs(
    bus: Bus,
    matches: Callable[[LogRecord], bool],
    *,
    channel: str = streams.LIVE_LOGS,
    ready: asyncio.Event | None = None,
) -> AsyncGenerator[LogRecord, None]:
    """Records as the log consumer archives them (the live tail), filtered by `matches`.

    Close the generator (or cancel its consumer) to unsubscribe. Undecodable payloads are skipped.
    """
    payloads = bus.subscribe(channel, ready=ready)
    try:
        async for payload in payloads:
            try:
                records = codec.decode_logs(payload)
            except CodecError:
                continue
            for r in records:
                if matches(r):
                    yield r
    finally:
        # Closing the subscription now, not at garbage collection, frees its Redis connection.
        close = getattr(payloads, "aclose", None)
        if close is not None:
            await close()
