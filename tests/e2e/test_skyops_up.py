"""`skyops up` (what `make run` starts) comes up with no server installed and answers its health endpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_skyops_up_answers_health(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYOPS_")}  # embedded: no server URLs
    skyops = Path(sys.executable).with_name("skyops")
    proc = subprocess.Popen([str(skyops), "up", "--port", str(port), "--var-dir", str(tmp_path / "var")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        report = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                report = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)  # waiting for a real child process to bind its port
        assert report is not None, f"skyops up did not answer; exit={proc.poll()}"
        assert report["status"] == "ok"
        assert report["mode"] == "embedded"
        assert (tmp_path / "var" / "archive.sqlite3").exists()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "health at" in out
    assert "first start" in out  # the generated admin password is printed once
