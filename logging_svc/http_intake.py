"""HTTP intake of JSON-lines log batches, one key per source: bad lines are refused, good ones kept."""

# No `from __future__ import annotations`: FastAPI must see the route signatures as real objects.

import asyncio
import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from config_db.logging import HttpIntakeConfig
from logging_svc.domain.jsonlines import ParsedBatch, parse_batch
from logging_svc.domain.rejects import IntakeStats
from skyops import codec, streams
from skyops.bus import Bus, StreamRetention
from skyops.errors import BackendUnavailableError
from skyops.records import LogBatch
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 1000
INLINE_PARSE_BYTES = 256 * 1024


class LineError(BaseModel):
    line: int
    kind: str
    reason: str


class IntakeResponse(BaseModel):
    """What became of a batch: how many records were kept, and why each refused line was refused."""

    accepted: int
    rejected: int
    errors: list[LineError]


class UnknownKeyError(Exception):
    """The presented key belongs to no configured source."""


class HttpIntake:
    """Turns authenticated JSON-lines bodies into log batches on the bus."""

    def __init__(
        self,
        bus: Bus,
        config: HttpIntakeConfig,
        *,
        retention: StreamRetention,
        clock: Clock | None = None,
        stream: str = streams.LOG_RECORDS,
    ) -> None:
        self.bus = bus
        self.config = config
        self.retention = retention
        self.clock: Clock = clock or SystemClock()
        self.stream = stream
        self.stats = IntakeStats()
        self.auth_failures = 0
        self._keys = [(k.get_secret_value().encode(), src) for src, k in config.keys.items()]

    def source_of(self, key: str) -> str:
        """The source a key belongs to; every key is compared in constant time."""
        found = None
        presented = key.encode()
        for secret, source in self._keys:
            if hmac.compare_digest(secret, presented):
                found = source
        if found is None:
            self.auth_failures += 1
            raise UnknownKeyError("unknown intake key")
        return found

    async def ingest(self, source: str, body: bytes) -> ParsedBatch:
        """Parse and publish one batch; raises BackendUnavailableError (nothing kept) if the bus is down."""
        now, limit = self.clock.now(), self.config.max_line_bytes
        if len(body) > INLINE_PARSE_BYTES:
            # A big batch parses for a while: off the event loop, so the app keeps serving meanwhile.
            parsed = await asyncio.to_thread(parse_batch, body, source=source, now=now, max_line_bytes=limit)
        else:
            parsed = parse_batch(body, source=source, now=now, max_line_bytes=limit)
        await self.publish(parsed.batch)
        self.stats.accepted += len(parsed.batch)
        self.stats.accepted_bytes += parsed.accepted_bytes
        self.stats.reject(parsed.rejected)
        if parsed.rejected:
            first = parsed.rejected[0]
            log.warning("log intake from %s: %d of %d lines refused; first, line %d: %s", source,
                        len(parsed.rejected), len(parsed.rejected) + len(parsed.batch), first.line, first.reason)
        return parsed

    async def publish(self, batch: LogBatch) -> None:
        payloads = [codec.encode_log_batch(part) for part in batch.parts(self.config.records_per_entry)]
        if payloads:
            await self.bus.publish_many(self.stream, payloads, retention=self.retention)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"batch is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"batch exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def make_router(intake: HttpIntake) -> APIRouter:
    """`POST /logs` with `Authorization: Bearer <source key>` and a JSON-lines body."""
    router = APIRouter(tags=["logs"])
    bearer = HTTPBearer(auto_error=False)

    def source(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if creds is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "send the source's intake key as a Bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            return intake.source_of(creds.credentials)
        except UnknownKeyError:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown intake key",
                                headers={"WWW-Authenticate": "Bearer"}) from None

    @router.post("/logs", response_model=IntakeResponse)
    async def post_logs(request: Request, src: Annotated[str, Depends(source)]) -> JSONResponse:
        body = await _read_body(request, intake.config.max_body_bytes)
        try:
            parsed = await intake.ingest(src, body)
        except BackendUnavailableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"the log bus is unreachable, nothing was kept; retry the batch: {exc}") from None
        result = IntakeResponse(
            accepted=len(parsed.batch),
            rejected=len(parsed.rejected),
            errors=[LineError(line=r.line, kind=r.kind.value, reason=r.reason)
                    for r in parsed.rejected[:MAX_LISTED_ERRORS]],
        )
        # A batch whose every line was refused is the sender's error; a partial one is a success.
        all_refused = parsed.rejected and not len(parsed.batch)
        code = status.HTTP_422_UNPROCESSABLE_CONTENT if all_refused else status.HTTP_200_OK
        return JSONResponse(result.model_dump(), status_code=code)

    return router


def make_app(intake: HttpIntake) -> FastAPI:
    """A stand-alone intake app (deploy may instead mount `make_router` into the HMI app)."""
    app = FastAPI(title="skyops log intake")
    app.include_router(make_router(intake))
    return app
