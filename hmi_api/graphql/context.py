"""What every resolver receives: the logged-in user (if any), the services it may call, and the audit hook."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket
from strawberry.fastapi import BaseContext

from alarms.api import AlarmService
from hmi_api.auth import Authenticator, AuthError, require
from hmi_api.live import LiveFeeds
from hmi_api.metrics import Metrics
from planner.config import SiteConfig
from planner.store import ObStore
from skyops.archive.port import Archive
from skyops.bus import Bus
from skyops.opdb.users import UserPublic
from skyops.timeutil import Clock
from ves_sync.store import VesSyncStore

# An audit record: (user, action, details). deploy wires it to the log stream, so every user action is archived.
Audit = Callable[[str, str, dict[str, str]], Awaitable[None]]


async def no_audit(user: str, action: str, details: dict[str, str]) -> None:
    return None


@dataclass
class HmiServices:
    """Long-lived collaborators, built once by deploy and shared by every request."""

    auth: Authenticator
    clock: Clock
    audit: Audit = no_audit
    metrics: Metrics = field(default_factory=Metrics)
    archive: Archive | None = None
    live: LiveFeeds | None = None
    alarms: AlarmService | None = None
    bus: Bus | None = None  # re-plan triggers and VES changes are published here, never sent around the bus
    obs: ObStore | None = None
    site: SiteConfig | None = None
    ves: VesSyncStore | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class HmiContext(BaseContext):
    """Per request (or per websocket connection) state."""

    def __init__(self, services: HmiServices, *, token: str | None, address: str) -> None:
        super().__init__()
        self.services = services
        self.token = token
        self.address = address
        self.user: UserPublic | None = None
        self.connection_params: dict[str, Any] | None = None
        self.websocket: WebSocket | None = None

    async def resolve_user(self) -> UserPublic | None:
        """The token's user, looked up once per request; None for an anonymous caller."""
        if self.user is None and self.token:
            try:
                self.user = await asyncio.to_thread(self.services.auth.authenticate, self.token)
            except AuthError:
                self.user = None
        return self.user

    async def allowed(self, action: str) -> UserPublic:
        """The user if allowed `action`, else an AuthError/PermissionDeniedError that becomes a GraphQL error."""
        return require(await self.resolve_user(), action)

    def alarm_service(self) -> AlarmService:
        if self.services.alarms is None:
            raise RuntimeError("this HMI was started without the alarm service")
        return self.services.alarms

    def live(self) -> LiveFeeds:
        if self.services.live is None:
            raise RuntimeError("this HMI was started without live feeds")
        return self.services.live

    async def close_slow_client(self, reason: str) -> None:
        """Alarms are never dropped: a client that cannot keep up is disconnected and re-reads the snapshot."""
        if self.websocket is not None:
            await self.websocket.close(code=4409, reason=reason[:120])

    def bus(self) -> Bus:
        if self.services.bus is None:
            raise RuntimeError("this HMI was started without the bus")
        return self.services.bus

    def ob_store(self) -> ObStore:
        if self.services.obs is None:
            raise RuntimeError("this HMI was started without the OB store")
        return self.services.obs

    def site(self) -> SiteConfig:
        if self.services.site is None:
            raise RuntimeError("this HMI was started without the site configuration")
        return self.services.site

    def ves_store(self) -> VesSyncStore:
        if self.services.ves is None:
            raise RuntimeError("this HMI was started without the VES-sync store")
        return self.services.ves

    def archive(self) -> Archive:
        if self.services.archive is None:
            raise RuntimeError("this HMI was started without an archive")
        return self.services.archive

    async def audit(self, action: str, **details: str) -> None:
        user = self.user.username if self.user else "anonymous"
        await self.services.audit(user, action, details)
