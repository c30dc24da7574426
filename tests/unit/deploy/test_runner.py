"""The runner starts a process's parts, writes their heartbeats, and stops them all on a signal or a crash."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from deploy.runner import HEARTBEATS_KEY, Heartbeat, Part, PartFailedError, Runner
from skyops.timeutil import FakeClock

T0 = datetime(2026, 3, 20, 23, 0, tzinfo=UTC)


def waiting(log: list[str], name: str) -> Part:
    async def run(stop: asyncio.Event) -> None:
        log.append(f"{name} started")
        await stop.wait()
        log.append(f"{name} stopped")
    return Part(name, run)


async def test_stop_ends_every_part_and_simulators_stop_last() -> None:
    log: list[str] = []
    sim = waiting(log, "sim")
    sim.stop_order = 1
    parts = [sim, waiting(log, "collectors"), waiting(log, "planner")]
    stop = asyncio.Event()
    task = asyncio.create_task(Runner("test", parts).run(stop))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sorted(log) == ["collectors started", "planner started", "sim started"]
    stop.set()
    await asyncio.wait_for(task, 5)
    assert log[-1] == "sim stopped"
    assert {"collectors stopped", "planner stopped"} <= set(log)


async def test_a_crashing_part_stops_the_others_and_is_reported() -> None:
    log: list[str] = []

    async def crash(stop: asyncio.Event) -> None:
        raise ConnectionError("archive unreachable")

    runner = Runner("test", [waiting(log, "dispatcher"), Part("broken", crash)])
    with pytest.raises(PartFailedError, match="broken: ConnectionError: archive unreachable"):
        await asyncio.wait_for(runner.run(asyncio.Event()), 5)
    assert "dispatcher stopped" in log


async def test_a_part_returning_on_its_own_counts_as_a_failure() -> None:
    async def quits(stop: asyncio.Event) -> None:
        return None

    with pytest.raises(PartFailedError, match="returned before it was asked to stop"):
        await asyncio.wait_for(Runner("test", [Part("quitter", quits)]).run(asyncio.Event()), 5)


async def test_a_part_ignoring_stop_is_cancelled_after_the_timeout() -> None:
    cancelled = asyncio.Event()

    async def stubborn(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(Runner("test", [Part("stubborn", stubborn)], stop_timeout_s=0.05).run(stop), 5)
    assert cancelled.is_set()


async def test_duplicate_part_names_are_refused() -> None:
    log: list[str] = []
    with pytest.raises(ValueError, match="unique"):
        await Runner("test", [waiting(log, "a"), waiting(log, "a")]).run(asyncio.Event())


async def test_heartbeats_say_running_then_stopped_with_each_parts_health() -> None:
    redis = FakeRedis(server=FakeServer(), decode_responses=False)
    clock = FakeClock(T0)
    log: list[str] = []

    def sick() -> tuple[bool, str]:
        return False, "3 consecutive failures"

    def broken_probe() -> tuple[bool, str]:
        raise RuntimeError("probe bug")

    parts = [waiting(log, "planner"), Part("ves-sync", waiting(log, "v").run, sick),
             Part("odd", waiting(log, "o").run, broken_probe)]
    stop = asyncio.Event()
    task = asyncio.create_task(Runner("skyops-up", parts, redis=redis, clock=clock).run(stop))
    for _ in range(100):
        if await redis.hlen(HEARTBEATS_KEY) == 3:
            break
        await asyncio.sleep(0.01)  # the first heartbeat is written as the runner starts
    beats = {k.decode(): Heartbeat.decode(v) for k, v in (await redis.hgetall(HEARTBEATS_KEY)).items()}
    assert beats["planner"].healthy and beats["planner"].state == "running"
    assert beats["planner"].ts == T0 and beats["planner"].process == "skyops-up"
    assert not beats["ves-sync"].healthy and beats["ves-sync"].detail == "3 consecutive failures"
    assert not beats["odd"].healthy and "probe bug" in beats["odd"].detail
    stop.set()
    await asyncio.wait_for(task, 5)
    beats = {k.decode(): Heartbeat.decode(v) for k, v in (await redis.hgetall(HEARTBEATS_KEY)).items()}
    assert {b.state for b in beats.values()} == {"stopped"}
    await redis.aclose()


async def test_a_failed_part_heartbeat_says_failed_with_the_reason() -> None:
    redis = FakeRedis(server=FakeServer(), decode_responses=False)

    async def crash(stop: asyncio.Event) -> None:
        raise ValueError("bad config")

    with pytest.raises(PartFailedError):
        await Runner("p", [Part("alarms", crash)], redis=redis, clock=FakeClock(T0)).run(asyncio.Event())
    beat = Heartbeat.decode((await redis.hgetall(HEARTBEATS_KEY))[b"alarms"])
    assert beat.state == "failed" and not beat.healthy and "bad config" in beat.detail
    await redis.aclose()


@pytest.mark.parametrize("raw", [b"not json", b'{"part": "x"}', b'{"part": "x", "ts": "yesterday", "healthy": true, '
                                 b'"detail": "", "state": "running", "process": "p", "host": "h", "pid": 1}'])
def test_a_malformed_heartbeat_is_refused_with_the_reason(raw: bytes) -> None:
    with pytest.raises(ValueError, match="malformed heartbeat"):
        Heartbeat.decode(raw)
