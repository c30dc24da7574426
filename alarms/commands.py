"""Operator actions sent to the supervisor (the only writer of alarm state) and its replies."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Final, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from skyops.bus import Bus, StreamRetention
from skyops.errors import BackendUnavailableError, SkyopsError
from skyops.messages import UtcDatetime
from skyops.records import AlarmSeverity

ALARM_COMMANDS: Final = "alarm.commands"
REPLY_PREFIX: Final = "alarms:reply:"
REPLY_TTL_S: Final = 120


class AlarmCommand(BaseModel):
    """One operator action on one alarm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    action: Literal["ack", "shelve", "unshelve", "comment"]
    alarm_id: str = Field(min_length=1, max_length=200)
    user: str = Field(min_length=1, max_length=100)
    comment: str = Field(min_length=1, max_length=2000)
    seen: AlarmSeverity | None = None  # for ack: the severity the operator was shown
    until: UtcDatetime | None = None  # for shelve: mandatory expiry


class CommandReply(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str
    ok: bool
    error: str | None = None
    events: int = 0


class AlarmCommandError(SkyopsError, ValueError):
    """The supervisor refused an operator action; the message says why."""


class SupervisorTimeoutError(BackendUnavailableError):
    """No supervisor answered in time (is the alarm service running?)."""


COMMAND_RETENTION = StreamRetention(max_len=10_000, max_age=timedelta(hours=1))


async def send_command(
    bus: Bus, command: AlarmCommand, *, timeout_s: float = 5.0, retention: StreamRetention = COMMAND_RETENTION,
    stream: str = ALARM_COMMANDS,
) -> CommandReply:
    """Send `command` and wait for the supervisor's reply; a refusal raises AlarmCommandError."""
    await bus.publish(stream, command.model_dump_json().encode(), retention=retention)
    redis: aioredis.Redis = bus.redis
    reply = await redis.blpop([REPLY_PREFIX + command.request_id], timeout=timeout_s)
    if reply is None:
        raise SupervisorTimeoutError(f"no answer from the alarm supervisor within {timeout_s:g} s")
    answer = CommandReply.model_validate_json(reply[1])
    if not answer.ok:
        raise AlarmCommandError(answer.error or "refused")
    return answer


async def send_reply(redis: aioredis.Redis, reply: CommandReply) -> None:
    key = REPLY_PREFIX + reply.request_id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, reply.model_dump_json().encode())
        pipe.expire(key, REPLY_TTL_S)
        await pipe.execute()
