"""Redis and Cassandra servers of a test session's own, started by the deploy scripts on free ports (killable)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import make_url

from skyops.opdb import make_engine, upgrade

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "deploy" / "scripts"
VAR = REPO / "var"


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_redis(directory: Path | None = None) -> Iterator[str]:
    """A throw-away redis-server on a free port (no persistence), for benches whose stream names are fixed."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if directory is not None:
        cmd += ["--dir", str(directory)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def own_schema(sql_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of our own (`prefix_<random>`), migrated; its URL, and the schema dropped afterwards."""
    admin = make_engine(sql_url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(sql_url).update_query_dict({"options": f"-csearch_path={schema}"})
    text = url.render_as_string(hide_password=False)
    engine = make_engine(text)
    upgrade(engine)
    engine.dispose()
    try:
        yield text
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


class ServerScriptError(RuntimeError):
    """A deploy script failed; the message carries its output."""


def _script(name: str, action: str, env: dict[str, str], timeout_s: float) -> None:
    r = subprocess.run(["bash", str(SCRIPTS / f"{name}.sh"), action], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise ServerScriptError(f"{name}.sh {action} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


@dataclass
class OwnRedis:
    """A Redis server (AOF on, as deployed) on its own port; data under var/redis-PORT, removed by `remove`."""

    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _env(self) -> dict[str, str]:
        return {"REDIS_PORT": str(self.port)}

    @property
    def data_dir(self) -> Path:
        return VAR / f"redis-{self.port}"

    def start(self) -> None:
        _script("redis", "start", self._env, 60)

    def stop(self) -> None:
        """SIGTERM: Redis writes its AOF and exits (what a restart by the operator does)."""
        _script("redis", "stop", self._env, 60)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class OwnCassandra:
    """A single-node Cassandra on its own CQL and storage ports (no JMX); data under var/cassandra-PORT."""

    port: int = field(default_factory=free_port)
    storage_port: int = field(default_factory=free_port)
    heap: str = "768M"

    @property
    def hosts(self) -> list[str]:
        return ["127.0.0.1"]

    @property
    def _env(self) -> dict[str, str]:
        return {"CASSANDRA_PORT": str(self.port), "CASSANDRA_STORAGE_PORT": str(self.storage_port),
                "CASSANDRA_JMX_PORT": "0", "CASSANDRA_HEAP": self.heap}

    @property
    def data_dir(self) -> Path:
        return VAR / f"cassandra-{self.port}"

    def start(self) -> None:
        _script("cassandra", "start", self._env, 300)

    def stop(self) -> None:
        """SIGTERM: Cassandra drains (flushes memtables) and exits."""
        _script("cassandra", "stop", self._env, 120)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
