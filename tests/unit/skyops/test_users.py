"""User schemas, the UTC column type and UserStore rules, on the embedded (in-memory SQLite) database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import Dialect

from skyops.errors import NaiveDatetimeError
from skyops.opdb import Group, UserCreate, UserPublic, UserStore, UserUpdate, UTCDateTime, make_engine
from skyops.opdb.engine import make_sessionmaker, upgrade

T0 = datetime(2025, 3, 14, 23, 59, 58, 123456, tzinfo=UTC)
PASSWORD = "dome-open-at-dusk"


def user_data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "username": "ada",
        "full_name": "Ada Lovelace",
        "group": "Operator",
        "password": PASSWORD,
    }
    data.update(changes)
    return data


@pytest.fixture
def store() -> Iterator[UserStore]:
    engine = make_engine("sqlite://")
    upgrade(engine)
    yield UserStore(make_sessionmaker(engine), bcrypt_rounds=4)
    engine.dispose()


# --- schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["ada", "night.op", "ops_2", "a-b", "x" * 64, "007"])
def test_good_usernames_are_accepted(username: str) -> None:
    assert UserCreate.model_validate(user_data(username=username)).username == username


@pytest.mark.parametrize(
    "username",
    ["ab", "x" * 65, "Ada", "ada lovelace", "ada@eso.org", "jürgen", "", "ada\n"],
)
def test_bad_usernames_are_refused(username: str) -> None:
    with pytest.raises(ValidationError, match="username"):
        UserCreate.model_validate(user_data(username=username))


@pytest.mark.parametrize("password", ["", "123456789", "short pw!"])
def test_passwords_under_ten_characters_are_refused(password: str) -> None:
    with pytest.raises(ValidationError, match="at least 10 characters"):
        UserCreate.model_validate(user_data(password=password))


def test_ten_character_password_is_accepted() -> None:
    data = UserCreate.model_validate(user_data(password="0123456789"))

    assert data.password.get_secret_value() == "0123456789"


def test_password_longer_than_bcrypt_reads_is_refused() -> None:
    # 25 three-byte characters: 25 characters but 75 bytes, and bcrypt stops reading at 72.
    with pytest.raises(ValidationError, match="72 bytes"):
        UserCreate.model_validate(user_data(password="望" * 25))
    assert UserCreate.model_validate(user_data(password="望" * 24)).password.get_secret_value() == "望" * 24


def test_password_never_shows_in_repr_or_dump() -> None:
    data = UserCreate.model_validate(user_data())

    assert PASSWORD not in repr(data)
    assert PASSWORD not in data.model_dump_json()


@pytest.mark.parametrize("model", [UserCreate, UserUpdate])
def test_unknown_fields_are_refused(model: type[UserCreate] | type[UserUpdate]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({**user_data(), "is_superuser": True})


def test_group_must_be_one_of_the_three() -> None:
    assert [group.value for group in Group] == ["Administrator", "Science", "Operator"]
    with pytest.raises(ValidationError, match="group"):
        UserCreate.model_validate(user_data(group="Engineer"))
    with pytest.raises(ValidationError, match="group"):
        UserUpdate.model_validate({"group": "administrator"})


def test_full_name_is_trimmed_and_must_not_be_blank() -> None:
    assert UserCreate.model_validate(user_data(full_name="  Ada Lovelace ")).full_name == "Ada Lovelace"
    with pytest.raises(ValidationError, match="full_name"):
        UserCreate.model_validate(user_data(full_name="   "))


def test_user_public_has_no_password_field() -> None:
    assert not {"password", "password_hash"} & set(UserPublic.model_fields)
    with pytest.raises(ValidationError):
        UserPublic.model_validate(
            {
                "id": 1,
                "username": "ada",
                "full_name": "Ada",
                "group": "Operator",
                "disabled": False,
                "created_at": T0,
                "updated_at": T0,
                "last_login_at": None,
                "password_hash": "$2b$...",
            }
        )


# --- the UTC column type ---------------------------------------------------------------------------


def dialect_of(backend: str) -> Dialect:
    # Building an engine does not connect, so no server is needed to get its dialect.
    return make_engine({"sqlite": "sqlite://", "postgresql": "postgresql://u@localhost/db"}[backend]).dialect


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_column_type_refuses_naive_datetimes(backend: str) -> None:
    with pytest.raises(NaiveDatetimeError):
        UTCDateTime().process_bind_param(datetime(2025, 3, 14, 12), dialect_of(backend))


def test_column_type_stores_utc_and_reads_back_aware_utc() -> None:
    lite, pg = dialect_of("sqlite"), dialect_of("postgresql")
    chile = timezone(timedelta(hours=-3))
    local = datetime(2025, 3, 14, 9, 0, tzinfo=chile)
    column = UTCDateTime()

    stored_sqlite = column.process_bind_param(local, lite)
    stored_pg = column.process_bind_param(local, pg)

    assert stored_sqlite == datetime(2025, 3, 14, 12, 0)
    assert stored_pg == datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
    assert column.process_result_value(stored_sqlite, lite) == local
    read_pg = column.process_result_value(local, pg)
    assert read_pg is not None
    assert read_pg.tzinfo is UTC
    assert column.process_bind_param(None, lite) is None
    assert column.process_result_value(None, lite) is None


# --- store rules -----------------------------------------------------------------------------------


def test_store_hashes_with_the_configured_cost(store: UserStore) -> None:
    store.create(data=UserCreate.model_validate(user_data()), now=T0)

    assert store.verify_password(username="ada", password=PASSWORD) is not None


@pytest.mark.parametrize("rounds", [3, 32])
def test_store_refuses_an_unusable_bcrypt_cost(rounds: int) -> None:
    engine = make_engine("sqlite://")
    with pytest.raises(ValueError, match="bcrypt_rounds"):
        UserStore(make_sessionmaker(engine), bcrypt_rounds=rounds)


def test_weak_new_password_is_refused_and_the_old_one_kept(store: UserStore) -> None:
    store.create(data=UserCreate.model_validate(user_data()), now=T0)

    with pytest.raises(ValidationError, match="at least 10 characters"):
        store.set_password(username="ada", password="short", now=T0)

    assert store.verify_password(username="ada", password=PASSWORD) is not None


def test_set_password_takes_a_secret_str(store: UserStore) -> None:
    store.create(data=UserCreate.model_validate(user_data()), now=T0)

    store.set_password(username="ada", password=SecretStr("a-secret-password"), now=T0)

    assert store.verify_password(username="ada", password=SecretStr("a-secret-password")) is not None


def test_over_long_password_simply_fails_to_verify(store: UserStore) -> None:
    store.create(data=UserCreate.model_validate(user_data()), now=T0)

    # bcrypt itself raises on more than 72 bytes; a login form must get "wrong password", not a crash.
    assert store.verify_password(username="ada", password=PASSWORD + "x" * 100) is None


def test_successful_login_records_its_time_only_when_given(store: UserStore) -> None:
    store.create(data=UserCreate.model_validate(user_data()), now=T0)
    login = T0 + timedelta(hours=2)

    store.verify_password(username="ada", password=PASSWORD)
    assert store.get(username="ada").last_login_at is None

    user = store.verify_password(username="ada", password=PASSWORD, now=login)
    assert user is not None
    assert user.last_login_at == login
    assert store.get(username="ada").updated_at == T0


def test_every_time_parameter_refuses_naive_datetimes(store: UserStore) -> None:
    store.create(data=UserCreate.model_validate(user_data()), now=T0)
    naive = datetime(2025, 3, 15)

    with pytest.raises(NaiveDatetimeError):
        store.update(username="ada", data=UserUpdate(full_name="Ada King"), now=naive)
    with pytest.raises(NaiveDatetimeError):
        store.set_password(username="ada", password="another-password", now=naive)
    with pytest.raises(NaiveDatetimeError):
        store.verify_password(username="ada", password=PASSWORD, now=naive)
    assert store.get(username="ada").full_name == "Ada Lovelace"


def test_update_with_explicit_none_leaves_fields_unchanged(store: UserStore) -> None:
    created = store.create(data=UserCreate.model_validate(user_data(group="Science")), now=T0)

    updated = store.update(
        username="ada", data=UserUpdate(full_name=None, group=None, disabled=None), now=T0 + timedelta(1)
    )

    assert updated == created.model_copy(update={"updated_at": T0 + timedelta(1)})
