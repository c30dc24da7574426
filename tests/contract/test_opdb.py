"""Contract of the operational database: the same suite against SQLite and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import bcrypt
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from hmi_api import models as _hmi_models  # noqa: F401  (its tables join Base.metadata for the drift test)
from planner import store as _planner_store  # noqa: F401  (its tables join Base.metadata for the drift test)
from skyops.errors import BackendUnavailableError, ConflictError, NaiveDatetimeError, NotFoundError
from skyops.opdb import (
    Base,
    Group,
    User,
    UserCreate,
    UserPublic,
    UserStore,
    UserUpdate,
    make_engine,
    make_sessionmaker,
    upgrade,
)
from skyops.opdb.engine import alembic_config
from tests.support.opdb import BACKENDS, empty_engine
from ves_sync import models as _ves_sync_models  # noqa: F401  (its tables join Base.metadata for the drift test)

T0 = datetime(2025, 3, 14, 23, 59, 58, 123456, tzinfo=UTC)
PASSWORD = "dome-open-at-dusk"

@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database (never migrated) of the requested backend."""
    with empty_engine(request, tmp_path) as e:
        yield e


@pytest.fixture
def store(engine: Engine) -> UserStore:
    upgrade(engine)
    # 4 rounds: the cost factor changes bcrypt's speed, not its behaviour.
    return UserStore(make_sessionmaker(engine), bcrypt_rounds=4)


def new_user(
    username: str = "ada",
    *,
    group: Group = Group.OPERATOR,
    full_name: str = "Ada Lovelace",
    password: str = PASSWORD,
    disabled: bool = False,
) -> UserCreate:
    return UserCreate.model_validate(
        {
            "username": username,
            "full_name": full_name,
            "group": group,
            "password": password,
            "disabled": disabled,
        }
    )


def head_revisions() -> set[str]:
    # One head per service branch (users, planner, ves_sync, ...): compare sets, not a single head.
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


# --- migrations ------------------------------------------------------------------------------------


def test_upgrade_migrates_an_empty_database_to_head(engine: Engine) -> None:
    assert current_revisions(engine) == set()
    assert "users" not in inspect(engine).get_table_names()

    upgrade(engine)

    assert current_revisions(engine) == head_revisions()
    assert {"users", "alembic_version"} <= set(inspect(engine).get_table_names())


def test_upgrade_again_is_a_no_op_that_keeps_the_data(store: UserStore, engine: Engine) -> None:
    created = store.create(data=new_user(), now=T0)

    upgrade(engine)

    assert current_revisions(engine) == head_revisions()
    assert store.list() == [created]


def test_migrated_schema_matches_the_models(store: UserStore, engine: Engine) -> None:
    # A model change without its migration shows up here, on both backends.
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_schema_refuses_a_group_outside_the_three(store: UserStore, engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO users (username, full_name, "group", password_hash, disabled, created_at, '
                "updated_at) VALUES ('eve', 'Eve', 'Root', 'x', false, :t, :t)"
            ),
            {"t": T0},
        )


# --- round trip ------------------------------------------------------------------------------------


def test_every_field_round_trips_exactly(store: UserStore, engine: Engine) -> None:
    login_at = T0 + timedelta(hours=1, microseconds=1)
    created = store.create(
        data=new_user("night.op_1", group=Group.SCIENCE, full_name="Grace B. Hopper"), now=T0
    )
    store.verify_password(username="night.op_1", password=PASSWORD, now=login_at)

    fetched = store.get(username="night.op_1")

    assert fetched == UserPublic(
        id=created.id,
        username="night.op_1",
        full_name="Grace B. Hopper",
        group=Group.SCIENCE,
        disabled=False,
        created_at=T0,
        updated_at=T0,
        last_login_at=login_at,
    )
    with make_sessionmaker(engine)() as session:
        row = session.scalars(select(User).where(User.username == "night.op_1")).one()
        assert row.password_hash.startswith("$2b$04$")
        assert bcrypt.checkpw(PASSWORD.encode(), row.password_hash.encode())


def test_disabled_flag_round_trips(store: UserStore) -> None:
    store.create(data=new_user("locked", disabled=True), now=T0)

    assert store.get(username="locked").disabled is True


@pytest.mark.parametrize(
    "full_name",
    ["Jürgen Müller-Lüdenscheidt", "José Ñúñez Peña", "山田 太郎", "Σοφία Παπαδοπούλου", "Ola 🔭 Nordmann"],
)
def test_unicode_full_names_round_trip(store: UserStore, full_name: str) -> None:
    store.create(data=new_user(full_name=full_name), now=T0)

    assert store.get(username="ada").full_name == full_name


