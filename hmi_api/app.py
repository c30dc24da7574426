"""The FastAPI application: health now; GraphQL, REST and the operator page mount here as they arrive."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]


def create_app(*, health: HealthProbe, title: str = "skyops") -> FastAPI:
    """Build the app around a health probe supplied by the composition root (hmi_api never opens backends)."""
    app = FastAPI(title=title, summary="Operations platform for a remotely operated telescope")

    @app.get("/health", tags=["ops"], summary="Whether every backend answers")
    async def get_health() -> JSONResponse:
        report = await health()
        return JSONResponse(report, status_code=200 if report.get("status") == "ok" else 503)

    return app
