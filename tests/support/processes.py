"""Real `skyops run` processes for end-to-end and fault tests: start, kill, restart, stop, and wait on them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

from skyops.messages import PlanEvent, decode_plan_event
from skyops.streams import PLAN_EVENTS

T = TypeVar("T")
SKYOPS = str(Path(sys.executable).with_name("skyops"))


class Processes:
    """The platform's `skyops run` processes, each logging to its own file, restartable by name."""

    def __init__(self, env: dict[str, str], logs: Path, commands: dict[str, list[str]] | None = None) -> None:
        self.env = env
        self.logs = logs
        self.commands = commands or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: Counter[str] = Counter()
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> None:
        """`skyops run ARGS` (or the command registered for `name`); a restart logs to a new file."""
        self.starts[name] += 1
        with (self.logs / f"{name}.{self.starts[name]}.log").open("wb") as out:
            self.procs[name] = subprocess.Popen([SKYOPS, "run", *(args or self.commands[name])], env=self.env,
                                                stdout=out, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        """kill -9: no drain, no final write, no acknowledgement."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_one(self, name: str, timeout_s: float = 60) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)

    def ready(self, name: str, redis_url: str, timeout_s: float = 120) -> None:
        """Wait until `name`'s current process has written its first heartbeat: its parts are running."""
        pid = self.procs[name].pid
        wait_for(f"{name} (pid {pid}) running", lambda: True if pid in heartbeat_pids(redis_url) else None, self,
                 timeout_s, period_s=0.2)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.{self.starts[name]}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")

    def tails(self, n: int = 1500) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-n:]}" for name in self.procs)

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        deadline = time.monotonic() + 60
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(timeout=10)
        return codes


def wait_for(what: str, probe: Callable[[], T | None], procs: Processes | None, timeout_s: float,
             period_s: float = 0.5, check_alive: bool = True) -> T:
    """Poll `probe` (real processes: real time) until it answers something, or fail with every process's log tail.

    With SKYOPS_TEST_TRACE_WAITS set, each wait prints how long it took (run pytest with -s): where a suite's
    time goes."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if procs is not None and check_alive:
            procs.check_alive()
        try:
            found = probe()
        except (httpx.HTTPError, OSError, redis.RedisError) as exc:
            found, last_error = None, f"{type(exc).__name__}: {exc}"
        if found is not None:
            if os.environ.get("SKYOPS_TEST_TRACE_WAITS"):
                print(f"[wait] {time.monotonic() - deadline + timeout_s:6.1f} s  {what}", file=sys.stderr, flush=True)
            return found
        time.sleep(period_s)
    logs = procs.tails() if procs is not None else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} {last_error}\n{logs}")


def listening(port: int) -> bool | None:
    """True once something accepts TCP connections on loopback `port` (a server process is up)."""
    with socket.socket() as s:
        s.settimeout(1)
        return True if s.connect_ex(("127.0.0.1", port)) == 0 else None


def heartbeat_pids(redis_url: str) -> set[int]:
    """The process ids of every running part's newest heartbeat (what `skyops status` reads)."""
    from deploy.runner import HEARTBEATS_KEY, Heartbeat

    client = redis.Redis.from_url(redis_url)
    try:
        beats = [Heartbeat.decode(raw) for raw in client.hvals(HEARTBEATS_KEY)]
    finally:
        client.close()
    return {b.pid for b in beats if b.state == "running"}


def p2_ves(p2_url: str) -> list[int]:
    """The operator's VES in the P2 emulator at `p2_url`: its P2 OB ids, in order."""
    login = httpx.post(f"{p2_url}/api/login", data={"username": "operator", "password": "p2-emulator"}, timeout=10)
    ves = httpx.get(f"{p2_url}/api/v1/executionSequences/SOXS", timeout=10,
                    headers={"Authorization": f"Bearer {login.json()['access_token']}"}).json()
    return [int(e["obId"]) for e in ves]


def plan_events(redis_url: str) -> list[PlanEvent]:
    """Every plan published on the platform's `plan.events`, oldest first."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [decode_plan_event(fields[b"d"]) for _, fields in client.xrange(PLAN_EVENTS)]
    finally:
        client.close()


def fast_alarms(path: Path, *, clear_s: dict[str, float] | None = None, default_clear_s: float = 5) -> Path:
    """The shipped alarm rules with no activation delay and short clear delays (`clear_s` by rule name), so
    transitions happen within a test; written to `path` for SKYOPS_ALARMS_RULES_FILE."""
    import yaml

    from config_db.loader import default_path

    data: dict[str, Any] = yaml.safe_load(default_path("alarms.yaml").read_text())
    for rule in data["rules"]:
        if "activation_delay_s" in rule:
            rule["activation_delay_s"] = dict.fromkeys(rule["activation_delay_s"], 0)
        if "clear_delay_s" in rule:
            rule["clear_delay_s"] = (clear_s or {}).get(rule["name"], min(default_clear_s, rule["clear_delay_s"]))
    path.write_text(yaml.safe_dump(data))
    return path


def fast_monitoring(path: Path, *, poll_s: float = 1, hold_s: float = 5) -> Path:
    """The shipped monitoring config with the ASM polled every `poll_s` (a lost sample leaves a visible gap, a
    scenario step is seen at once) and samples held `hold_s` (not 30) by the dispatcher, so a check need not
    wait long; written to `path` for `skyops run collectors|dispatcher --config`."""
    import yaml

    from config_db.loader import default_path

    data: dict[str, Any] = yaml.safe_load(default_path("monitoring.yaml").read_text())
    for source in data["sources"]["asm"]:
        source["poll_period_s"] = poll_s
    data["dispatcher"]["hold_s"] = hold_s
    path.write_text(yaml.safe_dump(data))
    return path
