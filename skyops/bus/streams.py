"""Redis Streams access for every producer and consumer: batches in, batches out, retention, live fan-out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from skyops.errors import BackendUnavailableError, SkyopsError
from skyops.timeutil import Clock, SystemClock, require_utc, to_us

log = logging.getLogger(__name__)

PAYLOAD_FIELD = b"d"
PRODUCED_FIELD = b"t"

# Every embedded client in one process talks to this one in-process server, so the services that
# `skyops up` starts side by side see a single bus, exactly as they would share a Redis server.
EMBEDDED_SERVER_KEY = "skyops-embedded"

# Enough to walk a large pending list in a few round trips without one huge reply.
_RECLAIM_PAGE = 1000
_COUNT_PAGE = 1000
# Roughly what Redis stores per stream entry besides the payload: id, field names, producer time.
_ENTRY_OVERHEAD_BYTES = 48


class NoSuchGroupError(SkyopsError, LookupError):
    """A consumer group (or its stream) does not exist: create it with `Bus.ensure_group`."""


def open_redis(url: str | None) -> aioredis.Redis:
    """A Redis client for `url`, or the embedded in-process server (fakeredis) when `url` is None.

    Replies stay `bytes` (payloads are binary). No connection is made until the first command.
    """
    if url is None:
        # Imported here: only the embedded mode needs fakeredis.
        from fakeredis import FakeServer
        from fakeredis.aioredis import FakeRedis

        server = FakeServer.get_server(EMBEDDED_SERVER_KEY, version=(7, 0), server_type="redis")
        client: aioredis.Redis = FakeRedis(server=server, decode_responses=False)
        return client
    return aioredis.Redis.from_url(url, decode_responses=False)


class StreamRetention(BaseModel):
    """How long a stream keeps entries: the "Mon Queue" retention.

    By default trimming never looks at acknowledgements: whatever is older than `max_age` or beyond
    `max_len` is gone whether it was consumed or not, so choose both bounds so that a backlog behind
    a stopped consumer (a down archive) survives the outage.

    With `keep_unacknowledged`, `max_age` and `max_bytes` are soft: they only trim entries every
    consumer group of the stream has acknowledged, so a backlog is kept however old it gets, and the
    stream can stay a short buffer (the archive is the history). Only the hard caps, `max_len` and
    `hard_max_bytes`, then trim entries a group still needs; the bus counts them in
    `Bus.trimmed_unacknowledged` and logs an error. In that mode the bounds are applied every
    `age_trim_every` publishes, so a stream may exceed them by that many entries in between.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_len: int = Field(gt=0, description="entries kept (approximately: Redis trims whole nodes)")
    max_age: timedelta = Field(description="entries older than this are trimmed")
    age_trim_every: int = Field(
        default=100, gt=0, description="publishes between two age trims of a stream (one XTRIM each)"
    )
    keep_unacknowledged: bool = Field(
        default=False, description="soft bounds never trim what a consumer group has not acknowledged"
    )
    max_bytes: int | None = Field(
        default=None, gt=0,
        description="approximate payload budget: above it, every entry all groups acknowledged is trimmed",
    )
    hard_max_bytes: int | None = Field(
        default=None, gt=0, description="approximate payload cap: above it, the oldest entries go, acknowledged or not"
    )

    @field_validator("max_age")
    @classmethod
    def _positive_age(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("max_age must be positive")
        return value

    @model_validator(mode="after")
    def _ordered_budgets(self) -> StreamRetention:
        if self.max_bytes is not None and not self.keep_unacknowledged:
            raise ValueError("max_bytes is a soft budget and needs keep_unacknowledged; a hard cap is hard_max_bytes")
        if self.max_bytes is not None and self.hard_max_bytes is not None and self.hard_max_bytes < self.max_bytes:
            raise ValueError(f"hard_max_bytes ({self.hard_max_bytes}) must be >= max_bytes ({self.max_bytes})")
        return self

    @property
    def max_age_ms(self) -> int:
        return self.max_age // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: an opaque batch and when its producer sent it."""

    id: str
    payload: bytes
    produced_us: int | None = None

    @property
    def id_ms(self) -> int:
        """Server time (ms since the epoch) at which Redis stored the entry."""
        return entry_id_ms(self.id)


@dataclass(frozen=True, slots=True)
class Recovered:
    """Pending entries taken over by a consumer, and those trimmed away before anyone acknowledged them."""

    entries: list[Entry] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)


