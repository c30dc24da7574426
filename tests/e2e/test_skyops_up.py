"""`skyops up` (what `make run` starts): the whole platform in one process, with no server installed.

It serves the page, plans the night from the shipped OB set, archives the simulators' samples, pushes
the plan to the P2 emulator, and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

pytestmark = pytest.mark.e2e
T = TypeVar("T")
MIN_BLOCKS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Output:
    """The child's output, read on a thread so its pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> None:
        self._thread.join(timeout=10)


def wait_for(what: str, probe: Callable[[], T | None], proc: subprocess.Popen[str], out: Output,
             timeout_s: float = 90) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"skyops up exited ({proc.returncode}) while waiting for {what}:\n{out.text[-3000:]}")
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found is not None:
            return found
        time.sleep(0.5)  # polling a real child process
    raise AssertionError(f"timed out waiting for {what}:\n{out.text[-3000:]}")


@pytest.fixture
def skyops_up(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Output, Path]]:
    port = free_port()
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}  # embedded: no server URLs
    env["COLUMNS"] = "250"  # rich wraps at the terminal width: keep the printed lines whole
    skyops = Path(sys.executable).with_name("skyops")
    proc = subprocess.Popen([str(skyops), "up", "--port", str(port), "--syslog-port", "0", "--var-dir", str(var)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    try:
        yield f"http://127.0.0.1:{port}", proc, out, var
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)
        out.join()


def graphql(base: str, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, headers=headers, timeout=10)
    body: dict[str, Any] = r.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def test_skyops_up_serves_plans_archives_syncs_and_stops_cleanly(
    skyops_up: tuple[str, subprocess.Popen[str], Output, Path],
) -> None:
    base, proc, out, var = skyops_up

    health = wait_for("health", lambda: httpx.get(f"{base}/health", timeout=2).json(), proc, out)
    assert health["status"] == "ok" and health["mode"] == "embedded"
    assert (var / "archive.sqlite3").exists()
    page = httpx.get(f"{base}/", timeout=5)
    assert page.status_code == 200 and "<html" in page.text.lower()

    printed = wait_for("the admin password", lambda: re.search(r"password (\S+) \(shown once", out.text), proc, out)
    assert f"operator page at {base}/" in out.text
    token = graphql(base, "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                    u="admin", p=printed.group(1))["login"]["token"]

    def planned() -> dict[str, Any] | None:
        plan = graphql(base, "{ plan { planId night reason blocks { obId obType start end raDeg decDeg } } }",
                       token)["plan"]
        return plan if plan is not None and len(plan["blocks"]) >= MIN_BLOCKS else None

    plan = wait_for("the night plan", planned, proc, out)
    assert {b["obType"] for b in plan["blocks"]} >= {"CTOB"}
    assert all(b["start"] < b["end"] for b in plan["blocks"])

    def archived() -> list[dict[str, Any]] | None:
        values = graphql(base, '{ latest(points: ["lasilla.asm.wind_speed", "ntt.tcs.state"]) '
                               "{ point value quality } }", token)["latest"]
        return values if len(values) == 2 else None

    values = {v["point"]: v for v in wait_for("archived samples of both simulators", archived, proc, out)}
    assert values["lasilla.asm.wind_speed"]["quality"] == "GOOD"
    assert values["ntt.tcs.state"]["value"] in ("PARKED", "SLEWING", "TRACKING")

    def ves_written() -> int | None:
        snapshot = var / "p2-emulator" / "p2-emulator.json"
        if not snapshot.exists():
            return None
        n = len(json.loads(snapshot.read_text())["obs"])
        return n if n >= MIN_BLOCKS else None

    assert wait_for("the plan's OBs in the P2 emulator", ves_written, proc, out) >= MIN_BLOCKS

    status = httpx.get(f"{base}/status", timeout=10).json()
    parts = {r["name"] for r in status["rows"] if r["kind"] == "part"}
    assert {"monitoring", "logging", "alarm-supervisor", "alarm-dispatcher", "planner", "ves-sync", "hmi",
            "asm-simulator", "telescope-simulator", "p2-emulator"} <= parts

    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=45) == 0
    out.join()
    assert "stopped cleanly" in out.text
    assert "Traceback" not in out.text
