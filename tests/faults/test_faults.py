"""Faults during the wind scenario lose nothing and duplicate nothing: kill -9 of each consumer, Cassandra down,
Redis restarted, the P2 emulator down.

The platform runs as `skyops run` processes on the suite's own Redis and Cassandra (tests/faults/conftest.py).
Each test drives the ASM wind scenario (alarm → re-plan → VES rewrite) and sends log records with unique
ids through the real logging handler while the fault happens, then checks the ledgers: every sample
published for the weather points in the window archived once, every alarm transition the supervisor
published in the alarm history once, every log record archived once, and P2's VES the last one written.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from skyops.records import AlarmSeverity
from skyops.streams import MON_SAMPLES, PLAN_EVENTS
from skyops.timeutil import to_us
from tests.faults import harness
from tests.faults.conftest import FaultServers, RunningPlatform
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

# How long Cassandra stays down (60 s in the real run; shorter for a quick look).
CASSANDRA_OUTAGE_S = float(os.environ.get("SKYOPS_FAULTS_CASSANDRA_OUTAGE_S", "60"))
WEATHER_POINTS = {"lasilla.asm.wind_speed", "lasilla.asm.wind_gust", "lasilla.asm.wind_direction",
                  "lasilla.asm.humidity", "lasilla.asm.temperature", "lasilla.asm.data_age_s"}
REDIS_OUTAGE_S = 8.0
ASM_POLLED_POINT = "lasilla.asm.data_age_s"  # published on every poll (no duplicate suppression)
VES_ALARM = "VesSync.P2:1"
WIND_ALARM = "WindPointing.NTT:1"
CALM_WIND = 4.0  # m/s, well below the pointing restriction


def pause(seconds: float) -> None:
    time.sleep(seconds)  # real processes working through real time while the fault lasts


def settle_and_check(p: RunningPlatform, start: datetime, sent: list[str], *, sample_points: set[str],
                     timeout_s: float = 150) -> dict[str, int]:
    """Wait for every consumer group to catch up, then hold every ledger to nothing lost, nothing twice."""
    s, procs = p.scenario, p.procs
    for name, (stream, group) in harness.CONSUMER_GROUPS.items():
        if stream == MON_SAMPLES:
            continue  # always flowing; the sample ledger below waits for the window instead
        wait_for(f"{name} to catch up on {stream}", harness.caught_up(s, stream, group), procs, timeout_s)
    end = harness.window_end(s, margin_s=2)
    wall_end = datetime.now(start.tzinfo) + timedelta(seconds=1)
    counts: dict[str, int] = {}

    def settled(check: Callable[[], harness.Ledger], what: str) -> None:
        last: list[harness.Ledger] = []

        def probe() -> bool | None:
            ledger = check()
            last[:] = [ledger]
            return True if ledger.ok else None

        try:
            wait_for(what, probe, procs, timeout_s, period_s=1)
        except AssertionError:
            raise AssertionError(f"{what}: {last[0].problems if last else 'never checked'}\n{procs.tails()}") from None
        counts.update(last[0].counts)

    clock_start = harness.on_platform_clock(s, start)
    settled(lambda: asyncio.run(harness.sample_ledger(s, sample_points, clock_start, end)),
            "every published sample archived once")
    settled(lambda: asyncio.run(harness.alarm_ledger(s, clock_start - timedelta(minutes=5), end)),
            "every alarm transition archived once")
    settled(lambda: asyncio.run(harness.log_ledger(s, sent, start - timedelta(minutes=1), wall_end)),
            "every log record archived once")
    settled(lambda: harness.ves_ledger(s), "P2's VES is the last one written")
    return counts


def wind_scenario_with(p: RunningPlatform, fault: Callable[[], None]) -> tuple[datetime, list[str]]:
    """Wind up (alarm, re-plan, VES rewrite), the fault, wind down (alarm clears, re-plan); log records all along."""
    s = p.scenario
    start = harness.wall_now()
    emitter = harness.LogEmitter(s)
    since = harness.on_platform_clock(s, start)
    try:
        harness.set_wind(s, 13.5)
        # The fault strikes once the wind alarm has moved, however loaded the machine (a fixed pause was flaky).
        wait_for("the wind alarm to move", lambda: True if any(
            e.alarm_id == WIND_ALARM and e.ts >= since for e in harness.alarm_events(s.redis_url)) else None,
            p.procs, 90)
        fault()
        # Calm, not back to the weather model: the model's own wind at this hour may hold the alarm up.
        harness.set_wind(s, CALM_WIND)
    finally:
        sent = emitter.close()
    # Cleared before the next test raises it again: an alarm still up would not move then.
    wait_for("the wind alarm to clear", lambda: True if wind_alarm_severity(s) == AlarmSeverity.NONE else None,
             p.procs, 90)
    assert len(sent) > 50, "the log emitter hardly ran"
    return start, sent


def wind_alarm_severity(s: harness.Scenario) -> AlarmSeverity | None:
    """The wind alarm's severity in its newest event (None before its first)."""
    events = [e for e in harness.alarm_events(s.redis_url) if e.alarm_id == WIND_ALARM]
    return events[-1].severity if events else None


