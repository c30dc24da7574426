"""Mounting the schema on FastAPI: graphql-transport-ws only, keep-alive on, token auth at connection_init."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import Request, WebSocket
from starlette.websockets import WebSocketDisconnect
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import CompleteMessage, SubscribeMessage
from strawberry.types.unset import UnsetType

from hmi_api.auth import AuthError, PermissionDeniedError, require
from hmi_api.graphql.context import HmiContext, HmiServices
from hmi_api.graphql.fanout import LIVE_FANOUT, SHARED_FEEDS, End, Placement, SharedFanout, placement
from hmi_api.graphql.schema import build_schema


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


class HmiTransportWSHandler(BaseGraphQLTransportWSHandler[HmiContext, None]):
    """graphql-transport-ws, with identical live subscriptions served by one shared run (see `fanout`)."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        where = self._shareable(message)
        if where is None:
            await super().handle_subscribe(message)
            return
        operation: Operation[HmiContext, None] = Operation(self, message["id"], message["payload"]["query"],
                                                           message["payload"].get("variables"),
                                                           message["payload"].get("operationName"))
        operation.task = asyncio.create_task(self._run_shared(operation, where))
        operation.task.add_done_callback(self._task_done)
        self.operations[message["id"]] = operation

    def _shareable(self, message: SubscribeMessage) -> Placement | None:
        """The group to join, or None for strawberry's own path (also for every protocol error it reports)."""
        live = self.context.services.live
        if live is None or not live.shared_fanout or not isinstance(self.view, HmiGraphQLRouter):
            return None
        if not self.connection_acknowledged or message.get("id") in self.operations:
            return None
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.operations) >= limit:
            return None
        payload: Any = message.get("payload")
        if not isinstance(payload, dict):
            return None
        found = placement(payload.get("query"), payload.get("variables"), payload.get("operationName"))
        if found is None:
            return None
        try:
            require(self.context.user, SHARED_FEEDS[found.feed].permission)
        except (AuthError, PermissionDeniedError):
            return None  # the resolver refuses it on strawberry's path, with the usual error message
        return found

    def _group_context(self) -> HmiContext:
        """The shared run's context: this client's user, but no websocket (a slow group closes every member)."""
        ctx = HmiContext(self.context.services, token=self.context.token, address=self.context.address)
        ctx.user = self.context.user
        ctx.connection_params = self.context.connection_params
        return ctx

    async def _run_shared(self, operation: Operation[HmiContext, None], where: Placement) -> None:
        assert isinstance(self.view, HmiGraphQLRouter)
        fanout = self.view.fanout
        ctx = self._group_context()
        encode = self.view.encode_json_string

        async def start(variables: Any) -> Any:
            return await self.schema.stream(operation.query, variable_values=variables, context_value=ctx,
                                            root_value=self.root_value, operation_name=operation.operation_name)

        delivery = fanout.subscribe(where, start, operation.variables, encode)
        prefix = f'{{"id":{encode(operation.id)},"type":"next","payload":'
        try:
            while True:
                item = await delivery.next()
                if isinstance(item, End):
                    await self._end(operation, item)
                    return
                if operation.completed:
                    return
                await self._send_text(prefix + item.payload + "}")
        except _Disconnected:
            return
        finally:
            delivery.close()

    async def _end(self, operation: Operation[HmiContext, None], end: End) -> None:
        if end.kind == "slow":
            # Alarms are never dropped: a client that cannot keep up is disconnected and re-reads the snapshot.
            await self.websocket.close(code=4409, reason=end.reason[:120])
        elif end.kind == "error" and end.result is not None:
            with contextlib.suppress(Exception):  # it closes the socket (4400) for errors the protocol says so
                await self._handle_pre_execution_error(operation, end.result)
        else:
            await operation.send_operation_message(CompleteMessage(id=operation.id, type="complete"))

    async def _send_text(self, text: str) -> None:
        ws = getattr(self.websocket, "ws", None)
        if not isinstance(ws, WebSocket):
            raise _Disconnected
        try:
            await ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise _Disconnected from None


class _Disconnected(Exception):
    """The client went away while an update was being sent."""


class HmiGraphQLRouter(GraphQLRouter[HmiContext, None]):
    """Refuses a websocket whose connection_init carries no valid token (close code 4403); shares live feeds."""

    graphql_transport_ws_handler_class = HmiTransportWSHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fanout = SharedFanout()

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

    router = HmiGraphQLRouter(
        build_schema(),
        context_getter=get_context,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        keep_alive=True,
        keep_alive_interval=15,
    )
    # The live taps count shared runs, not clients: `fanout.clients(field)` says how many clients each feed has.
    services.extras[LIVE_FANOUT] = router.fanout
    return router
