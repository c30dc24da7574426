"""Login, sessions, rate limiting and the role table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hmi_api.auth import (
    PERMISSIONS,
    AuthError,
    LoginRateLimiter,
    PermissionDeniedError,
    RateLimitedError,
    ensure_initial_admin,
    require,
)
from skyops.opdb.models import Group
from skyops.opdb.users import UserStore, UserUpdate
from tests.unit.hmi_api.conftest import PASSWORD, Hmi


def test_login_issues_a_token_that_resolves_to_the_user(hmi: Hmi) -> None:
    issued = hmi.auth.login("otto", PASSWORD, address="10.0.0.5")
    assert issued.user.group is Group.OPERATOR
    assert hmi.auth.authenticate(issued.token).username == "otto"
    assert issued.expires_at == hmi.clock.now() + timedelta(hours=12)


def test_wrong_password_and_unknown_user_look_the_same(hmi: Hmi) -> None:
    for user in ("otto", "nobody"):
        with pytest.raises(AuthError, match="invalid username or password"):
            hmi.auth.login(user, "wrong password!", address="10.0.0.5")


def test_sessions_expire_after_the_duration_admins_set(hmi: Hmi) -> None:
    hmi.auth.set_session_ttl(timedelta(hours=1), by="ada")
    token = hmi.auth.login("otto", PASSWORD, address="a").token
    hmi.clock.advance(timedelta(minutes=59))
    assert hmi.auth.authenticate(token).username == "otto"
    hmi.clock.advance(timedelta(minutes=2))
    with pytest.raises(AuthError, match="expired"):
        hmi.auth.authenticate(token)
    assert hmi.auth.purge_expired() == 1


def test_session_duration_is_bounded(hmi: Hmi) -> None:
    with pytest.raises(ValueError, match="between"):
        hmi.auth.set_session_ttl(timedelta(seconds=10), by="ada")
    with pytest.raises(ValueError, match="between"):
        hmi.auth.set_session_ttl(timedelta(days=365), by="ada")


def test_logout_and_disabled_accounts_end_access(hmi: Hmi) -> None:
    token = hmi.auth.login("sam", PASSWORD, address="a").token
    hmi.auth.logout(token)
    with pytest.raises(AuthError):
        hmi.auth.authenticate(token)
    token = hmi.auth.login("sam", PASSWORD, address="a").token
    hmi.users.update(username="sam", data=UserUpdate(disabled=True), now=hmi.clock.now())
    with pytest.raises(AuthError, match="disabled"):
        hmi.auth.authenticate(token)


def test_rate_limit_locks_after_repeated_failures_then_releases(hmi: Hmi) -> None:
    for _ in range(5):
        with pytest.raises(AuthError):
            hmi.auth.login("otto", "wrong password!", address="10.0.0.9")
    with pytest.raises(RateLimitedError, match="try again"):
        hmi.auth.login("otto", PASSWORD, address="10.0.0.9")
    assert hmi.auth.login("otto", PASSWORD, address="10.0.0.10").user.username == "otto"  # other address
    hmi.clock.advance(timedelta(minutes=5, seconds=1))
    assert hmi.auth.login("otto", PASSWORD, address="10.0.0.9").user.username == "otto"


def test_limiter_counts_only_recent_failures(hmi: Hmi) -> None:
    lim = LoginRateLimiter(hmi.clock, max_failures=2, window=timedelta(seconds=60))
    lim.failed("u", "a")
    hmi.clock.advance(61)
    lim.failed("u", "a")
    lim.check("u", "a")
    lim.failed("u", "a")
    with pytest.raises(RateLimitedError):
        lim.check("u", "a")


@pytest.mark.parametrize("action", sorted(PERMISSIONS))
def test_role_table(hmi: Hmi, action: str) -> None:
    for name in ("ada", "sam", "otto"):
        user = hmi.users.get(username=name)
        if user.group in PERMISSIONS[action]:
            assert require(user, action) is user
        else:
            with pytest.raises(PermissionDeniedError, match=f"may not {action}"):
                require(user, action)
    with pytest.raises(AuthError, match="log in"):
        require(None, action)


def test_initial_admin_is_created_once(hmi: Hmi, tmp_path: object) -> None:
    assert ensure_initial_admin(hmi.users, now=hmi.clock.now()) is None  # users exist already
    from skyops.opdb.engine import make_engine, make_sessionmaker, upgrade

    engine = make_engine(f"sqlite:///{tmp_path}/fresh.sqlite3")
    upgrade(engine)
    store = UserStore(make_sessionmaker(engine), bcrypt_rounds=4)
    password = ensure_initial_admin(store, now=hmi.clock.now())
    assert password is not None
    assert store.verify_password(username="admin", password=password) is not None
    assert ensure_initial_admin(store, now=hmi.clock.now()) is None
    engine.dispose()
