"""Migrations from several processes at once (as `skyops run` starts them): on SQLite and PostgreSQL alike."""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import threading
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Queue

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, make_url, text

from skyops.opdb import make_engine, upgrade
from skyops.opdb.engine import MIGRATION_LOCK_KEY, alembic_config, sqlite_lock_path
from tests.support.opdb import BACKENDS, empty_engine
from tests.support.races import at_once

PROCESSES = 4
DEADLINE_S = 120  # spawning 4 interpreters on a busy 2-core machine takes a while; a hang fails here


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with empty_engine(request, tmp_path) as e:
        yield e


def _migrate(url: str, barrier: Barrier, results: multiprocessing.Queue[str]) -> None:
    """One process of the race: wait for the others, then upgrade; report "ok" or the error."""
    engine = make_engine(url)
    try:
        barrier.wait(timeout=DEADLINE_S)
        upgrade(engine)
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


@pytest.mark.timeout(DEADLINE_S + 60)
def test_processes_upgrading_one_fresh_database_at_once_all_succeed(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    outcomes = at_once(_migrate, (url,), processes=PROCESSES, deadline_s=DEADLINE_S)

    assert outcomes == ["ok"] * PROCESSES
    # Each branch head exactly once: no process migrated on top of another's half-done work.
    assert _version_rows(engine) == sorted(_heads())
    assert {"users", "alembic_version"} <= set(inspect(engine).get_table_names())


@pytest.mark.timeout(60)
def test_upgrade_waits_while_another_process_holds_the_migration_lock(engine: Engine) -> None:
    done: Queue[BaseException | None] = Queue()

    def migrate() -> None:
        try:
            upgrade(engine)
            done.put(None)
        except BaseException as exc:  # handed to the test thread
            done.put(exc)

    with _migration_lock_held_elsewhere(engine):
        worker = threading.Thread(target=migrate, daemon=True)
        worker.start()
        # A negative check: however long it waits, it must not migrate while the lock is held.
        worker.join(timeout=0.5)
        assert worker.is_alive(), "upgrade ran although another process held the migration lock"
        assert "alembic_version" not in inspect(engine).get_table_names()
    worker.join(timeout=30)

    assert done.get(timeout=1) is None
    with engine.connect() as connection:
        assert set(MigrationContext.configure(connection).get_current_heads()) == _heads()


@contextlib.contextmanager
def _migration_lock_held_elsewhere(engine: Engine) -> Iterator[None]:
    """Holds the lock `upgrade` takes, on a connection or file handle of its own (as another process would)."""
    if engine.dialect.name == "postgresql":
        other = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            with other.connect() as connection:
                connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
                try:
                    yield
                finally:
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
        finally:
            other.dispose()
        return
    path = sqlite_lock_path(engine.url)
    assert path is not None
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


@pytest.mark.parametrize(("url", "lock"), [
    ("sqlite:////srv/skyops/var/opdb.sqlite3", "/srv/skyops/var/opdb.sqlite3.migrate.lock"),
    ("sqlite:///file:/srv/opdb.sqlite3?uri=true", "/srv/opdb.sqlite3.migrate.lock"),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("sqlite:///file:ops?mode=memory&cache=shared&uri=true", None),
    ("postgresql+psycopg://u@localhost/skyops", None),
])
def test_the_sqlite_lock_file_sits_beside_the_database_file(url: str, lock: str | None) -> None:
    path = sqlite_lock_path(make_url(url))
    assert (str(path) if path else None) == lock
