"""The syslog listeners on loopback: datagrams of several peers in one burst keep their own host and source."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

from config_db.logging import SyslogConfig
from logging_svc.syslog_intake import SyslogIntake
from skyops.bus import Bus, StreamRetention
from skyops.timeutil import FakeClock
from tests.unit.logging_svc.conftest import T0, stream_records

RETENTION = StreamRetention(max_len=100_000, max_age=timedelta(hours=1))


async def test_a_burst_from_two_peers_is_attributed_per_peer(bus: Bus, clock: FakeClock) -> None:
    intake = SyslogIntake(bus, SyslogConfig(udp_port=0, tcp_port=0, hosts={"127.0.0.2": "dome"}),
                          retention=RETENTION, clock=clock)
    await intake.start()
    senders = []
    try:
        for ip in ("127.0.0.1", "127.0.0.2"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, 0))
            senders.append(s)
        for i in range(30):
            senders[i % 2].sendto(f"<13>tag: m{i}".encode(), intake.udp_address)
        senders[0].sendto(b"garbage", intake.udp_address)
        for _ in range(200):  # real datagrams on loopback: a bounded wait for them to arrive
            if intake.received >= 31:
                break
            await asyncio.sleep(0.01)
        assert await intake.flush() == 30
    finally:
        for s in senders:
            s.close()
        await intake.stop()
    records = [r for batch in await stream_records(bus.redis) for r in batch]
    by_host = {h: sorted(int(r.message[1:]) for r in records if r.host == h) for h in ("127.0.0.1", "127.0.0.2")}
    assert by_host == {"127.0.0.1": list(range(0, 30, 2)), "127.0.0.2": list(range(1, 30, 2))}
    assert {r.source for r in records if r.host == "127.0.0.2"} == {"dome"}
    assert {r.source for r in records if r.host == "127.0.0.1"} == {"devices"}
    assert all(r.ts == T0 for r in records)
    assert intake.stats.rejected == {"syslog_garbage": 1}
