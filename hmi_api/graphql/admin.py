"""GraphQL for administrators: the activity log, read back from the audit records in the log archive."""

from __future__ import annotations

import re
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from hmi_api.graphql.common import Ctx
from skyops.archive.port import LogQuery

# deploy's audit hook writes every user action as a log record of this source and component.
AUDIT_SOURCE, AUDIT_COMPONENT = "hmi", "audit"


@strawberry.type(description="One user action: who, what, when, and its details")
class Activity:
    time: datetime
    user: str
    action: str
    details: JSON


@strawberry.type(description="A page of user actions; pass `nextCursor` back for the next page")
class ActivityPage:
    entries: list[Activity]
    next_cursor: str | None


@strawberry.type
class AdminQuery:
    @strawberry.field(description="User actions (audit records), newest first; filter by user and action prefix")
    async def activity(self, info: Ctx, start: datetime, end: datetime, user: str | None = None,
                       action: str | None = None, limit: int = 200, cursor: str | None = None) -> ActivityPage:
        ctx = info.context
        await ctx.allowed("user.manage")
        if not 1 <= limit <= 5000:
            raise ValueError("limit must be between 1 and 5000")
        who = re.escape(user) if user else r"[^:]+"
        what = re.escape(action) if action else ""
        query = LogQuery(start=start, end=end, sources=(AUDIT_SOURCE,), components=(AUDIT_COMPONENT,),
                         regex=f"^{who}: {what}", limit=limit, cursor=cursor)
        page = await ctx.archive().query_logs(query)
        entries = []
        for r in page.records:
            attrs = dict(r.attributes)
            name, _, act = r.message.partition(": ")
            details = {k: v for k, v in attrs.items() if k not in ("user", "action")}
            entries.append(Activity(time=r.ts, user=attrs.get("user", name), action=attrs.get("action", act),
                                    details=JSON(details)))
        return ActivityPage(entries=entries, next_cursor=page.next_cursor)
