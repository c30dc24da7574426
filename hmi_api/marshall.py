"""The Marshall REST API (SOXS scheduler semantics) over the planner's operations, authenticated by key."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from planner.marshall import (
    CreateAutoObBody,
    DeleteObBody,
    FollowUpBody,
    MarshallApi,
    MarshallReply,
    UpdateMagnitudeBody,
    fail,
)

PREFIX = "/marshall/v1"
KEY_HEADER = "X-Marshall-Key"


def _reply(reply: MarshallReply) -> JSONResponse:
    return JSONResponse(reply.model_dump(), status_code=reply.http_status)


ObChanged = Callable[[int, str], Awaitable[object]]


def marshall_router(api: MarshallApi, keys: Sequence[SecretStr], *, on_change: ObChanged | None = None) -> APIRouter:
    """The SOXS Marshall operations; every call needs one of `keys` in the X-Marshall-Key header.

    `on_change(ob_id, reason)` is awaited after an OB was deleted or its magnitude (so its exposure) changed, so the
    night's plan can follow (see `hmi_api.obchanges.replan_if_planned`)."""
    secrets = [k.get_secret_value().encode() for k in keys]

    async def changed(reply: MarshallReply, why: str) -> JSONResponse:
        if on_change is not None and reply.http_status < 300:
            for row in reply.data.get("payload", []):
                await on_change(int(row["OB_ID"]), f"OB {row['OB_ID']} {why} through the Marshall API")
        return _reply(reply)

    def require_key(key: Annotated[str | None, Header(alias=KEY_HEADER)] = None) -> None:
        # Compare against every key in constant time: the response time says nothing about near misses.
        if key is None or not any(hmac.compare_digest(key.encode(), s) for s in secrets):
            raise HTTPException(status_code=401, detail=f"a valid {KEY_HEADER} header is required")

    router = APIRouter(prefix=PREFIX, tags=["marshall"], dependencies=[Depends(require_key)],
                       responses={401: {"description": "missing or wrong key"}})
    doc = {"model": MarshallReply}
    responses: dict[int | str, dict[str, Any]] = {
        201: doc, 200: doc, 404: doc, 409: doc, 422: doc,
    }

    @router.post("/createAutoOB", status_code=201, responses=responses,
                 summary="Create a classification OB for a transient brighter than 19.5 mag, observable tonight")
    async def create_auto_ob(body: CreateAutoObBody) -> JSONResponse:
        return _reply(await asyncio.to_thread(api.create_auto_ob, body.model_dump(by_alias=True)))

    @router.post("/updateAutoOBMagnitude", responses=responses,
                 summary="Update an auto OB's magnitude (and so its exposure time)")
    async def update_auto_ob_magnitude(body: UpdateMagnitudeBody) -> JSONResponse:
        return await changed(await asyncio.to_thread(api.update_auto_ob_magnitude, body.model_dump(by_alias=True)),
                             "magnitude updated")

    @router.post("/createFollowUpOB", status_code=201, responses=responses,
                 summary="Create a follow-up OB with a fine-grained instrument setup")
    async def create_follow_up_ob(body: FollowUpBody) -> JSONResponse:
        return _reply(await asyncio.to_thread(api.create_follow_up_ob, body.model_dump(by_alias=True)))

    @router.post("/deleteOB", responses=responses, summary="Delete an OB by its id")
    async def delete_ob(body: DeleteObBody) -> JSONResponse:
        return await changed(await asyncio.to_thread(api.delete_ob, body.model_dump(by_alias=True)), "deleted")

    @router.post("/autoCleanOBs", responses=responses,
                 summary="Expire auto OBs that stayed unobserved for three weeks")
    async def auto_clean_obs() -> JSONResponse:
        return _reply(await asyncio.to_thread(api.auto_clean_obs))

    @router.get("/obMarshallShort", responses=responses, summary="Every OB in the Marshall's short form")
    async def ob_marshall_short() -> JSONResponse:
        return _reply(await asyncio.to_thread(api.ob_marshall_short))

    return router


def install_marshall_errors(app: FastAPI) -> None:
    """Malformed Marshall requests get the SOXS envelope (status 0, HTTP 422, the fields at fault)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if not request.url.path.startswith(PREFIX):
            return await request_validation_exception_handler(request, exc)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in exc.errors()
        )
        return _reply(fail(422, problems))

    app.add_exception_handler(RequestValidationError, handler)
