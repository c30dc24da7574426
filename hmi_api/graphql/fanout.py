"""Shared live fan-out: identical subscriptions run once, and each update is executed and encoded once for all.

strawberry runs a subscription's resolver, executes its selection and encodes the JSON once per client per event;
with 200 operator screens subscribed to the same alarm feed that is 200 identical executions per alarm. Here the
first client of a (query, variables, operation) starts one *group* that runs the subscription once; every later
client with the same operation joins it and receives the same pre-encoded payload behind its own operation id.

A subscription that replays history (`after` set) starts a private group, since a later joiner would miss the
backlog; when `after` is a variable it also joins the live group of the same subscription (`after` null) and switches
to it once the replay has caught up, so screens that reconnect after a restart end up shared again.
A member's queue is bounded: feeds that are never dropped (alarms, logs, plans) end the member with `slow` on
overflow (the websocket is closed with 4409, the client re-reads the snapshot); coalesced feeds (samples) merge a
lagging member's pending updates, newest value per point wins.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    NonNullTypeNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    parse,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError

from hmi_api.live import SlowClientError, id_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedFeed:
    """A subscription field that may be shared: the permission its resolver checks, and its overflow policy."""

    permission: str
    coalesce: bool = False  # True: a lagging client gets merged updates (latest wins) instead of being cut off


# The root subscription fields that depend only on their arguments (not on who asks), so one run serves everyone.
SHARED_FEEDS: Mapping[str, SharedFeed] = {
    "alarmEvents": SharedFeed("read"),
    "logEntries": SharedFeed("read"),
    "planChanges": SharedFeed("read"),
    "samples": SharedFeed("read", coalesce=True),
}
_private = itertools.count()
LIVE_FANOUT = "live_fanout"  # key of the app's SharedFanout in HmiServices.extras (for /metrics)


@dataclass(frozen=True)
class GroupKey:
    query: str
    variables: str
    operation_name: str | None
    private: int | None  # set for replays: nobody else may join


@dataclass(frozen=True)
class Placement:
    """Where an operation runs: its group, and for a replay the live group it catches up with (if it can)."""

    key: GroupKey
    feed: str
    twin: GroupKey | None = None
    twin_variables: dict[str, Any] | None = None


def _canonical(variables: Mapping[str, Any], nullable_without_default: set[str]) -> str | None:
    # A variable sent as null and one left out mean the same when it has no default: one group for both.
    kept = {k: v for k, v in variables.items() if not (v is None and k in nullable_without_default)}
    try:
        return json.dumps(kept, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def placement(query: object, variables: Mapping[str, Any] | None, operation_name: object) -> Placement | None:
    """The group an operation can join, or None when it must run on its own.

    Anything unusual (a syntax error, several root fields, directives, a query or mutation) is left to strawberry's
    own per-operation path, so its errors and close codes stay exactly the protocol's.
    """
    if not isinstance(query, str) or not (operation_name is None or isinstance(operation_name, str)):
        return None
    if variables is not None and not isinstance(variables, Mapping):
        return None
    try:
        doc = parse(query)
    except GraphQLError:
        return None
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        ops = [op for op in ops if op.name is not None and op.name.value == operation_name]
    if len(ops) != 1 or ops[0].operation != OperationType.SUBSCRIPTION or ops[0].directives:
        return None
    selections = ops[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode) or selections[0].directives:
        return None
    root = selections[0]
    if root.name.value not in SHARED_FEEDS:
        return None
    values = dict(variables or {})
    defs = ops[0].variable_definitions or ()
    nullable = {d.variable.name.value for d in defs if not isinstance(d.type, NonNullTypeNode)}
    loose = {d.variable.name.value for d in defs if d.default_value is None} & nullable
    canonical = _canonical(values, loose)
    if canonical is None:
        return None
    after = next((a.value for a in root.arguments or () if a.name.value == "after"), None)
    if after is None or isinstance(after, NullValueNode):
        return Placement(GroupKey(query, canonical, operation_name, None), root.name.value)
    if not isinstance(after, VariableNode):  # an inline sequence: a replay with no live twin to join later
        return Placement(GroupKey(query, canonical, operation_name, next(_private)), root.name.value)
    name = after.name.value
    if values.get(name) is None:
        return Placement(GroupKey(query, canonical, operation_name, None), root.name.value)
    live = {**values, name: None}
    twin_canonical = _canonical(live, loose)
    twin = None
    if twin_canonical is not None and name in nullable:  # `$a: String!` has no live form to catch up with
        twin = GroupKey(query, twin_canonical, operation_name, None)
    return Placement(GroupKey(query, canonical, operation_name, next(_private)), root.name.value, twin,
                     live if twin is not None else None)


@dataclass
class Frame:
    """One update: the JSON of its `next` payload, shared by every member, and its data for coalescing merges."""

    payload: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class End:
    """How a group's stream ended: `complete`, `slow` (the group fell behind the bus) or a pre-execution error."""

    kind: str
    reason: str = ""
    result: PreExecutionError | None = None