@pytest.mark.parametrize("service", list(harness.CONSUMER_GROUPS))
def test_kill_9_a_consumer_mid_scenario_loses_and_duplicates_nothing(platform: RunningPlatform, service: str) -> None:
    s, procs = platform.scenario, platform.procs
    plans_before = len(harness.plan_events(s.redis_url))

    def kill_and_restart() -> None:
        procs.kill(service)
        harness.request_replan(s, f"fault suite: {service} killed")
        pause(5)  # the others keep producing into its backlog
        procs.start(service)
        procs.ready(service, s.redis_url)  # back at work before the wind calms down

    start, sent = wind_scenario_with(platform, kill_and_restart)
    counts = settle_and_check(platform, start, sent, sample_points=WEATHER_POINTS)
    assert counts["samples"] > 0 and counts["log_records"] == len(sent)
    assert len(harness.plan_events(s.redis_url)) > plans_before, "no re-plan happened during the scenario"
    since = harness.on_platform_clock(s, start)
    wait_for("the alarm supervisor to catch up on mon.samples",
                     lambda: True if (harness.group_lag(s.redis_url, MON_SAMPLES, "alarms") or 0) < 10 else None,
                     procs, 120)
    assert any(e.alarm_id == WIND_ALARM and e.ts >= since for e in harness.alarm_events(s.redis_url)), \
        "the wind alarm never moved during the scenario"


def test_cassandra_down_backlog_holds_in_redis_and_drains(platform: RunningPlatform,
                                                          fault_servers: FaultServers) -> None:
    s, procs = platform.scenario, platform.procs
    backlog: list[int] = []

    def outage() -> None:
        fault_servers.cassandra.stop()
        t_end = time.monotonic() + CASSANDRA_OUTAGE_S
        while time.monotonic() < t_end:
            lag = harness.group_lag(s.redis_url, MON_SAMPLES, "archive")
            backlog.append(lag or 0)
            pause(min(5.0, max(0.1, t_end - time.monotonic())))
        fault_servers.cassandra.start()

    start, sent = wind_scenario_with(platform, outage)
    assert max(backlog) > backlog[0], f"no backlog built up in Redis while Cassandra was down: {backlog}"
    counts = settle_and_check(platform, start, sent, sample_points=WEATHER_POINTS, timeout_s=240)
    assert counts["log_records"] == len(sent)
    assert harness.group_lag(s.redis_url, MON_SAMPLES, "archive") is not None
    procs.check_alive()


def test_redis_restart_producers_buffer_and_resend(platform: RunningPlatform, fault_servers: FaultServers) -> None:
    s, procs = platform.scenario, platform.procs
    outage: list[datetime] = []

    def restart() -> None:
        fault_servers.redis.stop()
        outage.append(harness.clock_now(s))
        pause(REDIS_OUTAGE_S)  # producers keep collecting and logging into their buffers
        fault_servers.redis.start()
        outage.append(harness.clock_now(s))

    start, sent = wind_scenario_with(platform, restart)
    counts = settle_and_check(platform, start, sent, sample_points=WEATHER_POINTS, timeout_s=180)
    assert counts["log_records"] == len(sent)
    # The ASM is polled every second: a collector that dropped what it polled while Redis was down would
    # leave a silence as long as the outage in what reached the stream.
    lo, hi = outage[0] - timedelta(seconds=5), outage[1] + timedelta(seconds=5)
    gap = harness.max_gap_s(s.redis_url, ASM_POLLED_POINT, to_us(lo), to_us(hi))
    assert gap < REDIS_OUTAGE_S - 2, f"{ASM_POLLED_POINT} silent for {gap:.1f} s around the Redis restart"
    procs.check_alive()


def test_p2_down_raises_the_ves_sync_alarm_which_clears_after_recovery(platform: RunningPlatform) -> None:
    s, procs = platform.scenario, platform.procs
    start = harness.clock_now(s)

    def ves_alarm_actions() -> list[str]:
        return [e.action for e in harness.alarm_events(s.redis_url) if e.alarm_id == VES_ALARM and e.ts >= start]

    procs.stop_one("p2")
    try:
        # Plans keep coming while P2 is down: each sync fails, and the failures count up to the alarm.
        def raised() -> bool | None:
            harness.request_replan(s, "fault suite: P2 down")
            return True if "raise" in ves_alarm_actions() else None

        wait_for("the VES-sync alarm", raised, None, 180, period_s=2)
    finally:
        procs.start("p2")
    harness.request_replan(s, "fault suite: P2 back")

    def cleared() -> bool | None:
        transitions = [a for a in ves_alarm_actions() if a in ("raise", "change", "clear")]
        return True if transitions[-1:] == ["clear"] else None

    wait_for("the VES-sync alarm to clear", cleared, procs, 180, period_s=1)
    wait_for("the VES sync to catch up",
                     lambda: True if harness.group_lag(s.redis_url, PLAN_EVENTS, "ves_sync") == 0 else None,
                     procs, 120)
    assert harness.ves_ledger(s).ok, harness.ves_ledger(s).problems


def test_a_restarted_planner_never_reuses_a_plan_id(platform: RunningPlatform) -> None:
    s, procs = platform.scenario, platform.procs
    harness.request_replan(s, "fault suite: before the planner restart")
    wait_for("the planner to catch up", harness.caught_up(s, *harness.CONSUMER_GROUPS["planner"]), procs, 120)
    procs.kill("planner")
    procs.start("planner")
    harness.request_replan(s, "fault suite: after the planner restart")
    wait_for("the planner to catch up", harness.caught_up(s, *harness.CONSUMER_GROUPS["planner"]), procs, 180)
    assert harness.reused_plan_ids(s.redis_url) == []
