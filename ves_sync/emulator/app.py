"""The P2 emulator's HTTP face: the P2 REST paths p2api calls, with P2's ETag, status and error-body rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ves_sync.emulator.state import P2ApiError, P2State

API_PREFIX = "/api/v1"
LOGIN_PATH = "/api/login"
_FILENAME = re.compile(r'filename="([^"]+)"')
_NIGHT = r"^\d{4}-\d{2}-\d{2}$"

Auth = Annotated[str | None, Header(alias="Authorization")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]
Night = Annotated[str, Query(pattern=_NIGHT, description="YYYY-MM-DD")]


# Async, though they never wait: FastAPI would run a plain function in its thread pool, a hop per request.
async def _state(request: Request) -> P2State:
    state: P2State = request.app.state.p2
    return state


async def _user(request: Request, authorization: Auth = None) -> int:
    return (await _state(request)).authenticate(authorization)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise P2ApiError(400, f"request body is not valid JSON: {exc}") from None


# Routes declare these and get them resolved in this order: the caller is authenticated before the body is read.
State = Annotated[P2State, Depends(_state)]
User = Annotated[int, Depends(_user)]
JsonBody = Annotated[Any, Depends(_body)]


def _answer(data: Any, etag: str | None, status: int = 200) -> Response:
    headers = {"ETag": etag} if etag else None
    if data is None:
        # p2api reads Content-Type on every answer; an empty body must not claim to be JSON.
        return Response(status_code=204 if status == 200 else status, media_type="text/plain", headers=headers)
    return JSONResponse(data, status_code=status, headers=headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(state: P2State, charts_dir: Path) -> FastAPI:
    """The emulator application over `state`; finding-chart images are kept as files in `charts_dir`."""
    app = FastAPI(title="ESO P2 emulator (skyops)", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.p2 = state
    charts_dir.mkdir(parents=True, exist_ok=True)

    @app.exception_handler(P2ApiError)
    async def _p2_error(_request: Request, exc: P2ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(400, f"bad request: {problems}")

    @app.post(LOGIN_PATH)
    async def login(request: Request) -> Response:
        # Parsed by hand: Starlette's form parser needs python-multipart, for two urlencoded fields.
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        username, password = form.get("username", [None])[0], form.get("password", [None])[0]
        if username is None or password is None:
            raise P2ApiError(400, "login needs the form fields username and password")
        token = state.login(username, password)
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    p = API_PREFIX

    @app.get(p + "/authenticatedUser")
    async def authenticated_user(user: User) -> Response:
        return _answer(state.user(user), None)

    @app.get(p + "/obsRuns")
    async def runs(user: User) -> Response:
        return _answer(state.runs(user), None)

    @app.get(p + "/obsRuns/{run_id}")
    async def run(run_id: int, user: User) -> Response:
        return _answer(state.run(user, run_id), None)

    # containers
    @app.get(p + "/containers/{cid}")
    async def get_container(cid: int, user: User) -> Response:
        return _answer(*state.get_container(user, cid))

    @app.put(p + "/containers/{cid}")
    async def save_container(cid: int, user: User, body: JsonBody, if_match: IfMatch = None) -> Response:
        return _answer(*state.save_container(user, cid, body, if_match))

    @app.delete(p + "/containers/{cid}")
    async def delete_container(cid: int, user: User, if_match: IfMatch = None) -> Response:
        state.delete_container(user, cid, if_match)
        return _answer(None, None)

    @app.get(p + "/containers/{cid}/items")
    async def get_items(cid: int, user: User) -> Response:
        return _answer(*state.get_items(user, cid))

    @app.post(p + "/containers/{cid}/items")
    async def create_item(cid: int, user: User, body: JsonBody) -> Response:
        return _answer(*state.create_item(user, cid, body), 201)

    @app.put(p + "/containers/{cid}/items")
    async def reorder_items(cid: int, user: User, body: JsonBody, if_match: IfMatch = None) -> Response:
        return _answer(*state.reorder_items(user, cid, body, if_match))

    @app.post(p + "/containers/{cid}/items/append")
    async def append_item(cid: int, user: User, body: JsonBody) -> Response:
        state.append_item(user, cid, body)
        return _answer(None, None)

    @app.get(p + "/containers/{cid}/items/summary")
    async def ob_summary(cid: int, user: User) -> Response:
        return _answer(*state.ob_summary(user, cid))

    # OBs
    @app.get(p + "/obsBlocks/{ob_id}")
    async def get_ob(ob_id: int, user: User) -> Response:
        return _answer(*state.get_ob(user, ob_id))

    @app.put(p + "/obsBlocks/{ob_id}")
    async def save_ob(ob_id: int, user: User, body: JsonBody, if_match: IfMatch = None) -> Response:
        return _answer(*state.save_ob(user, ob_id, body, if_match))

    @app.delete(p + "/obsBlocks/{ob_id}")
    async def delete_ob(ob_id: int, user: User, if_match: IfMatch = None) -> Response:
        state.delete_ob(user, ob_id, if_match)
        return _answer(None, None)

    @app.post(p + "/obsBlocks/{ob_id}/verify")
    async def verify_ob(ob_id: int, user: User, body: JsonBody) -> Response:
        return _answer(*state.verify_ob(user, ob_id, body))

    @app.post(p + "/obsBlocks/{ob_id}/revise")
    async def revise_ob(ob_id: int, user: User) -> Response:
        return _answer(*state.revise_ob(user, ob_id))

    for kind, path in (("abs", "absolute"), ("sid", "sidereal")):
        _time_constraint_routes(app, kind, p + "/obsBlocks/{ob_id}/timeConstraints/" + path)

    # templates
    @app.get(p + "/obsBlocks/{ob_id}/templates")
    async def get_templates(ob_id: int, user: User) -> Response:
        return _answer(*state.get_templates(user, ob_id))

    @app.post(p + "/obsBlocks/{ob_id}/templates")
    async def create_template(ob_id: int, user: User, body: JsonBody) -> Response:
        return _answer(*state.create_template(user, ob_id, body), 201)

    @app.get(p + "/obsBlocks/{ob_id}/templates/{tid}")
    async def get_template(ob_id: int, tid: int, user: User) -> Response:
        return _answer(*state.get_template(user, ob_id, tid))

    @app.put(p + "/obsBlocks/{ob_id}/templates/{tid}")
    async def save_template(ob_id: int, tid: int, user: User, body: JsonBody, if_match: IfMatch = None) -> Response:
        return _answer(*state.save_template(user, ob_id, tid, body, if_match))

    @app.delete(p + "/obsBlocks/{ob_id}/templates/{tid}")
    async def delete_template(ob_id: int, tid: int, user: User, if_match: IfMatch = None) -> Response:
        state.delete_template(user, ob_id, tid, if_match)
        return _answer(None, None)

    # finding charts
    @app.get(p + "/obsBlocks/{ob_id}/findingCharts")
    async def chart_names(ob_id: int, user: User) -> Response:
        return _answer(*state.chart_names(user, ob_id))

    @app.post(p + "/obsBlocks/{ob_id}/findingCharts")
    async def add_chart(ob_id: int, request: Request, user: User) -> Response:
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "image/jpeg":
            raise P2ApiError(415, "finding charts must be uploaded as image/jpeg")
        match = _FILENAME.search(request.headers.get("Content-Disposition", ""))
        name = match[1] if match else "findingChart.jpg"
        content = await request.body()
        etag = state.add_chart(user, ob_id, name, content, lambda blob, data: (charts_dir / blob).write_bytes(data))
        return Response(status_code=201, media_type="text/plain", headers={"ETag": etag})

    @app.get(p + "/obsBlocks/{ob_id}/findingCharts/{index}")
    async def get_chart(ob_id: int, index: int, user: User) -> Response:
        blob = state.chart_blob(user, ob_id, index)
        return FileResponse(charts_dir / blob, media_type="image/jpeg")

    @app.delete(p + "/obsBlocks/{ob_id}/findingCharts/{index}")
    async def delete_chart(ob_id: int, index: int, user: User) -> Response:
        blob = state.delete_chart(user, ob_id, index)
        (charts_dir / blob).unlink(missing_ok=True)
        return _answer(None, None)

    # executions
    @app.get(p + "/obsBlocks/{ob_id}/executions")
    async def ob_executions(ob_id: int, night: Night, user: User) -> Response:
        return _answer(*state.ob_executions(user, ob_id, night))

    @app.get(p + "/executions/{instrument}")
    async def night_executions(instrument: str, night: Night, user: User) -> Response:
        return _answer(*state.night_executions(user, instrument, night))

    @app.post(p + "/executions/{instrument}")
    async def record_execution(instrument: str, user: User, body: JsonBody) -> Response:
        return _answer(*state.record_execution(user, instrument, body), 201)

    # visitor execution sequence
    @app.get(p + "/executionSequences/{instrument}")
    async def get_ves(instrument: str, user: User) -> Response:
        return _answer(*state.get_ves(user, instrument))

    @app.put(p + "/executionSequences/{instrument}")
    async def save_ves(instrument: str, user: User, body: JsonBody, if_match: IfMatch = None) -> Response:
        return _answer(*state.save_ves(user, instrument, body, if_match))

    return app


def _time_constraint_routes(app: FastAPI, kind: str, path: str) -> None:
    @app.get(path, name=f"get_{kind}_time_constraints")
    async def get_tc(ob_id: int, state: State, user: User) -> Response:
        return _answer(*state.get_time_constraints(user, ob_id, kind))

    @app.put(path, name=f"save_{kind}_time_constraints")
    async def save_tc(ob_id: int, state: State, user: User, body: JsonBody, if_match: IfMatch = None) -> Response:
        return _answer(*state.save_time_constraints(user, ob_id, kind, body, if_match))
