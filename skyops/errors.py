"""The kernel's errors: each says what was wrong with the input, so callers can report it as is."""

from __future__ import annotations


class SkyopsError(Exception):
    """Base of every error the platform raises on purpose."""


class InvalidRecordError(SkyopsError, ValueError):
    """A record (sample, log record, alarm event) failed validation."""


class NaiveDatetimeError(InvalidRecordError):
    """A datetime without a timezone reached code that needs UTC."""


class UnknownPointError(SkyopsError, KeyError):
    """Samples named monitoring points the archive has not been told about."""

    def __init__(self, points: list[str]) -> None:
        self.points = sorted(points)
        shown = ", ".join(self.points[:10]) + (" …" if len(self.points) > 10 else "")
        super().__init__(f"unknown monitoring point(s): {shown}")

    def __str__(self) -> str:
        return str(self.args[0])


class CodecError(SkyopsError, ValueError):
    """A bus payload could not be decoded (wrong schema, truncated, corrupt)."""


class BackendUnavailableError(SkyopsError, ConnectionError):
    """A configured server (Redis, Cassandra, PostgreSQL) cannot be reached."""


class ConflictError(SkyopsError):
    """A write would break a uniqueness or integrity rule (e.g. a username that already exists)."""


class NotFoundError(SkyopsError, LookupError):
    """A record named by the caller (e.g. a user) does not exist."""
