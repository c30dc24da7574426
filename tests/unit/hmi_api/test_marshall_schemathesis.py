"""Schemathesis against the Marshall API's OpenAPI: generated requests never produce a server error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr

from hmi_api.app import create_app
from hmi_api.marshall import KEY_HEADER, marshall_router
from planner.config import load_site
from planner.marshall import MarshallApi
from planner.store import ObStore
from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade
from skyops.timeutil import FakeClock

KEY = "marshall-key-0123456789"


@pytest.fixture(scope="module")
def marshall_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    path: Path = tmp_path_factory.mktemp("marshall") / "opdb.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    api = MarshallApi(ObStore(make_sessionmaker(engine), site=load_site()),
                      FakeClock(datetime(2026, 11, 22, 1, 0, tzinfo=UTC)))

    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    yield create_app(health=health, marshall=marshall_router(api, [SecretStr(KEY)]))
    engine.dispose()


def test_no_server_errors(marshall_app: FastAPI) -> None:
    # Schemathesis' own pytest plugin does not run under pytest 9, so its strategies are driven directly.
    schema = schemathesis.openapi.from_asgi("/openapi.json", marshall_app).include(path_regex="^/marshall/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call(headers={KEY_HEADER: KEY})
            assert response.status_code < 500, (case.path, case.body, response.text)

        check()
