"""Where alarm state lives between restarts and where readers find it: a Redis hash per kind of record."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

STATE_KEY = "alarms:state"  # hash: alarm id → JSON of its runtime (state, timers, consequence)
RULES_KEY = "alarms:rules"  # hash: alarm id → JSON of its rule (kind, guidance, consequence...)
VALUES_KEY = "alarms:values"  # string: JSON of the newest input values


class AlarmStateStore:
    """Alarm state in Redis, optionally mirrored to a JSON file.

    The file matters for the embedded mode, whose in-process Redis forgets everything on exit: the
    supervisor restores from Redis when it has the state and from the file otherwise.
    """

    def __init__(self, redis: aioredis.Redis, *, mirror: Path | None = None, prefix: str = "") -> None:
        self.redis = redis
        self.mirror = mirror
        self.state_key = prefix + STATE_KEY
        self.rules_key = prefix + RULES_KEY
        self.values_key = prefix + VALUES_KEY
        # The JSON last saved per alarm: the mirror file is written from it without encoding everything again.
        self._saved: dict[str, str] = {}
        self._values = "{}"

    async def save(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        if states:
            encoded = {k: json.dumps(v) for k, v in states.items()}
            await self.redis.hset(self.state_key, mapping={k: v for k, v in encoded.items()})
            self._saved.update(encoded)

    async def forget(self, alarm_ids: list[str]) -> None:
        """Remove saved states of alarms no rule defines any more."""
        if alarm_ids:
            await self.redis.hdel(self.state_key, *alarm_ids)
        for a in alarm_ids:
            self._saved.pop(a, None)

    async def save_values(self, values: Mapping[str, Any]) -> None:
        self._values = json.dumps(values)
        await self.redis.set(self.values_key, self._values)

    async def publish_rules(self, rules: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the rule descriptions readers show next to each alarm."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.rules_key)
            if rules:
                pipe.hset(self.rules_key, mapping={k: json.dumps(v) for k, v in rules.items()})
            await pipe.execute()

    async def load(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Saved alarm states and input values: from Redis, else from the mirror file, else empty."""
        raw = await self.redis.hgetall(self.state_key)
        if raw:
            values_raw = await self.redis.get(self.values_key)
            values = json.loads(values_raw) if values_raw else {}
            return {_text(k): json.loads(v) for k, v in raw.items()}, values
        if self.mirror is not None and self.mirror.exists():
            try:
                data = json.loads(self.mirror.read_text(encoding="utf-8"))
                return dict(data["alarms"]), dict(data.get("values", {}))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("alarm state file %s is unreadable, starting from scratch: %s", self.mirror, exc)
        return {}, {}

    async def states(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.state_key)
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def rules(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.rules_key)
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def write_mirror(self) -> None:
        """Atomically replace the mirror file with what was saved last (temporary file, then rename).

        Blocking file I/O: call it in a worker thread.
        """
        if self.mirror is None:
            return
        alarms = ",".join(f"{json.dumps(k)}:{v}" for k, v in list(self._saved.items()))
        text = f'{{"alarms":{{{alarms}}},"values":{self._values}}}'
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.mirror.parent, prefix=".alarms-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.mirror)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
