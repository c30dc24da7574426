"""The HMI's GraphQL schema: queries, mutations and subscriptions, each checking the caller's role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime, timedelta

import strawberry
from pydantic import SecretStr, ValidationError
from strawberry.tools import merge_types
from strawberry.types import Info

from alarms.api import AlarmService
from hmi_api.auth import AuthError
from hmi_api.graphql.admin import AdminQuery
from hmi_api.graphql.context import HmiContext
from hmi_api.graphql.convert import alarm, alarm_entries, live_value, log_entry, night_plan, point_value, time_series
from hmi_api.graphql.planning import PlanningMutation, PlanningQuery
from hmi_api.graphql.types import (
    Alarm,
    AlarmEventUpdate,
    AlarmHistoryEntry,
    LiveLogFilter,
    LogFilter,
    LoginResult,
    LogPage,
    LogUpdate,
    NightPlan,
    PointValue,
    TimeSeries,
    User,
    UserChanges,
    UserInput,
)
from hmi_api.graphql.ves import VesMutation, VesQuery
from hmi_api.live import SlowClientError, resumable
from skyops.archive.port import LogQuery
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate, UserUpdate
from skyops.records import parse_level

Ctx = Info[HmiContext, None]


async def _alarm_action(
    info: Ctx,
    permission: str,
    alarm_id: str,
    comment: str,
    act: Callable[[AlarmService, str], Awaitable[object]],
    *,
    audit_action: str | None = None,
    **details: str,
) -> Alarm:
    """Check the role, have the alarm supervisor act (it refuses with the reason), audit, return the new state."""
    ctx = info.context
    user = await ctx.allowed(permission)
    service = ctx.alarm_service()
    result = await act(service, user.username)
    if isinstance(result, datetime):  # shelving answers with the expiry it set
        details["until"] = result.isoformat()
    await ctx.audit(audit_action or permission, alarm=alarm_id, comment=comment, **details)
    return alarm(await service.alarm(alarm_id))


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _friendly(exc: ValidationError) -> ValueError:
    """A pydantic error as one readable line per field, e.g. `password: password must have at least 10 characters`."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
    return ValueError("; ".join(parts))