# --- time ------------------------------------------------------------------------------------------


def test_aware_times_come_back_as_the_same_instant_in_utc(store: UserStore) -> None:
    la_silla = timezone(timedelta(hours=-3))
    local = datetime(2025, 3, 14, 20, 59, 58, 123456, tzinfo=la_silla)

    created = store.create(data=new_user(), now=local)
    fetched = store.get(username="ada")

    for user in (created, fetched):
        assert user.created_at == T0
        assert user.created_at.utcoffset() == timedelta(0)
        assert user.created_at.tzinfo is UTC


def test_naive_now_is_refused_and_nothing_written(store: UserStore) -> None:
    with pytest.raises(NaiveDatetimeError):
        store.create(data=new_user(), now=datetime(2025, 3, 14, 23, 59))

    assert store.list() == []


def test_naive_datetime_is_refused_by_the_column_type(store: UserStore, engine: Engine) -> None:
    naive = User(
        username="ada",
        full_name="Ada",
        group=Group.OPERATOR,
        password_hash="x",
        disabled=False,
        created_at=datetime(2025, 3, 14),
        updated_at=T0,
    )
    # SQLAlchemy wraps errors raised while binding parameters; the cause is kept as `orig`.
    with pytest.raises(StatementError) as info, make_sessionmaker(engine).begin() as session:
        session.add(naive)
    assert isinstance(info.value.orig, NaiveDatetimeError)
    assert store.list() == []


def test_times_order_correctly_in_queries(store: UserStore, engine: Engine) -> None:
    for minutes, name in [(30, "late"), (0, "early"), (10, "middle")]:
        store.create(data=new_user(name), now=T0 + timedelta(minutes=minutes))

    with make_sessionmaker(engine)() as session:
        after = session.scalars(
            select(User.username).where(User.created_at > T0 + timedelta(minutes=5)).order_by(User.created_at)
        ).all()
    assert after == ["middle", "late"]


# --- conflicts and missing users -------------------------------------------------------------------


def test_duplicate_username_is_refused_and_the_first_account_kept(store: UserStore) -> None:
    first = store.create(data=new_user(group=Group.ADMINISTRATOR, full_name="The First"), now=T0)

    with pytest.raises(ConflictError, match="'ada' already exists"):
        store.create(
            data=new_user(group=Group.OPERATOR, full_name="The Second", password="another-password"),
            now=T0 + timedelta(days=1),
        )

    assert store.list() == [first]
    assert store.verify_password(username="ada", password=PASSWORD) == first
    assert store.verify_password(username="ada", password="another-password") is None


def test_unknown_user_raises_not_found(store: UserStore) -> None:
    store.create(data=new_user(), now=T0)

    with pytest.raises(NotFoundError, match="'grace'"):
        store.get(username="grace")
    with pytest.raises(NotFoundError):
        store.update(username="grace", data=UserUpdate(group=Group.SCIENCE), now=T0)
    with pytest.raises(NotFoundError):
        store.set_password(username="grace", password="a-new-password", now=T0)
    with pytest.raises(LookupError):
        store.delete(username="grace")
    assert [user.username for user in store.list()] == ["ada"]


# --- passwords -------------------------------------------------------------------------------------


def test_verify_password_accepts_only_the_right_password_of_an_enabled_user(store: UserStore) -> None:
    ada = store.create(data=new_user(), now=T0)
    store.create(data=new_user("bob", disabled=True), now=T0)

    assert store.verify_password(username="ada", password=PASSWORD) == ada
    assert store.verify_password(username="ada", password=PASSWORD.upper()) is None
    assert store.verify_password(username="ada", password="") is None
    assert store.verify_password(username="bob", password=PASSWORD) is None
    assert store.verify_password(username="nobody", password=PASSWORD) is None


def test_disabling_a_user_stops_their_logins(store: UserStore) -> None:
    store.create(data=new_user(), now=T0)

    store.update(username="ada", data=UserUpdate(disabled=True), now=T0 + timedelta(minutes=1))
    assert store.verify_password(username="ada", password=PASSWORD) is None

    store.update(username="ada", data=UserUpdate(disabled=False), now=T0 + timedelta(minutes=2))
    assert store.verify_password(username="ada", password=PASSWORD) is not None