def merge_latest(old: Frame, new: Frame, encode: Callable[[object], str]) -> Frame:
    """A lagging client's pending update merged with a newer one: per point, the newest value wins."""
    if old.data is None or new.data is None or len(new.data) != 1 or old.data.keys() != new.data.keys():
        return new
    (name, items), = new.data.items()
    olds = old.data[name]
    if not isinstance(items, list) or not isinstance(olds, list):
        return new
    if not all(isinstance(i, dict) and "point" in i for i in itertools.chain(olds, items)):
        return new  # without the point in the selection, updates cannot be told apart: the newest one stands
    merged = {i["point"]: i for i in olds}
    merged.update((i["point"], i) for i in items)
    data = {name: [merged[p] for p in sorted(merged)]}
    return Frame(encode({"data": data}), data)


class Member:
    """One client operation in a group: a bounded queue of frames it has not been sent yet."""

    def __init__(self, *, coalesce: bool, maxsize: int, encode: Callable[[object], str]) -> None:
        self.coalesce = coalesce
        self.maxsize = maxsize
        self._encode = encode
        self._frames: deque[Frame] = deque()
        self._end: End | None = None
        self._ready = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._frames)

    @property
    def ended(self) -> End | None:
        return self._end

    def offer(self, frame: Frame) -> None:
        if self._end is not None:
            return
        if self.coalesce and self._frames:
            self._frames[-1] = merge_latest(self._frames[-1], frame, self._encode)
        elif len(self._frames) >= self.maxsize:
            self._frames.clear()  # nothing more will be sent to this client: free the memory at once
            self._end = End("slow", "this client fell behind the live stream; re-read the snapshot and resubscribe")
        else:
            self._frames.append(frame)
        self._ready.set()

    def finish(self, end: End) -> None:
        if self._end is None:
            self._end = end
        self._ready.set()

    async def next(self) -> Frame | End:
        """The next frame to send; an End after the last one (a slow client ends at once, skipping the rest)."""
        while True:
            if self._end is not None and (self._end.kind == "slow" or not self._frames):
                return self._end
            if self._frames:
                return self._frames.popleft()
            self._ready.clear()
            await self._ready.wait()


def frame_seq(frame: Frame) -> tuple[int, int] | None:
    """The stream sequence an update carries (its `seq` field), or None when the selection has none."""
    if frame.data is None or len(frame.data) != 1:
        return None
    (value,) = frame.data.values()
    seq = value.get("seq") if isinstance(value, dict) else None
    if not isinstance(seq, str):
        return None
    try:
        return id_key(seq)
    except ValueError:
        return None


class CatchUp:
    """A replaying client: its own replay until that reaches what the live group has buffered, then the live group.

    The live member joins when the client subscribes and keeps every update from then on; once the replay delivers
    an update at or past the first buffered one, nothing is missing and the replay is dropped. Items of one bus
    entry share a sequence, so the buffered ones the replay already delivered are skipped by count.
    """

    def __init__(self, replay: Member, live: Member, *, leave_replay: Callable[[], None],
                 leave_live: Callable[[], None]) -> None:
        self.replay = replay
        self.live: Member | None = live
        self._leave_replay = leave_replay
        self._leave_live = leave_live
        self._last: tuple[int, int] | None = None
        self._same = 0  # updates of sequence `_last` already delivered
        self.caught_up = False

    async def next(self) -> Frame | End:
        if self.caught_up:
            assert self.live is not None
            return await self.live.next()
        item = await self.replay.next()
        if isinstance(item, End) or self.live is None:
            return item
        seq = frame_seq(item)
        if seq is None:
            self._give_up()
            return item
        self._same = self._same + 1 if seq == self._last else 1
        self._last = seq
        self._try_switch()
        return item

    def _give_up(self) -> None:
        """Stay on the replay (the live group could not buffer, or updates carry no sequence)."""
        if self.live is not None:
            self.live = None
            self._leave_live()

    def _try_switch(self) -> None:
        live = self.live
        assert live is not None and self._last is not None
        if live.ended is not None:
            self._give_up()
            return
        if not live._frames:
            return
        first = frame_seq(live._frames[0])
        if first is None:
            self._give_up()
            return
        if first > self._last:
            return  # the replay has not reached the live group's first update yet
        skip = self._same
        while live._frames:
            seq = frame_seq(live._frames[0])
            if seq is None or seq > self._last or (seq == self._last and skip == 0):
                break
            if seq == self._last:
                skip -= 1
            live._frames.popleft()
        self.caught_up = True
        self._leave_replay()


