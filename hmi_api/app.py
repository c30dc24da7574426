"""The FastAPI application: health, Prometheus metrics, GraphQL (HTTP and graphql-transport-ws)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hmi_api.graphql.context import HmiServices
from hmi_api.graphql.router import graphql_router
from hmi_api.marshall import install_marshall_errors
from hmi_api.metrics import Metrics

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]
# The operator page is plain HTML, CSS and an ES module: `make run` needs no front-end build step.
WEB_DIR = Path(__file__).with_name("web")


async def _refresh_metrics(metrics: Metrics, services: HmiServices, stop: asyncio.Event,
                           interval_s: float = 5.0) -> None:
    while not stop.is_set():
        await metrics.refresh(services)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def create_app(
    *,
    health: HealthProbe,
    services: HmiServices | None = None,
    metrics: Metrics | None = None,
    marshall: APIRouter | None = None,
    log_intake: APIRouter | None = None,
    title: str = "skyops",
) -> FastAPI:
    """Build the app around collaborators supplied by the composition root (hmi_api never opens backends)."""
    registry: Metrics = metrics or (services.metrics if services is not None else Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if services is None:
            yield
            return
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_refresh_metrics(registry, services, stop), name="hmi-metrics")]
        if services.live is not None:
            await services.live.start_positions()
            tasks.append(asyncio.create_task(services.live.run(stop), name="hmi-live-feeds"))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title=title, summary="Operations platform for a remotely operated telescope", lifespan=lifespan)
    app.state.metrics = registry

    @app.get("/health", tags=["ops"], summary="Whether every backend answers")
    async def get_health() -> JSONResponse:
        report = await health()
        return JSONResponse(report, status_code=200 if report.get("status") == "ok" else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def get_metrics() -> Response:
        return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)

    if log_intake is not None:
        app.include_router(log_intake, prefix="/intake")  # POST /intake/logs, JSON lines, key per source
    if marshall is not None:
        app.include_router(marshall)
        install_marshall_errors(app)
    if services is not None:
        app.include_router(graphql_router(services), prefix="/graphql")

        @app.get("/", include_in_schema=False)
        async def operator_page() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app