def entry_id_ms(entry_id: str) -> int:
    """The millisecond part of a stream entry id (`<ms>-<seq>`)."""
    return int(entry_id.partition("-")[0])


@contextmanager
def _redis_errors(stream: str | None = None, group: str | None = None) -> Iterator[None]:
    """Turn the Redis client's errors that callers act on into the platform's own."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise BackendUnavailableError(f"Redis is unreachable: {exc}") from exc
    except ResponseError as exc:
        if str(exc).startswith("NOGROUP"):
            raise NoSuchGroupError(f"no consumer group {group!r} on stream {stream!r}") from exc
        raise


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    produced = fields.get(PRODUCED_FIELD)
    produced_us: int | None = None
    if produced is not None:
        # A malformed header only costs the latency figure, never the batch.
        with suppress(ValueError):
            produced_us = int(produced)
    return Entry(id=_text(entry_id), payload=fields.get(PAYLOAD_FIELD, b""), produced_us=produced_us)


class Bus:
    """Streams of batches over one Redis client (real server or fakeredis), with an injected clock.

    Entry ids are stamped by the Redis server; the clock stamps the producer time (`t`) that
    consumers turn into latency, and is the default `now` of an explicit `trim`.
    """

    def __init__(self, redis: aioredis.Redis, *, clock: Clock | None = None) -> None:
        self.redis = redis
        self.clock: Clock = clock or SystemClock()
        # Entries published per stream since its last age trim; a stream not seen yet is due at once.
        self._since_age_trim: dict[str, int] = {}
        # Mean size of the entries published per stream (payload and fields): turns byte budgets into lengths.
        self._entry_bytes: dict[str, float] = {}
        # Entries a hard cap trimmed before every consumer group had acknowledged them (approximate).
        self.trimmed_unacknowledged: dict[str, int] = {}

    # -- producing ---------------------------------------------------------------------------------

    def _fields(self) -> dict[bytes, bytes]:
        return {PRODUCED_FIELD: str(to_us(self.clock.now())).encode("ascii")}

    def _xadd_maxlen(self, retention: StreamRetention) -> int | None:
        # Trimming unacknowledged entries is left to the periodic check, which counts what it loses.
        return None if retention.keep_unacknowledged else retention.max_len

    def _note_sizes(self, stream: str, payloads: Sequence[bytes]) -> None:
        size = sum(len(p) for p in payloads) / len(payloads) + _ENTRY_OVERHEAD_BYTES
        old = self._entry_bytes.get(stream)
        self._entry_bytes[stream] = size if old is None else old + (size - old) * 0.1

    async def publish(self, stream: str, payload: bytes, *, retention: StreamRetention) -> str:
        """Append one batch to `stream` and return its entry id; old entries are trimmed on the way."""
        fields = self._fields()
        fields[PAYLOAD_FIELD] = payload
        with _redis_errors(stream):
            entry_id = _text(
                await self.redis.xadd(stream, fields, maxlen=self._xadd_maxlen(retention), approximate=True)  # type: ignore[arg-type]
            )
        self._note_sizes(stream, (payload,))
        await self._age_trim_if_due(stream, retention, published=1, newest_id=entry_id)
        return entry_id

    async def publish_many(self, stream: str, payloads: Sequence[bytes], *, retention: StreamRetention) -> list[str]:
        """Append several batches in order, in one round trip; returns their entry ids."""
        if not payloads:
            return []
        header = self._fields()
        maxlen = self._xadd_maxlen(retention)
        with _redis_errors(stream):
            async with self.redis.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    fields = {**header, PAYLOAD_FIELD: payload}
                    pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
                replies: list[Any] = await pipe.execute()
        ids = [_text(reply) for reply in replies]
        self._note_sizes(stream, payloads)
        await self._age_trim_if_due(stream, retention, published=len(ids), newest_id=ids[-1])
        return ids

    async def _age_trim_if_due(
        self, stream: str, retention: StreamRetention, *, published: int, newest_id: str
    ) -> None:
        # XADD takes MAXLEN or MINID, not both, so age trimming is a separate XTRIM every Nth entry.
        # Its cutoff is measured from the id Redis just stamped, i.e. on the server's clock, which
        # is the clock every entry id was made with: skew in the producer's clock cannot trim
        # young entries.
        count = self._since_age_trim.get(stream, retention.age_trim_every) + published
        if count < retention.age_trim_every:
            self._since_age_trim[stream] = count
            return
        self._since_age_trim[stream] = 0
        await self._apply_retention(stream, retention, cutoff_ms=entry_id_ms(newest_id) - retention.max_age_ms,
                                    exact=False, by_length=False)

    async def _apply_retention(
        self, stream: str, retention: StreamRetention, *, cutoff_ms: int, exact: bool, by_length: bool
    ) -> int:
        """Trim `stream` by `retention` with entries older than `cutoff_ms` due by age; returns how many went.

        The one place retention is applied: every Nth publish and an explicit `trim` both come here.
        """
        if not retention.keep_unacknowledged:
            removed = await self._trim_minid(stream, f"{cutoff_ms}-0", exact=exact)
            if by_length or retention.hard_max_bytes is not None:  # else XADD's MAXLEN keeps the length
                with _redis_errors(stream):
                    removed += await self.redis.xtrim(stream, maxlen=await self._hard_len(stream, retention),
                                                      approximate=not exact)
            return removed
        with _redis_errors(stream):
            length: int = await self.redis.xlen(stream)
        if not length:
            return 0
        floor, needed = await self._unacknowledged_floor(stream, length)
        soft: tuple[int, int] | None = (cutoff_ms, 0)
        budget = retention.max_bytes
        if budget is not None and length * await self._mean_entry_bytes(stream) > budget:
            soft = None  # over the byte budget: whatever every group acknowledged may go
        if floor is not None:
            soft = floor if soft is None else min(soft, floor)
        removed = 0
        if soft is not None:
            removed = await self._trim_minid(stream, f"{soft[0]}-{soft[1]}", exact=exact)
        elif budget is not None:  # no group to protect: down to the budget
            keep = max(1, int(budget // await self._mean_entry_bytes(stream)))
            with _redis_errors(stream):
                removed = await self.redis.xtrim(stream, maxlen=keep, approximate=not exact)
        left = length - removed
        hard = await self._hard_len(stream, retention)
        if left > hard:
            # The safety cap: memory before the backlog. What goes was not acknowledged by every group.
            lost = max(0, min(needed, left) - hard)
            with _redis_errors(stream):
                removed += await self.redis.xtrim(stream, maxlen=hard, approximate=False)
            if lost:
                self.trimmed_unacknowledged[stream] = self.trimmed_unacknowledged.get(stream, 0) + lost
                log.error(
                    "stream %s reached its hard cap (%d entries): about %d entries no consumer group had "
                    "acknowledged yet were trimmed and are lost (%d so far); a consumer is down or too slow",
                    stream, hard, lost, self.trimmed_unacknowledged[stream],
                )
        return removed

    async def _hard_len(self, stream: str, retention: StreamRetention) -> int:
        """`max_len`, or fewer entries when `hard_max_bytes` says so."""
        if retention.hard_max_bytes is None:
            return retention.max_len
        return max(1, min(retention.max_len, int(retention.hard_max_bytes // await self._mean_entry_bytes(stream))))

    async def _mean_entry_bytes(self, stream: str) -> float:
        size = self._entry_bytes.get(stream)
        if size is None:
            # Not published through this bus (an explicit trim): the newest entry stands for the others.
            newest = await self.newest(stream)
            size = (len(newest.payload) if newest is not None else 0) + _ENTRY_OVERHEAD_BYTES
        return size

    async def _unacknowledged_floor(self, stream: str, length: int) -> tuple[tuple[int, int] | None, int]:
        """The smallest entry id some consumer group still needs (None: no group), and the largest backlog.

        A group needs its oldest pending entry and everything after its last delivered one; what lies
        below every group's need has been acknowledged by all of them.
        """
        with _redis_errors(stream):
            groups: list[dict[str, Any]] = await self.redis.xinfo_groups(stream)
        floor: tuple[int, int] | None = None
        needed = 0
        for info in groups:
            pending = int(info["pending"])
            ms, seq = _id_key(_text(info["last-delivered-id"]))
            need = (ms, seq + 1)
            if pending:
                with _redis_errors(stream, _text(info["name"])):
                    summary: Any = await self.redis.xpending(stream, info["name"])
                if summary.get("min") is not None:
                    need = min(need, _id_key(_text(summary["min"])))
            floor = need if floor is None else min(floor, need)
            undelivered = info.get("lag")
            # Unknown after deletions (XINFO says nil): count everything, the cautious side for the loss figure.
            needed = max(needed, pending + (length if undelivered is None else int(undelivered)))
        return floor, needed

    async def _trim_minid(self, stream: str, minid: str, *, exact: bool) -> int:
        if _id_key(minid) <= (0, 0):
            return 0
        with _redis_errors(stream):
            removed: int = await self.redis.xtrim(stream, minid=minid, approximate=not exact)
        return removed

    async def trim(
        self,
        stream: str,
        *,
        retention: StreamRetention,
        now: datetime | None = None,
        exact: bool = False,
    ) -> int:
        """Apply `retention` now (as publishing does every Nth entry); returns how many entries went.

        Removes entries older than `now - max_age` and beyond `max_len` (with `keep_unacknowledged`,
        see `StreamRetention`). `now` defaults to the bus clock (it must agree with the Redis
        server's clock, which stamps the ids). Approximate trimming (the default) only drops whole
        internal nodes, so a few old entries may linger until their node is entirely old;
        `exact=True` costs more and drops every one of them. Nothing younger than the window is ever
        removed by age, acknowledged or not.
        """
        when = require_utc(now if now is not None else self.clock.now(), what="trim time")
        removed = await self._apply_retention(stream, retention, cutoff_ms=to_us(when) // 1000 - retention.max_age_ms,
                                              exact=exact, by_length=True)
        self._since_age_trim[stream] = 0
        return removed

    # -- consuming ---------------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> bool:
        """Create `group` on `stream` (and the stream itself) unless it exists; True when created.

        `start="0"` lets a new group read everything the stream still holds; `"$"` only what comes next.
        """
        with _redis_errors(stream, group):
            try:
                await self.redis.xgroup_create(stream, group, id=start, mkstream=True)
            except ResponseError as exc:
                if str(exc).startswith("BUSYGROUP"):
                    return False
                raise
        return True

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int | None = None
    ) -> list[Entry]:
        """Up to `count` entries never delivered to `group` before, now owned by `consumer`.

        `block_ms` waits up to that long for entries when there are none; None returns at once.
        (Redis reads BLOCK 0 as "forever", which no loop that must notice a stop request wants.)
        """
        _positive("count", count)
        if block_ms is not None:
            _positive("block_ms", block_ms)
        deadline = time.monotonic() + (block_ms or 0) / 1000
        entries = await self._read_new(stream, group, consumer, count=count, block_ms=block_ms)
        # A real server answers a blocking read empty only once the time is up. fakeredis (2.40)
        # answers XREADGROUP BLOCK COUNT at once, which would spin every consumer loop of the
        # embedded mode; so an early empty answer is followed by a wait with XREAD BLOCK, which it
        # does honour, starting after the group's last delivered id so that nothing published in
        # between is waited past.
        while not entries and block_ms is not None and (left_s := deadline - time.monotonic()) > 0.002:
            info = await self._group_info(stream, group)
            with _redis_errors(stream):
                await self.redis.xread(
                    {stream: _text(info["last-delivered-id"])}, count=1, block=max(1, int(left_s * 1000))
                )
            entries = await self._read_new(stream, group, consumer, count=count, block_ms=None)
        return entries

    async def _read_new(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int | None
    ) -> list[Entry]:
        with _redis_errors(stream, group):
            reply: Any = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [_entry(entry_id, fields) for _, items in reply or [] for entry_id, fields in items]

    async def read_own_pending(
        self, stream: str, group: str, consumer: str, *, count: int, after: str = "0"
    ) -> Recovered:
        """The oldest entries `consumer` was given but has not acknowledged (e.g. after its handler failed).

        `after` walks the pending list page by page: only entries with a greater id are returned.
        Pending entries trimmed away in the meantime are acknowledged and reported, not returned.
        """
        _positive("count", count)
        with _redis_errors(stream, group):
            reply: Any = await self.redis.xreadgroup(group, consumer, {stream: after}, count=count)
        recovered = Recovered()
        for _, items in reply or []:
            for entry_id, fields in items:
                if fields:
                    recovered.entries.append(_entry(entry_id, fields))
                else:
                    recovered.deleted_ids.append(_text(entry_id))
        await self._drop_deleted(stream, group, recovered.deleted_ids)
        return recovered

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge entries once their effect is durable; returns how many were pending."""
        if not ids:
            return 0
        with _redis_errors(stream, group):
            acked: int = await self.redis.xack(stream, group, *ids)
        return acked

    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str], *, min_idle_ms: int = 0) -> int:
        """Reset the idle time of entries `consumer` holds on purpose (delivered, not acknowledged yet).

        A consumer that acknowledges late (after a deferred write) touches its entries more often than
        the group's reclaim `min_idle_ms`, so that no other consumer takes them over while it is alive.
        Entries idle for less than `min_idle_ms` are left alone: one another consumer has just claimed
        stays with it. Returns how many entries were touched.
        """
        if not ids:
            return 0
        with _redis_errors(stream, group):
            reply: Any = await self.redis.xclaim(stream, group, consumer, min_idle_ms, list(ids), justid=True)
        return len(reply)

    async def reclaim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int) -> Recovered:
        """Take over up to `count` entries pending in `group` for at least `min_idle_ms` (a dead consumer's).

        Entries that retention trimmed while they were pending cannot be delivered any more; they are
        acknowledged so they do not stay pending forever, logged, and reported in `deleted_ids`.
        """
        _positive("count", count)
        if min_idle_ms < 0:
            raise ValueError(f"min_idle_ms must be >= 0, got {min_idle_ms}")
        recovered = Recovered()
        cursor = "0-0"
        with _redis_errors(stream, group):
            while len(recovered.entries) < count:
                reply: Any = await self.redis.xautoclaim(
                    stream,
                    group,
                    consumer,
                    min_idle_ms,
                    start_id=cursor,
                    count=min(count - len(recovered.entries), _RECLAIM_PAGE),
                )
                cursor = _text(reply[0])
                for entry_id, fields in reply[1]:
                    # Redis 6.2 answered a trimmed entry with nil in place of the entry.
                    if entry_id is None:
                        continue
                    if fields:
                        recovered.entries.append(_entry(entry_id, fields))
                    else:
                        recovered.deleted_ids.append(_text(entry_id))
                if len(reply) > 2:
                    recovered.deleted_ids.extend(_text(i) for i in reply[2])
                if cursor == "0-0":
                    break
        await self._drop_deleted(stream, group, recovered.deleted_ids)
        return recovered

    async def _drop_deleted(self, stream: str, group: str, deleted_ids: list[str]) -> None:
        if not deleted_ids:
            return
        # Redis 7 already dropped them from the pending list in XAUTOCLAIM; older servers and
        # XREADGROUP's history read did not, and acking an id twice is harmless.
        await self.ack(stream, group, deleted_ids)
        log.warning(
            "%d pending entries of stream %s (group %s) were trimmed before being acknowledged "
            "(%s … %s): their batches are lost; raise the stream's retention if this repeats",
            len(deleted_ids),
            stream,
            group,
            deleted_ids[0],
            deleted_ids[-1],
        )

    async def pending_count(self, stream: str, group: str) -> int:
        """Entries delivered to `group` and not acknowledged yet."""
        with _redis_errors(stream, group):
            summary = await self.redis.xpending(stream, group)
        return int(summary["pending"])

    async def lag(self, stream: str, group: str) -> int:
        """The group's backlog: entries not yet delivered plus entries delivered but not acknowledged."""
        info = await self._group_info(stream, group)
        pending = int(info["pending"])
        last_delivered = _text(info["last-delivered-id"])
        with _redis_errors(stream):
            length: int = await self.redis.xlen(stream)
            first: Any = await self.redis.xrange(stream, min="-", max="+", count=1)
        if not first:
            return pending
        if _id_key(last_delivered) < _id_key(_text(first[0][0])):
            # Everything the stream holds is still to be delivered. Redis before 7.4 would count
            # entries trimmed unread as well (entries added minus entries read).
            return pending + length
        undelivered = info.get("lag")
        if undelivered is None:
            # XINFO reports no lag when deletions make it unknowable (or the server predates 7.0):
            # count what lies after the group's last delivered id instead.
            undelivered = await self._count_after(stream, last_delivered)
        return pending + min(int(undelivered), length)

    async def _group_info(self, stream: str, group: str) -> dict[str, Any]:
        with _redis_errors(stream, group):
            try:
                groups: list[dict[str, Any]] = await self.redis.xinfo_groups(stream)
            except ResponseError as exc:
                if "no such key" in str(exc):
                    raise NoSuchGroupError(f"no stream {stream!r} (so no group {group!r})") from exc
                raise
        for info in groups:
            if _text(info["name"]) == group:
                return info
        raise NoSuchGroupError(f"no consumer group {group!r} on stream {stream!r}")

    async def _count_after(self, stream: str, last_id: str) -> int:
        total = 0
        start = f"({last_id}"
        with _redis_errors(stream):
            while True:
                items: Any = await self.redis.xrange(stream, min=start, max="+", count=_COUNT_PAGE)
                total += len(items)
                if len(items) < _COUNT_PAGE:
                    return total
                start = f"({_text(items[-1][0])}"

    async def length(self, stream: str) -> int:
        """Entries the stream holds now (0 for a stream that does not exist)."""
        with _redis_errors(stream):
            n: int = await self.redis.xlen(stream)
        return n

    async def tail(self, stream: str, after: str, *, count: int, block_ms: int | None = None) -> list[Entry]:
        """Entries after id `after` ("$" = from now on), outside any consumer group: for live readers."""
        _positive("count", count)
        if block_ms is not None:
            _positive("block_ms", block_ms)
        with _redis_errors(stream):
            reply: Any = await self.redis.xread({stream: after}, count=count, block=block_ms)
        return [_entry(eid, fields) for _, entries in (reply or []) for eid, fields in entries]

    async def range_after(self, stream: str, after: str, *, count: int) -> list[Entry]:
        """Entries strictly after id `after`, oldest first: a reconnecting reader's backlog."""
        _positive("count", count)
        with _redis_errors(stream):
            reply: Any = await self.redis.xrange(stream, min=f"({after}", max="+", count=count)
        return [_entry(eid, fields) for eid, fields in reply]

    async def newest(self, stream: str) -> Entry | None:
        """The newest entry, or None for an empty or missing stream."""
        with _redis_errors(stream):
            reply: Any = await self.redis.xrevrange(stream, count=1)
        return _entry(reply[0][0], reply[0][1]) if reply else None

    async def last_id(self, stream: str) -> str:
        """The newest entry id ("0-0" for an empty or missing stream): where a live reader starts."""
        newest = await self.newest(stream)
        return "0-0" if newest is None else newest.id

    def latency_us(self, entry: Entry) -> int | None:
        """Microseconds from the producer sending `entry` until now, on the bus clock."""
        if entry.produced_us is None:
            return None
        return to_us(self.clock.now()) - entry.produced_us

    # -- live fan-out ------------------------------------------------------------------------------

    async def broadcast(self, channel: str, payload: bytes) -> int:
        """Send `payload` to whoever listens on `channel` now (no history); returns how many did."""
        with _redis_errors():
            receivers: int = await self.redis.publish(channel, payload)
        return receivers

    async def subscribers(self, channel: str) -> int:
        """How many connections listen on `channel` now."""
        with _redis_errors():
            reply = await self.redis.pubsub_numsub(channel)
        return sum(int(n) for _, n in reply)

    async def subscribe(self, channel: str, *, ready: asyncio.Event | None = None) -> AsyncIterator[bytes]:
        """Every payload broadcast on `channel` from the moment the subscription is active.

        An async generator: close it (`contextlib.aclosing`) or cancel its consumer to unsubscribe.
        Pub/sub keeps no history, so `ready` is set once Redis has confirmed the subscription: what
        is broadcast after that is received.
        """
        pubsub = self.redis.pubsub()
        try:
            with _redis_errors():
                await pubsub.subscribe(channel)
            while True:
                with _redis_errors():
                    message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "message":
                    yield message["data"]
                elif message["type"] == "subscribe" and ready is not None:
                    ready.set()
        finally:
            # The connection may be what failed; unsubscribing is then moot, closing still frees it.
            with suppress(RedisError, OSError):
                await pubsub.unsubscribe(channel)
            await pubsub.aclose()  # type: ignore[no-untyped-call]


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