@strawberry.type
class Query:
    @strawberry.field(description="The logged-in user")
    async def me(self, info: Ctx) -> User:
        return User.of(await info.context.allowed("read"))

    @strawberry.field(description="Every user account (administrators)")
    async def users(self, info: Ctx) -> list[User]:
        await info.context.allowed("user.manage")
        return [User.of(u) for u in await asyncio.to_thread(info.context.services.auth.users.list)]

    @strawberry.field(description="How long a login lasts, in hours")
    async def session_duration_hours(self, info: Ctx) -> float:
        await info.context.allowed("read")
        ttl = await asyncio.to_thread(info.context.services.auth.session_ttl)
        return ttl.total_seconds() / 3600

    @strawberry.field(description="The server's UTC time")
    def server_time(self, info: Ctx) -> datetime:
        return info.context.services.clock.now()

    @strawberry.field(description="Newest value of each point (all points with a value when none are named)")
    async def latest(self, info: Ctx, points: list[str] | None = None) -> list[PointValue]:
        await info.context.allowed("read")
        found = await info.context.archive().latest(points)
        return [point_value(found[p]) for p in sorted(found)]

    @strawberry.field(description="History of points binned on the server to at most `maxPoints` bins each")
    async def time_series(
        self, info: Ctx, points: list[str], start: datetime, end: datetime, max_points: int = 1000
    ) -> list[TimeSeries]:
        await info.context.allowed("read")
        if not 1 <= max_points <= 10_000:
            raise ValueError("maxPoints must be between 1 and 10000")
        if not 1 <= len(points) <= 50:
            raise ValueError("ask for 1 to 50 points at a time")
        series = await info.context.archive().binned_many(points, start, end, max_points)
        return [time_series(series[p]) for p in points]

    @strawberry.field(description="Log records matching a filter, a page at a time")
    async def logs(self, info: Ctx, filter: LogFilter, limit: int = 200, cursor: str | None = None) -> LogPage:
        await info.context.allowed("read")
        query = LogQuery(
            start=filter.start, end=filter.end, min_level=parse_level(filter.min_level),
            sources=_tuple(filter.sources), hosts=_tuple(filter.hosts), components=_tuple(filter.components),
            text=filter.text, regex=filter.regex, newest_first=filter.newest_first, limit=limit, cursor=cursor,
        )
        page = await info.context.archive().query_logs(query)
        return LogPage(entries=[log_entry(r) for r in page.records], next_cursor=page.next_cursor)

    @strawberry.field(description="The newest night plan, with the reason (and alarm) of its last change")
    async def plan(self, info: Ctx) -> NightPlan | None:
        await info.context.allowed("read")
        found = await info.context.live().latest_plan()
        return None if found is None else night_plan(*found)

    @strawberry.field(description="Alarms needing attention (all alarms with activeOnly: false), worst first")
    async def alarms(self, info: Ctx, active_only: bool = True) -> list[Alarm]:
        await info.context.allowed("read")
        return [alarm(v) for v in await info.context.alarm_service().alarms(active_only=active_only)]

    @strawberry.field(description="Alarm transitions and operator actions, newest first")
    async def alarm_history(
        self, info: Ctx, start: datetime, end: datetime, alarm_id: str | None = None, limit: int = 500
    ) -> list[AlarmHistoryEntry]:
        await info.context.allowed("read")
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be between 1 and 10000")
        events = await info.context.archive().alarm_history(start=start, end=end, alarm_id=alarm_id, limit=limit)
        return alarm_entries(events)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Log in; the token authorises HTTP requests and websocket connections")
    async def login(self, info: Ctx, username: str, password: str) -> LoginResult:
        ctx = info.context
        try:
            issued = await asyncio.to_thread(ctx.services.auth.login, username, password, address=ctx.address)
        except AuthError as exc:
            ctx.services.metrics.logins.labels(result="refused").inc()
            await ctx.services.audit(username, "login.failed", {"address": ctx.address, "reason": str(exc)})
            raise
        ctx.services.metrics.logins.labels(result="ok").inc()
        ctx.user = issued.user
        await ctx.audit("login", address=ctx.address)
        return LoginResult(token=issued.token, expires_at=issued.expires_at, user=User.of(issued.user))

    @strawberry.mutation(description="End this session")
    async def logout(self, info: Ctx) -> bool:
        ctx = info.context
        await ctx.allowed("read")
        assert ctx.token is not None
        await asyncio.to_thread(ctx.services.auth.logout, ctx.token)
        await ctx.audit("logout")
        return True

    @strawberry.mutation(description="Open a user account (administrators)")
    async def create_user(self, info: Ctx, user: UserInput) -> User:
        ctx = info.context
        await ctx.allowed("user.manage")
        try:
            data = UserCreate(username=user.username, full_name=user.full_name, group=Group(user.group.value),
                              password=SecretStr(user.password), disabled=user.disabled)
        except ValidationError as exc:
            raise _friendly(exc) from None
        created = await asyncio.to_thread(ctx.services.auth.users.create, data=data, now=ctx.services.clock.now())
        await ctx.audit("user.create", target=created.username, group=created.group.value)
        return User.of(created)

    @strawberry.mutation(description="Change a user account (administrators)")
    async def update_user(self, info: Ctx, username: str, changes: UserChanges) -> User:
        ctx = info.context
        await ctx.allowed("user.manage")
        store = ctx.services.auth.users
        now = ctx.services.clock.now()
        try:
            data = UserUpdate(full_name=changes.full_name, disabled=changes.disabled,
                              group=None if changes.group is None else Group(changes.group.value))
        except ValidationError as exc:
            raise _friendly(exc) from None
        if changes.password is not None:
            try:
                await asyncio.to_thread(store.set_password, username=username, password=changes.password, now=now)
            except ValidationError as exc:
                raise _friendly(exc) from None
        updated = await asyncio.to_thread(store.update, username=username, data=data, now=now)
        await ctx.audit("user.update", target=username,
                        fields=",".join(k for k, v in vars(changes).items() if v is not None))
        return User.of(updated)

    @strawberry.mutation(description="Delete a user account (administrators)")
    async def delete_user(self, info: Ctx, username: str) -> bool:
        ctx = info.context
        await ctx.allowed("user.manage")
        await asyncio.to_thread(ctx.services.auth.users.delete, username=username)
        await ctx.audit("user.delete", target=username)
        return True

    @strawberry.mutation(description="Acknowledge an alarm; refused if its severity rose above `seenSeverity`")
    async def ack_alarm(self, info: Ctx, alarm_id: str, comment: str, seen_severity: str | None = None) -> Alarm:
        return await _alarm_action(info, "alarm.ack", alarm_id, comment, lambda s, user: s.ack(
            alarm_id, user=user, comment=comment, seen=seen_severity))

    @strawberry.mutation(description="Shelve an alarm for some hours (an expiry is mandatory)")
    async def shelve_alarm(self, info: Ctx, alarm_id: str, comment: str, hours: float) -> Alarm:
        if not 0 < hours <= 24 * 7:
            raise ValueError("hours must be more than 0 and at most 168")
        return await _alarm_action(info, "alarm.shelve", alarm_id, comment, lambda s, user: s.shelve(
            alarm_id, user=user, comment=comment, duration=timedelta(hours=hours)))

    @strawberry.mutation(description="Put a shelved alarm back in service")
    async def unshelve_alarm(self, info: Ctx, alarm_id: str, comment: str) -> Alarm:
        return await _alarm_action(info, "alarm.shelve", alarm_id, comment, lambda s, user: s.unshelve(
            alarm_id, user=user, comment=comment), audit_action="alarm.unshelve")

    @strawberry.mutation(description="Add a comment to an alarm's history")
    async def comment_alarm(self, info: Ctx, alarm_id: str, comment: str) -> Alarm:
        return await _alarm_action(info, "alarm.comment", alarm_id, comment, lambda s, user: s.comment(
            alarm_id, user=user, comment=comment))

    @strawberry.mutation(description="Set how long logins last, in hours (administrators)")
    async def set_session_duration(self, info: Ctx, hours: float) -> float:
        ctx = info.context
        admin = await ctx.allowed("settings.manage")
        ttl = await asyncio.to_thread(ctx.services.auth.set_session_ttl, timedelta(hours=hours), by=admin.username)
        await ctx.audit("settings.session_duration", hours=str(hours))
        return ttl.total_seconds() / 3600


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The server's UTC time every `intervalS` seconds (a liveness clock)")
    async def server_time(self, info: Ctx, interval_s: float = 1.0) -> AsyncGenerator[datetime, None]:
        await info.context.allowed("read")
        if not 0.05 <= interval_s <= 3600:
            raise ValueError("intervalS must be between 0.05 and 3600")
        try:
            while True:
                yield info.context.services.clock.now()
                await asyncio.sleep(interval_s)
        finally:
            pass  # nothing held; later subscriptions release their bus subscriptions here


    @strawberry.subscription(description="Alarm transitions and operator actions as they happen; never dropped")
    async def alarm_events(self, info: Ctx, after: str | None = None) -> AsyncGenerator[AlarmEventUpdate, None]:
        ctx = info.context
        await ctx.allowed("read")
        try:
            async for seq, event in resumable(ctx.live().alarms, after):
                (entry,) = alarm_entries([event])
                yield AlarmEventUpdate(seq=seq, event=entry)
        except SlowClientError as exc:
            await ctx.close_slow_client(str(exc))
            raise

    @strawberry.subscription(description="Every new or changed night plan (re-plans included)")
    async def plan_changes(self, info: Ctx, after: str | None = None) -> AsyncGenerator[NightPlan, None]:
        ctx = info.context
        await ctx.allowed("read")
        try:
            async for seq, event in resumable(ctx.live().plans, after, maxsize=100):
                yield night_plan(seq, event)
        except SlowClientError as exc:
            await ctx.close_slow_client(str(exc))
            raise

    @strawberry.subscription(description="The live log tail, filtered on the server")
    async def log_entries(
        self, info: Ctx, filter: LiveLogFilter | None = None, after: str | None = None
    ) -> AsyncGenerator[LogUpdate, None]:
        ctx = info.context
        await ctx.allowed("read")
        f = filter or LiveLogFilter()
        min_level = parse_level(f.min_level)
        sources = None if f.sources is None else set(f.sources)
        text = f.text.lower() if f.text else None
        try:
            async for seq, record in resumable(ctx.live().logs, after):
                if record.level < min_level or (sources is not None and record.source not in sources):
                    continue
                if text is not None and text not in record.message.lower():
                    continue
                yield LogUpdate(seq=seq, entry=log_entry(record))
        except SlowClientError as exc:
            await ctx.close_slow_client(str(exc))
            raise

    @strawberry.subscription(description="Newest values of many points, coalesced (latest wins) at most maxRateHz")
    async def samples(
        self, info: Ctx, points: list[str], max_rate_hz: float = 5.0
    ) -> AsyncGenerator[list[PointValue], None]:
        ctx = info.context
        await ctx.allowed("read")
        if not points or len(points) > 5000:
            raise ValueError("subscribe to 1 to 5000 points")
        if not 0.1 <= max_rate_hz <= 50:
            raise ValueError("maxRateHz must be between 0.1 and 50")
        hub = ctx.live().samples
        client = hub.attach(set(points))
        loop = asyncio.get_running_loop()
        try:
            while True:
                values = await client.take()
                due = loop.time() + 1 / max_rate_hz
                yield [live_value(v) for v in values]
                # The coalescing window (newer values replace older ones), less the time the update took to go out.
                await asyncio.sleep(max(0.0, due - loop.time()))
        finally:
            hub.detach(client)


def build_schema() -> strawberry.Schema:
    # The science, VES and admin resolvers live in their own modules; one schema serves them all.
    query = merge_types("Query", (Query, PlanningQuery, VesQuery, AdminQuery))
    mutation = merge_types("Mutation", (Mutation, PlanningMutation, VesMutation))
    return strawberry.Schema(query=query, mutation=mutation, subscription=Subscription)
