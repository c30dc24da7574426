"""Syslog listeners (UDP and TCP) for devices and firmware: messages become LogRecords on the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from datetime import timedelta

from config_db.logging import SyslogConfig
from logging_svc.domain.rejects import IntakeStats, Rejected
from logging_svc.domain.syslog import SyslogContext, SyslogFields, TcpFramer, fields_to_batch, parse_or_reject
from skyops import codec, streams
from skyops.bus import Bus, StreamRetention
from skyops.timeutil import Clock, SystemClock

log = logging.getLogger(__name__)


class SyslogIntake:
    """Parses what the listeners receive and publishes it in batches; holds a bounded backlog while the bus is down.

    `accept` is synchronous and cheap (parse, append); the bus sees one entry per `batch_size`
    records. Refused messages are counted by reason and summarised in one warning per flush, so a
    device spewing garbage cannot flood the log it is feeding.
    """

    def __init__(
        self,
        bus: Bus,
        config: SyslogConfig,
        *,
        retention: StreamRetention,
        clock: Clock | None = None,
        stream: str = streams.LOG_RECORDS,
        batch_size: int = 1000,
        max_buffer: int = 200_000,
        flush_interval: timedelta = timedelta(milliseconds=100),
    ) -> None:
        self.bus = bus
        self.config = config
        self.retention = retention
        self.clock: Clock = clock or SystemClock()
        self.stream = stream
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.flush_interval_s = flush_interval / timedelta(seconds=1)
        self.stats = IntakeStats()
        self.received = 0
        self.dropped = 0  # parsed records lost to a full backlog while the bus was down
        self.publish_failures = 0
        self._buffer: list[SyslogFields] = []
        self._unreported: list[Rejected] = []
        self._full = asyncio.Event()
        self._udp: _UdpListener | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False

    # -- parsing -----------------------------------------------------------------------------------

    def accept(self, data: bytes, peer: str) -> None:
        self.accept_many([data], peer)

    def accept_many(self, messages: Sequence[bytes | Rejected], peer: str) -> None:
        """Messages that arrived together from `peer` (one TCP read, one UDP burst), stamped with one `now`."""
        ctx = SyslogContext(now=self.clock.now(), peer_host=peer, default_source=self.config.source,
                            sources_by_host=self.config.hosts)
        limit = self.config.max_message_bytes
        buffer = self._buffer
        for data in messages:
            self.received += 1
            if isinstance(data, Rejected):  # refused by the TCP framer
                self.reject(data)
                continue
            result = parse_or_reject(data, ctx, self.received, limit)
            if isinstance(result, Rejected):
                self.reject(result)
                continue
            if len(buffer) >= self.max_buffer:
                self.dropped += 1
                continue
            buffer.append(result)
            self.stats.accepted_bytes += len(data)
        if len(buffer) >= self.batch_size:
            self._full.set()

    def reject(self, rejected: Rejected) -> None:
        self.stats.reject([rejected])
        if len(self._unreported) < 100:
            self._unreported.append(rejected)

    # -- publishing --------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Publish the buffered records; on a bus error they stay buffered. Returns how many went."""
        self._report_rejections()
        records, self._buffer = self._buffer, []
        self._full.clear()
        if not records:
            return 0
        try:
            await self._publish(records)
        except Exception as exc:  # Redis down: keep the backlog (bounded) and retry on the next flush
            self.publish_failures += 1
            self._buffer = records + self._buffer
            if len(self._buffer) > self.max_buffer:
                self.dropped += len(self._buffer) - self.max_buffer
                del self._buffer[self.max_buffer:]
            log.warning("syslog intake: bus unavailable, %d records held: %s", len(self._buffer), exc)
            return 0
        self.stats.accepted += len(records)
        return len(records)

    async def _publish(self, records: Sequence[SyslogFields]) -> None:
        batch = fields_to_batch(records)
        payloads = [codec.encode_log_batch(part) for part in batch.parts(self.batch_size)]
        await self.bus.publish_many(self.stream, payloads, retention=self.retention)

    def _report_rejections(self) -> None:
        if not self._unreported:
            return
        first = self._unreported[0]
        log.warning("syslog intake refused %d message(s); first (#%d): %s: %s", len(self._unreported),
                    first.line, first.kind.value, first.reason)
        self._unreported = []

    async def _flush_loop(self) -> None:
        # Ended by a flag, not by cancellation: Python 3.11's wait_for can swallow a cancel that
        # races with its wake-up, which left stop() waiting for this loop forever.
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._full.wait()
            await self.flush()

    # -- listeners ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the UDP and TCP listeners (port 0 picks a free port) and the periodic flush."""
        self._udp = _UdpListener(self, self.config.host, self.config.udp_port)
        self._tcp = await asyncio.start_server(self._serve_tcp, self.config.host, self.config.tcp_port)
        self._stopping = False
        self._flusher = asyncio.create_task(self._flush_loop(), name="syslog-flush")

    async def stop(self) -> None:
        """Close the listeners and connections, then publish what is buffered."""
        if self._flusher is not None:
            self._stopping = True
            self._full.set()
            await self._flusher
            self._flusher = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
        await self.flush()

    @property
    def udp_address(self) -> tuple[str, int]:
        assert self._udp is not None, "start() first"
        return self._udp.address

    @property
    def tcp_address(self) -> tuple[str, int]:
        assert self._tcp is not None, "start() first"
        host, port = self._tcp.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        framer = TcpFramer(self.config.max_message_bytes)
        self._connections.add(writer)
        try:
            while data := await reader.read(262144):
                self.accept_many(framer.feed(data), peer)
        except (ConnectionError, OSError) as exc:
            log.info("syslog TCP connection from %s ended: %s", peer, exc)
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class _UdpListener:
    """A UDP socket drained in bursts: asyncio's datagram transport reads one datagram per loop turn,
    which drops most of a device's burst once the kernel buffer fills."""

    BURST = 1000
    RCVBUF = 4 * 1024 * 1024

    def __init__(self, intake: SyslogIntake, host: str, port: int) -> None:
        self.intake = intake
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):  # the kernel may cap it; a smaller buffer still works
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)
            self.sock.bind((host, port))
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        host, port = self.sock.getsockname()[:2]
        self.address = (str(host), int(port))
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        recv = self.sock.recvfrom
        burst: list[tuple[bytes, str]] = []
        try:
            for _ in range(self.BURST):
                data, addr = recv(65535)
                burst.append((data, str(addr[0])))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # e.g. ICMP errors surfacing on the socket: keep listening
            log.warning("syslog UDP listener error: %s", exc)
        # Consecutive datagrams of one peer are parsed together (one clock reading, one context).
        start = 0
        for i in range(1, len(burst) + 1):
            if i == len(burst) or burst[i][1] != burst[start][1]:
                self.intake.accept_many([d for d, _ in burst[start:i]], burst[start][1])
                start = i

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
