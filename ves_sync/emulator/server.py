"""Running the P2 emulator: its state directory (JSON snapshot), `serve` for the CLI, a background server for tests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from ves_sync.emulator.app import API_PREFIX, LOGIN_PATH, create_app
from ves_sync.emulator.seed import Seed, default_seed
from ves_sync.emulator.state import P2State

SNAPSHOT_NAME = "p2-emulator.json"
WRITE_DELAY_S = 0.05
log = logging.getLogger(__name__)


class SnapshotFile:
    """The emulator's whole state as one JSON file, replaced atomically after every accepted change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"P2 emulator snapshot {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"P2 emulator snapshot {self.path} does not hold a JSON object")
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.write(json.dumps(data, separators=(",", ":")))

    def write(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        # A crash mid-write leaves the previous snapshot whole: the rename is atomic.
        os.replace(tmp, self.path)


class SnapshotWriter:
    """Writes snapshots behind the requests: a burst of changes costs one write, and `close` writes the last.

    Rewriting the whole state after every change grows with the state (tens of ms at a few hundred
    OBs); coalescing keeps requests fast. A hard kill loses at most the last `delay_s` of changes.
    """

    def __init__(self, snapshot: SnapshotFile, dump: Callable[[], str], delay_s: float) -> None:
        self.snapshot = snapshot
        self.delay_s = delay_s
        self.writes = 0
        self._dump = dump
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="p2-emulator-snapshot", daemon=True)
        self._thread.start()

    def notify(self, _data: object = None) -> None:
        self._dirty.set()

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            # Let the rest of the burst arrive; closing cuts the wait short and writes the last one itself.
            if self._closing.wait(self.delay_s):
                return
            self._dirty.clear()
            self._write()

    def _write(self) -> None:
        try:
            self.snapshot.write(self._dump())
            self.writes += 1
        except OSError as exc:  # the next change tries again; the requests themselves succeeded
            log.error("P2 emulator: cannot write its snapshot %s: %s", self.snapshot.path, exc)
            self._dirty.set()

    def close(self) -> None:
        self._closing.set()
        self._dirty.set()
        self._thread.join(timeout=10)
        self._write()


def open_state(state_dir: Path, seed: Seed | None = None, *, write_delay_s: float = 0.0) -> P2State:
    """The emulator state kept under `state_dir`: loaded from its snapshot, or fresh from `seed`.

    With `write_delay_s` 0 every change is on disk before its request is answered; otherwise
    snapshots are coalesced (see `SnapshotWriter`) and `state.close()` writes the last one.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    snapshot = SnapshotFile(state_dir / SNAPSHOT_NAME)
    if write_delay_s <= 0:
        return P2State(seed or default_seed(), snapshot.load(), on_change=snapshot.save)
    state = P2State(seed or default_seed(), snapshot.load())
    writer = SnapshotWriter(snapshot, state.to_json, write_delay_s)
    state.set_on_change(writer.notify)
    state.add_closer(writer.close)
    return state


def build_server(host: str, port: int, state_dir: Path, seed: Seed | None = None,
                 write_delay_s: float = WRITE_DELAY_S) -> tuple[uvicorn.Server, P2State]:
    state = open_state(state_dir, seed, write_delay_s=write_delay_s)
    app = create_app(state, state_dir / "finding-charts")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config), state


def serve(host: str = "127.0.0.1", port: int = 8081, state_dir: Path = Path("var/p2-emulator"),
          seed: Seed | None = None) -> None:
    """Run the emulator in the foreground until interrupted (`skyops run p2-emulator`)."""
    server, state = build_server(host, port, state_dir, seed)
    try:
        server.run()
    finally:
        state.close()


class EmulatorServer:
    """The emulator on a loopback port in a background thread; `with EmulatorServer(dir) as srv: srv.base_url`."""

    def __init__(self, state_dir: Path, *, host: str = "127.0.0.1", port: int = 0, seed: Seed | None = None,
                 start_timeout_s: float = 10.0) -> None:
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.seed = seed
        self.start_timeout_s = start_timeout_s
        self._server: uvicorn.Server | None = None
        self._state: P2State | None = None
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.root_url + API_PREFIX

    @property
    def login_url(self) -> str:
        return self.root_url + LOGIN_PATH

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("the P2 emulator is already running")
        server, self._state = build_server(self.host, self.port, self.state_dir, self.seed)
        self._server = server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="p2-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the P2 emulator did not start on {self.host}:{self.port}")
            time.sleep(0.005)
        # Port 0 asked the kernel for a free port; keep the one it gave so a restart reuses it.
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.start_timeout_s)
        if self._state is not None:
            self._state.close()
        self._state = None
        self._server = None
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
