"""Notifications against real servers on loopback: an aiosmtpd SMTP server and a small HTTP webhook receiver."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from alarms.dispatcher import NotificationService
from alarms.domain.notify import NotificationPolicy, Outbox
from alarms.domain.state import AlarmState
from alarms.notify import EmailSender, Sender, SmtpSettings, WebhookSender
from skyops.records import AlarmSeverity
from skyops.timeutil import US_PER_S, FakeClock, to_us

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content or b""
        self.messages.append((list(envelope.rcpt_tos), content.encode() if isinstance(content, str) else content))
        return "250 OK"


@dataclass
class Webhook:
    """An HTTP receiver that answers 500 to its first `fail` requests, then 200, and keeps the JSON bodies."""

    fail: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length)
            self.requests += 1
            if self.requests <= self.fail:
                status = "500 Internal Server Error"
            else:
                status = "200 OK"
                self.bodies.append(json.loads(body))
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(mailbox, hostname="localhost"), "127.0.0.1", 0)
    yield mailbox, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def webhook_server() -> AsyncIterator[tuple[Webhook, str]]:
    hook = Webhook(fail=1)
    server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
    yield hook, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/alarms"
    server.close()
    await server.wait_closed()


async def test_mail_and_webhook_with_a_retry_and_an_escalation(
    smtp_server: tuple[Mailbox, int], webhook_server: tuple[Webhook, str], caplog: pytest.LogCaptureFixture
) -> None:
    mailbox, smtp_port = smtp_server
    hook, url = webhook_server
    clock = FakeClock(T0)
    redis = FakeRedis(server=FakeServer(version=(7, 0)))
    policy = NotificationPolicy(
        min_severity=AlarmSeverity.SERIOUS, email_to=("ops@example.org",), webhook_urls=(url,),
        escalation_to=("chief@example.org",), escalation_delay_us=600 * US_PER_S,
    )
    async with httpx.AsyncClient(timeout=5) as http:
        senders: dict[str, Sender] = {
            "email": EmailSender(SmtpSettings(host="127.0.0.1", port=smtp_port, sender="skyops@example.org",
                                              timeout_s=5)),
            "webhook": WebhookSender(http),
        }
        svc = NotificationService(policy, Outbox(initial_us=10 * US_PER_S, max_us=60 * US_PER_S), senders, redis,
                                  clock)
        state = AlarmState("Humidity.ASM:1")
        await svc.accept(state.update(to_us(T0), AlarmSeverity.CRITICAL, valid=True, reason="humidity 93 %"))
        with caplog.at_level(logging.ERROR):
            assert await svc.pump() == 1  # the mail; the webhook answered 500
        assert "HTTPStatusError" in caplog.text
        clock.advance(10)
        assert await svc.pump() == 1  # the webhook, on retry
        clock.advance(timedelta(minutes=10))
        assert await svc.pump() == 2  # escalation by mail and webhook
    await redis.aclose()

    (to, raw), (esc_to, esc_raw) = mailbox.messages
    assert to == ["ops@example.org"]
    message = message_from_bytes(raw)
    assert message["Subject"] == "[skyops] CRITICAL Humidity.ASM:1"
    assert "humidity 93 %" in message.get_payload()
    assert esc_to == ["chief@example.org"]
    assert "ESCALATION" in message_from_bytes(esc_raw)["Subject"]
    assert hook.requests == 3
    assert [b["kind"] for b in hook.bodies] == ["alarm", "escalation"]
    assert hook.bodies[0]["event"]["alarm_id"] == "Humidity.ASM:1"


async def test_an_unreachable_smtp_server_keeps_the_mail_pending(caplog: pytest.LogCaptureFixture) -> None:
    # A port nobody listens on: bind one, note it, close it.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    clock = FakeClock(T0)
    redis = FakeRedis(server=FakeServer(version=(7, 0)))
    policy = NotificationPolicy(min_severity=AlarmSeverity.WARNING, email_to=("ops@example.org",))
    sender = EmailSender(SmtpSettings(host="127.0.0.1", port=port, timeout_s=2))
    svc = NotificationService(policy, Outbox(initial_us=US_PER_S, max_us=US_PER_S), {"email": sender}, redis, clock)
    await svc.accept(AlarmState("Seeing.ASM:1").update(to_us(T0), AlarmSeverity.WARNING, valid=True, reason="1.6"))
    with caplog.at_level(logging.ERROR):
        assert await svc.pump() == 0
    assert "ConnectionRefusedError" in caplog.text
    assert len(svc.outbox.items) == 1
    assert await redis.hlen("alarms:outbox") == 1
    await redis.aclose()
