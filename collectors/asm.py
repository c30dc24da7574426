"""The ASM poller: fetch the site monitor's JSON over HTTP with timeouts and retries, validate, publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import httpx

from collectors.domain.asm import ParsedReading, all_bad, parse_reading
from collectors.publisher import SamplePublisher
from config_db.monitoring import AsmSource
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class AsmClient:
    """GETs the ASM reading; retries timeouts, connection errors and 5xx answers with backoff."""

    def __init__(self, source: AsmSource, http: httpx.AsyncClient, *, sleep: Sleep = asyncio.sleep) -> None:
        self.source = source
        self.http = http
        self._sleep = sleep

    async def fetch(self) -> bytes:
        """The body of the first good answer; raises `httpx.HTTPError` after the last retry fails."""
        attempt = 0
        while True:
            try:
                resp = await self.http.get(self.source.url, timeout=self.source.timeout_s)
                if resp.status_code >= 500:
                    raise httpx.HTTPStatusError(f"ASM answered {resp.status_code}", request=resp.request,
                                                response=resp)
                resp.raise_for_status()  # a 4xx is a configuration error: retrying will not help
                return resp.content
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500:
                    raise
                error: httpx.HTTPError = exc
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                error = exc
            attempt += 1
            if attempt > self.source.retries:
                raise error
            delay = self.source.backoff.delay(attempt)
            log.info("ASM %s: %s; retry %d/%d in %.1f s", self.source.name, _why(error), attempt,
                     self.source.retries, delay)
            await self._sleep(delay)


def _why(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class AsmPoller:
    """Polls one ASM source every `poll_period_s` and publishes a sample for every configured field.

    Nothing the ASM sends can crash it: a bad field becomes a BAD sample and a WARNING log record
    naming the field and the reason; a failed poll makes every field BAD and logs an ERROR.
    """

    def __init__(self, source: AsmSource, client: AsmClient, publisher: SamplePublisher, *,
                 clock: Clock | None = None) -> None:
        self.source = source
        self.client = client
        self.publisher = publisher
        self.clock: Clock = clock or SystemClock()
        self.polls = 0
        self.failures = 0
        self.consecutive_failures = 0

    @property
    def up(self) -> bool:
        return self.polls > 0 and self.consecutive_failures == 0

    async def poll_once(self) -> ParsedReading:
        polled_at = self.clock.now()
        self.polls += 1
        try:
            body = await self.client.fetch()
        except httpx.HTTPError as exc:
            self.failures += 1
            self.consecutive_failures += 1
            reading = all_bad(self.source, polled_at, f"poll failed after {self.source.retries} retries: {_why(exc)}")
            log.error("ASM %s: %s", self.source.name, reading.problems[0],
                      extra={"component": f"collectors.asm.{self.source.name}"})
        else:
            reading = parse_reading(self.source, body, polled_at)
            self.consecutive_failures = 0
            for problem in reading.problems:
                log.warning("ASM %s: %s", self.source.name, problem,
                            extra={"component": f"collectors.asm.{self.source.name}"})
        await self.publisher.publish(reading.samples)
        return reading

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; a publish failure is logged and the next poll goes ahead."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as exc:  # the bus may be down; the poller must outlive it
                log.warning("ASM %s: poll not published: %s: %s", self.source.name, type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.source.poll_period_s)
