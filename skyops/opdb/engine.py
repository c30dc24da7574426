"""Engines, sessions and migrations of the operational database (SQLite embedded, PostgreSQL served)."""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from skyops.errors import BackendUnavailableError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant works; it only has to be the same in every process that migrates the same database.
MIGRATION_LOCK_KEY = 0x5359_4F50_4442  # "SYOPDB"


def make_engine(url: str) -> Engine:
    """An engine for `url`: a SQLite file (created with its folder) or PostgreSQL via psycopg 3."""
    sa_url = make_url(url)
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database or ""
        in_memory = database in ("", ":memory:") or sa_url.query.get("mode") == "memory"
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if in_memory:
            # Each new connection to ":memory:" is a new, empty database; share one connection instead.
            kwargs["poolclass"] = StaticPool
        elif not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if backend == "postgresql":
        if sa_url.drivername == "postgresql":
            # A bare postgresql:// would pick psycopg2, which skyops does not install.
            sa_url = sa_url.set(drivername="postgresql+psycopg")
        return create_engine(sa_url, pool_pre_ping=True)
    raise ValueError(f"unsupported operational database URL {sa_url.render_as_string(hide_password=True)!r}")


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # SQLite leaves foreign keys off per connection; WAL lets the HMI read while a service writes.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (stores hand out plain values, not live rows)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config() -> Config:
    """The Alembic configuration, built in code so an installed package migrates without alembic.ini."""
    config = Config()
    # ConfigParser interpolates "%", which may appear in an install path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Migrate to `revision` (every head by default: each service keeps its own migration branch).

    Safe to call from several processes at once (`skyops run` starts the services together): they
    migrate one after the other, and the later ones find the schema already at head. PostgreSQL
    serialises on a transaction-level advisory lock, a SQLite file on an exclusive lock of a file
    beside it (SQLite's own locking does not cover Alembic's read-then-create).
    """
    config = alembic_config()
    with _sqlite_migration_lock(engine.url):
        try:
            connection = engine.connect()
        except OperationalError as exc:
            url = engine.url.render_as_string(hide_password=True)
            raise BackendUnavailableError(f"cannot reach the operational database at {url}: {exc.orig}") from exc
        with connection, connection.begin():
            if connection.dialect.name == "postgresql":
                # Services started together must not race to create the same tables; the lock ends with
                # the transaction.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)


def sqlite_lock_path(url: URL) -> Path | None:
    """The lock file that serialises migrations of a SQLite file (None: not a file, nothing to share)."""
    if url.get_backend_name() != "sqlite":
        return None
    database, _, params = (url.database or "").partition("?")
    database = database.removeprefix("file:")
    if database in ("", ":memory:") or url.query.get("mode") == "memory" or "mode=memory" in params:
        return None
    path = Path(database).expanduser()
    return path.with_name(path.name + ".migrate.lock")


@contextlib.contextmanager
def _sqlite_migration_lock(url: URL) -> Iterator[None]:
    path = sqlite_lock_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # flock is released by the kernel when the process dies, so a killed migration never leaves it held;
    # the file itself stays (deleting it would let a waiter and a newcomer lock two different files).
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at, or None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