def test_set_password_replaces_the_old_one(store: UserStore) -> None:
    store.create(data=new_user(), now=T0)
    later = T0 + timedelta(days=2)

    store.set_password(username="ada", password="seeing-below-1-arcsec", now=later)

    assert store.verify_password(username="ada", password=PASSWORD) is None
    user = store.verify_password(username="ada", password="seeing-below-1-arcsec")
    assert user is not None
    assert user.updated_at == later


def test_failed_login_does_not_record_a_login_time(store: UserStore) -> None:
    store.create(data=new_user(), now=T0)

    store.verify_password(username="ada", password="not-the-password", now=T0 + timedelta(hours=1))

    assert store.get(username="ada").last_login_at is None


# --- listing, updates, deletion --------------------------------------------------------------------


def test_list_is_ordered_by_username(store: UserStore) -> None:
    # Punctuation and digits sort differently under PostgreSQL's language collations; the listing may not.
    for name in ["bob", "abc", "a_bc", "a1c", "a.dd", "a-cc", "zeta", "ops.night"]:
        store.create(data=new_user(name), now=T0)

    listed = [user.username for user in store.list()]
    assert listed == ["a-cc", "a.dd", "a1c", "a_bc", "abc", "bob", "ops.night", "zeta"]


def test_list_of_an_empty_database_is_empty(store: UserStore) -> None:
    assert store.list() == []


def test_update_changes_the_group_and_only_what_was_given(store: UserStore) -> None:
    created = store.create(data=new_user(group=Group.OPERATOR), now=T0)
    later = T0 + timedelta(days=1)

    updated = store.update(username="ada", data=UserUpdate(group=Group.SCIENCE), now=later)

    assert updated == created.model_copy(update={"group": Group.SCIENCE, "updated_at": later})
    assert store.get(username="ada") == updated


def test_update_of_the_full_name_keeps_the_password(store: UserStore) -> None:
    store.create(data=new_user(), now=T0)

    store.update(username="ada", data=UserUpdate(full_name="Augusta Ada King"), now=T0)

    user = store.verify_password(username="ada", password=PASSWORD)
    assert user is not None
    assert user.full_name == "Augusta Ada King"


def test_delete_removes_the_account_and_frees_the_name(store: UserStore) -> None:
    store.create(data=new_user(), now=T0)
    store.create(data=new_user("bob"), now=T0)

    store.delete(username="ada")

    assert [user.username for user in store.list()] == ["bob"]
    assert store.verify_password(username="ada", password=PASSWORD) is None
    assert store.create(data=new_user(), now=T0).username == "ada"


def test_the_last_enabled_administrator_cannot_be_removed(store: UserStore) -> None:
    store.create(data=new_user("root", group=Group.ADMINISTRATOR), now=T0)
    store.create(data=new_user("spare", group=Group.ADMINISTRATOR, disabled=True), now=T0)

    with pytest.raises(ConflictError, match="last enabled administrator"):
        store.delete(username="root")
    with pytest.raises(ConflictError):
        store.update(username="root", data=UserUpdate(group=Group.OPERATOR), now=T0)
    with pytest.raises(ConflictError):
        store.update(username="root", data=UserUpdate(disabled=True), now=T0)
    assert store.get(username="root").group is Group.ADMINISTRATOR

    store.update(username="spare", data=UserUpdate(disabled=False), now=T0)
    store.update(username="root", data=UserUpdate(group=Group.SCIENCE), now=T0)
    assert store.get(username="root").group is Group.SCIENCE


# --- engines (not per backend) ---------------------------------------------------------------------


def test_sqlite_engine_creates_its_folder_and_turns_on_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "skyops.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert path.exists()
    finally:
        engine.dispose()


def test_in_memory_sqlite_keeps_one_database_across_sessions() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade(engine)
        store = UserStore(make_sessionmaker(engine), bcrypt_rounds=4)

        store.create(data=new_user(), now=T0)

        assert store.get(username="ada").username == "ada"
    finally:
        engine.dispose()


def test_bare_postgresql_url_uses_psycopg_3() -> None:
    engine = make_engine("postgresql://skyops:secret@127.0.0.1:5432/skyops")

    assert engine.url.drivername == "postgresql+psycopg"


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        make_engine("mysql://root@localhost/skyops")


def test_unreachable_postgresql_raises_backend_unavailable() -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    engine = make_engine("postgresql+psycopg://skyops:skyops@127.0.0.1:1/skyops?connect_timeout=2")

    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:1"):
        upgrade(engine)
