"""Operator page first render: navigation start → alarm table, weather/telescope panels and timeline filled.

The whole HMI runs as `skyops up` builds it (embedded bus, SQLite archive and operational DB, the alarm
supervisor), seeded with an hour of history for the panels' points, a raised alarm and a night plan. Debian's
Chromium (`/usr/bin/chromium`, never a downloaded browser) is driven by Playwright; every load uses a fresh
browser context (cold cache), already logged in (token in sessionStorage), like a control-room screen reloading.

The baseline is the same page with its pre-fix loading (`?serial`: one request per snapshot — me, latest values,
alarms, plan, plan history — each awaited before the next, all started only once the module has loaded), measured
in the same run. "after first byte" subtracts the time the browser took to get the HTML's first byte (a fresh
renderer process and the connection), which the page cannot change and which dominates the noise on a busy host.

Then the same against the whole platform (`skyops up` in a subprocess: simulators, collectors, alarms, planner,
VES sync and the HMI in one process and one event loop), where the server's own latency under load shows.

    python bench/hmi_page.py            # 15 loads of each variant, then 8 against `skyops up`
    python bench/hmi_page.py --quick    # 5 and 4
    python bench/hmi_page.py --no-up    # the HMI alone
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from playwright.sync_api import Browser, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, p, print_table, ratio, write_results
from skyops.codec import encode_samples
from skyops.messages import ConsequenceKind, PlanEvent, PlannedBlock, PlanTrigger
from skyops.records import Sample, SampleBatch
from skyops.streams import MON_SAMPLES, PLAN_EVENTS
from tests.support.hmi_server import PASSWORD, RET
from tests.support.hmi_server import Server as HmiServer

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
USER = "otto"
POINTS = {"lasilla.asm.wind_speed": 7.5, "lasilla.asm.humidity": 41.0, "lasilla.asm.seeing": 0.82,
          "lasilla.asm.temperature": 11.2, "lasilla.asm.wind_direction": 240.0, "lasilla.asm.pressure": 771.0,
          "ntt.tcs.altitude": 62.4, "ntt.tcs.azimuth": 181.0, "ntt.tcs.dome_azimuth": 181.5,
          "ntt.tcs.focus": 12.1}
# Filled: the alarm table has its count, both panels show values, the timeline has its night.
FILLED = """() => {
  const text = (sel) => (document.querySelector(sel)?.textContent || "").trim();
  const ok = text("#alarm-count") && text("#weather .value .v")
             && text("#telescope .value .v") && text("#plan-night");
  return ok ? performance.now() : false;
}"""


class Server(HmiServer):
    """The HMI (as deploy builds it) with a raised CRITICAL alarm and two plans of tonight, for the page to fill."""

    def __init__(self, var_dir: Path) -> None:
        super().__init__(var_dir, points=POINTS)

    async def _start(self) -> None:
        await super()._start()
        assert self.platform is not None
        p, now = self.platform, datetime.now(UTC)
        # A CRITICAL wind alarm, raised by the real supervisor.
        await p.bus.publish(MON_SAMPLES, encode_samples(SampleBatch.from_samples(
            [Sample("lasilla.asm.wind_speed", now, 21.4)])), retention=RET)
        night = now - timedelta(hours=3)
        for k, (reason, alarm) in enumerate((("afternoon plan", None),
                                             ("dome closed: wind above 20 m/s", "WindSpeed.ASM:1"))):
            trigger = None if alarm is None else PlanTrigger(
                kind="consequence", ts=now - timedelta(seconds=2), reason=reason, alarm_id=alarm,
                consequence=ConsequenceKind.CLOSE_DOME)
            blocks = tuple(PlannedBlock(
                ob_id=str(100 + i), name=f"OB {i}", target_name=f"SN 2026ab{i}", ra_deg=7.5 * i, dec_deg=-25.0,
                exposure_s=900, priority=1 + i % 3, ob_type=("CTOB", "FUOB", "ESO")[i % 3],
                start=night + timedelta(minutes=18 * i), end=night + timedelta(minutes=18 * i + 15))
                for i in range(40 - 6 * k))
            await p.bus.publish(PLAN_EVENTS, PlanEvent(
                plan_id=f"night#{k + 1}", night=night.date().isoformat(), created=now - timedelta(seconds=1 - k),
                reason=reason, trigger=trigger, blocks=blocks).encode(), retention=RET)


def token(port: int, user: str = USER, password: str = PASSWORD) -> str:
    query = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
    r = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": {"u": user, "p": password}},
                   timeout=60)
    return str(r.json()["data"]["login"]["token"])


def launch(pw: Any) -> Browser:
    browser: Browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"])
    return browser


def measure(base: str, tok: str, loads: int) -> tuple[dict[str, list[float]], dict[str, list[float]],
                                                      dict[str, list[tuple[str, float, float]]]]:
    """`loads` cold loads of the page and of its `?serial` baseline, interleaved so noise hits both alike."""
    runs: dict[str, list[float]] = {"fixed": [], "serial": []}
    after_byte: dict[str, list[float]] = {"fixed": [], "serial": []}
    timings: dict[str, list[tuple[str, float, float]]] = {}
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            first_render_ms(browser, base, tok)  # warm the server (imports, first queries)
            for _ in range(loads):
                for variant, url in (("fixed", base), ("serial", base + "?serial")):
                    ms, first_byte, res = first_render_ms(browser, url, tok)
                    runs[variant].append(ms)
                    after_byte[variant].append(ms - first_byte)
                    timings[variant] = res
        finally:
            browser.close()
    return runs, after_byte, timings


def figures(label: str, runs: dict[str, list[float]], after_byte: dict[str, list[float]]) -> list[Result]:
    fixed, serial = runs["fixed"], runs["serial"]
    med = statistics.median

    def row(name: str, value: float, base: float, goal: str | None) -> Result:
        return Result(f"{label}{name}", value, "ms", goal, base, ratio(value, base, higher_is_better=False))

    return [
        row("first render p50 (navigation → alarms, panels, timeline filled)", med(fixed), med(serial), "< 1000"),
        row("first render p90", p(fixed, 90), p(serial, 90), "< 1000"),
        row("first render worst", max(fixed), max(serial), None),
        row("first render p50 after the HTML's first byte", med(after_byte["fixed"]), med(after_byte["serial"]),
            None),
    ]


class Platform:
    """`skyops up` in a subprocess on a free port; the admin password it prints once is used to log in."""

    def __init__(self, var_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        skyops = Path(sys.executable).with_name("skyops")
        self.proc = subprocess.Popen([str(skyops), "up", "--port", str(self.port), "--var-dir", str(var_dir),
                                      "--start", "evening"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, "COLUMNS": "200"})

    def start(self, timeout_s: float = 120) -> str:
        """Wait for the HMI; return the admin password."""
        assert self.proc.stdout is not None
        password = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("skyops up exited before its HMI was ready")
            found = re.search(r"password (\S+) \(shown", line)
            password = found.group(1) if found else password
            if "operator page at" in line and password is not None:
                threading.Thread(target=self._drain, daemon=True).start()
                while time.monotonic() < deadline:  # the line is printed just before uvicorn binds
                    try:
                        if httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5).status_code == 200:
                            return password
                    except httpx.TransportError:
                        time.sleep(0.2)
                break
        raise RuntimeError("skyops up did not start in time")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:  # keep the pipe from filling up
            pass

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def first_render_ms(browser: Browser, url: str, tok: str) -> tuple[float, float, list[tuple[str, float, float]]]:
    """One cold load: ms from navigation start until the page is filled, the HTML's first byte, resource timings."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        context.add_init_script(f"sessionStorage.setItem('skyops.token', {tok!r});")
        page = context.new_page()
        page.goto(url, wait_until="commit")
        ms = float(page.wait_for_function(FILLED, polling="raf", timeout=30_000).json_value())
        first_byte = float(page.evaluate("() => performance.getEntriesByType('navigation')[0].responseStart"))
        resources = page.evaluate("""() => performance.getEntriesByType('resource').map(
            (e) => [e.name.replace(location.origin, ''), e.startTime, e.responseEnd])""")
        return ms, first_byte, [(str(n), float(s), float(e)) for n, s, e in resources]
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 (and 4) loads of each variant instead of 15 (and 8)")
    parser.add_argument("--loads", type=int, default=None)
    parser.add_argument("--no-up", action="store_true", help="skip the measurement against `skyops up`")
    args = parser.parse_args()
    loads = args.loads or (5 if args.quick else 15)
    results: list[Result] = []
    samples: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="skyops-page-") as tmp:
        server = Server(Path(tmp) / "var")
        server.start()
        try:
            runs, after_byte, timings = measure(f"http://127.0.0.1:{server.port}/", token(server.port), loads)
        finally:
            server.stop()
        results += figures("", runs, after_byte)
        samples["hmi"] = {"samples_ms": runs, "after_first_byte_ms": after_byte}
        for variant, res in timings.items():
            print(f"resources of the last {variant} load (start → end, ms):")
            for name, start, end in res:
                print(f"  {start:7.1f} → {end:7.1f}  {name[:90]}")
        if not args.no_up:
            up_loads = max(2, loads // 2 + 1)
            platform = Platform(Path(tmp) / "up")
            try:
                password = platform.start()
                runs, after_byte, _ = measure(f"http://127.0.0.1:{platform.port}/",
                                              token(platform.port, "admin", password), up_loads)
            finally:
                platform.stop()
            results += figures("skyops up: ", runs, after_byte)
            samples["skyops_up"] = {"loads": up_loads, "samples_ms": runs, "after_first_byte_ms": after_byte}
    print_table(f"operator page first render, {loads} cold loads each (baseline: ?serial)", results)
    path = write_results("hmi_page", results, {"loads": loads, **samples})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
