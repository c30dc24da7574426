"""Helpers shared by the resolver modules: the typed `Info`, readable validation errors, blocking calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date
from typing import TypeVar

from pydantic import ValidationError
from strawberry.types import Info

from hmi_api.graphql.context import HmiContext

Ctx = Info[HmiContext, None]
T = TypeVar("T")


def friendly(exc: ValidationError, renames: dict[str, str] | None = None) -> ValueError:
    """A pydantic error as one readable line per field, named as the GraphQL caller named it."""
    names = renames or {}
    parts = [
        f"{'.'.join(names.get(str(p), str(p)) for p in e['loc']) or 'input'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    ]
    return ValueError("; ".join(parts))


async def blocking(call: Callable[[], T], renames: dict[str, str] | None = None) -> T:
    """Run a blocking store call in a thread; a validation error becomes one readable message."""
    try:
        return await asyncio.to_thread(call)
    except ValidationError as exc:
        raise friendly(exc, renames) from None


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def checked_night(night: str | None) -> str | None:
    """A night as the planner names it (the local date of its evening), refused with the reason if malformed."""
    if night is not None:
        try:
            date.fromisoformat(night)
        except ValueError:
            raise ValueError(f"night: {night!r} is not a date (YYYY-MM-DD)") from None
    return night