StreamFactory = Callable[[], Awaitable[AsyncIterator[Any]]]
Start = Callable[[Mapping[str, Any] | None], Awaitable[AsyncIterator[Any]]]


class Delivery:
    """What one client operation receives: a member of one group, or a replay catching up with a live group."""

    def __init__(self, source: Member | CatchUp, close: Callable[[], None]) -> None:
        self.source = source
        self._close = close

    async def next(self) -> Frame | End:
        return await self.source.next()

    def close(self) -> None:
        self._close()


@dataclass
class Group:
    key: GroupKey
    feed: str
    members: set[Member] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class SharedFanout:
    """The groups of one app; `join` starts a group's single run when its first member arrives."""

    maxsize = 1000  # updates a client may lag behind before it is cut off (never-dropped feeds)

    def __init__(self, *, maxsize: int | None = None) -> None:
        if maxsize is not None:
            self.maxsize = maxsize
        self._groups: dict[GroupKey, Group] = {}

    def clients(self, feed: str) -> int:
        """How many client operations receive `feed` (the taps count groups, not clients)."""
        return sum(len(g.members) for g in self._groups.values() if g.feed == feed)

    def groups_of(self, feed: str) -> int:
        """How many shared runs serve `feed` (each is one subscriber of its bus tap)."""
        return sum(1 for g in self._groups.values() if g.feed == feed)

    @property
    def groups(self) -> int:
        return len(self._groups)

    def join(self, key: GroupKey, feed: str, start: StreamFactory, encode: Callable[[object], str]) -> Member:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(key, feed)
            group.task = asyncio.create_task(self._pump(group, start, encode), name=f"hmi-shared-{feed}")
        member = Member(coalesce=SHARED_FEEDS[feed].coalesce, maxsize=self.maxsize, encode=encode)
        group.members.add(member)
        return member

    def subscribe(self, where: Placement, start: Start, variables: Mapping[str, Any] | None,
                  encode: Callable[[object], str]) -> Delivery:
        """Join the operation's group (a replay also joins its live twin, to switch over once caught up)."""
        key, twin = where.key, where.twin
        own = self.join(key, where.feed, lambda: start(variables), encode)
        if twin is None:
            return Delivery(own, lambda: self.leave(key, own))
        live = self.join(twin, where.feed, lambda: start(where.twin_variables), encode)

        def close() -> None:
            self.leave(key, own)
            self.leave(twin, live)

        catch_up = CatchUp(own, live, leave_replay=lambda: self.leave(key, own),
                           leave_live=lambda: self.leave(twin, live))
        return Delivery(catch_up, close)

    def leave(self, key: GroupKey, member: Member) -> None:
        group = self._groups.get(key)
        if group is None:
            return
        group.members.discard(member)
        if not group.members:
            del self._groups[key]
            if group.task is not None:
                group.task.cancel()  # closes the stream: the resolver's `finally` detaches from the bus

    async def _pump(self, group: Group, start: StreamFactory, encode: Callable[[object], str]) -> None:
        end = End("complete")
        try:
            stream = await start()
            try:
                first = True
                async for result in stream:
                    if first and isinstance(result, PreExecutionError):
                        end = End("error", result=result)
                        break
                    first = False
                    if not isinstance(result, ExecutionResult):
                        continue  # incremental delivery is not used by these feeds
                    if result.errors and any(isinstance(e.original_error, SlowClientError) for e in result.errors):
                        end = End("slow", str(result.errors[0].message))
                        break
                    payload: dict[str, object] = {"data": result.data}
                    if result.errors:
                        payload["errors"] = [e.formatted for e in result.errors]
                    if result.extensions:
                        payload["extensions"] = result.extensions
                    # Only plain data can be merged for a lagging client; errors and extensions go out as they are.
                    frame = Frame(encode(payload), None if len(payload) > 1 else result.data)
                    for member in list(group.members):
                        member.offer(frame)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        except Exception:  # a bug in a resolver must end its clients' operations, not leave them waiting
            log.exception("shared %s subscription failed", group.feed)
        finally:
            if self._groups.get(group.key) is group:
                del self._groups[group.key]
            for member in list(group.members):
                member.finish(end)
