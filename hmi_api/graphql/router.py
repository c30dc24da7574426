"""Mounting the schema on FastAPI: graphql-transport-ws only, keep-alive on, token auth at connection_init."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request, WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from hmi_api.auth import AuthError
from hmi_api.graphql.context import HmiContext, HmiServices
from hmi_api.graphql.schema import build_schema


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


class HmiGraphQLRouter(GraphQLRouter[HmiContext, None]):
    """Refuses a websocket whose connection_init carries no valid token (close code 4403)."""

    async def on_ws_connect(self, context: HmiContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        token = params.get("token") or _bearer(str(params.get("Authorization", "")) or None)
        if not isinstance(token, str):
            raise ConnectionRejectionError({"reason": "send {token} in connection_init"})
        try:
            context.user = await asyncio.to_thread(context.services.auth.authenticate, token)
        except AuthError as exc:
            raise ConnectionRejectionError({"reason": str(exc)}) from None
        context.token = token
        return {"user": context.user.username}


def graphql_router(services: HmiServices) -> HmiGraphQLRouter:
    async def get_context(request: Request = None, websocket: WebSocket = None) -> HmiContext:  # type: ignore[assignment]
        conn: Any = request if request is not None else websocket
        address = conn.client.host if conn is not None and conn.client else "unknown"
        token = _bearer(conn.headers.get("authorization")) if conn is not None else None
        ctx = HmiContext(services, token=token, address=address)
        ctx.websocket = websocket
        return ctx

    return HmiGraphQLRouter(
        build_schema(),
        context_getter=get_context,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        keep_alive=True,
        keep_alive_interval=15,
    )
