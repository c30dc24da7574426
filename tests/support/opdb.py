"""An engine on a throw-away PostgreSQL schema, for tests that need a clean operational database."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url

from skyops.opdb import make_engine


@contextlib.contextmanager
def postgres_schema_engine(postgres_url: str) -> Iterator[Engine]:
    """An engine whose search_path is a fresh schema (dropped afterwards), never migrated.

    Its session TimeZone is far from UTC, which proves times are converted on the way out, not passed on.
    """
    admin = make_engine(postgres_url)
    schema = f"t_{uuid.uuid4().hex[:20]}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(admin.url.render_as_string(hide_password=False)).update_query_dict(
        {"options": f"-csearch_path={schema} -cTimeZone=America/Santiago"}
    )
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


# The operational-DB backends every store test runs on; PostgreSQL is a real server (integration).
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


@contextlib.contextmanager
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty, never migrated database of the backend in `request.param`."""
    if request.param == "sqlite":
        # A file in a folder that does not exist yet: make_engine must create it.
        engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'skyops.sqlite3'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with postgres_schema_engine(request.getfixturevalue("postgres_url")) as engine:
        yield engine
