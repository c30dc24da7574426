"""Notification channels: e-mail over SMTP and JSON webhooks over HTTP."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from alarms.domain.notify import Notification


class Sender(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver or raise with the reason."""


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=25, gt=0, lt=65536)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_s: float = Field(default=10.0, gt=0)
    sender: str = "skyops-alarms@localhost"


class EmailSender:
    """Sends through an SMTP server; smtplib runs in a worker thread so the event loop never blocks."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _send_blocking(self, n: Notification) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.sender
        msg["To"] = n.target
        msg["Subject"] = n.subject
        msg["X-Skyops-Notification"] = n.id
        msg.set_content(n.body)
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username and s.password is not None:
                smtp.login(s.username, s.password.get_secret_value())
            smtp.send_message(msg)

    async def send(self, notification: Notification) -> None:
        await asyncio.to_thread(self._send_blocking, notification)


class WebhookSender:
    """POSTs the notification as JSON; any non-2xx answer is a failure to retry."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, notification: Notification) -> None:
        body = {"id": notification.id, "subject": notification.subject, "text": notification.body,
                **notification.payload}
        response = await self.client.post(notification.target, json=body)
        response.raise_for_status()
