"""GraphQL object types of the HMI."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from skyops.opdb.users import UserPublic


@strawberry.enum(description="The user's role group (SOXS web-app groups)")
class UserGroup(Enum):
    ADMINISTRATOR = "Administrator"
    SCIENCE = "Science"
    OPERATOR = "Operator"


@strawberry.type(description="A user account as administrators see it (never the password)")
class User:
    username: str
    full_name: str
    group: UserGroup
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, u: UserPublic) -> User:
        return cls(username=u.username, full_name=u.full_name, group=UserGroup(u.group.value), disabled=u.disabled,
                   created_at=u.created_at, last_login_at=u.last_login_at)


@strawberry.type(description="A session token to send as `Authorization: Bearer <token>` or in connection_init")
class LoginResult:
    token: str
    expires_at: datetime
    user: User


@strawberry.input(description="A new user account")
class UserInput:
    username: str
    full_name: str
    group: UserGroup
    password: str
    disabled: bool = False


@strawberry.input(description="Changes to an account; omitted fields stay as they are")
class UserChanges:
    full_name: str | None = None
    group: UserGroup | None = None
    disabled: bool | None = None
    password: str | None = None
