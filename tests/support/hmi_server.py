"""The HMI as deploy builds it, on a free loopback port with its event loop in a thread (browser tests, bench)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import uvicorn
from pydantic import SecretStr

from alarms.config import AlarmsConfig
from alarms.factory import AlarmSettings, build_service, build_supervisor
from deploy.factory import Platform, build_hmi_services, open_platform
from hmi_api.app import create_app
from skyops.bus import StreamRetention
from skyops.opdb.models import Group
from skyops.opdb.users import UserCreate
from skyops.records import SampleBatch
from skyops.settings import Settings
from skyops.timeutil import Clock, to_us

T = TypeVar("T")
PASSWORD = "night-shift-2026"
RET = StreamRetention(max_len=10_000, max_age=timedelta(hours=1))
ALARMS = AlarmsConfig.model_validate({"rules": [
    {"kind": "threshold", "name": "WindSpeed", "instance": "ASM:1", "point": "lasilla.asm.wind_speed",
     "guidance": "above 20 m/s close the dome and park the telescope",
     "threshold": {"levels": {"warning": 15, "critical": 20}}, "max_age_s": 600,
     "consequence": {"kind": "close_dome", "min_severity": "CRITICAL"}},
]})
POINTS = {"lasilla.asm.wind_speed": 7.5, "lasilla.asm.humidity": 41.0, "lasilla.asm.seeing": 0.82,
          "lasilla.asm.temperature": 11.2, "ntt.tcs.altitude": 62.4, "ntt.tcs.azimuth": 181.0}


class Server:
    """The HMI on a free loopback port, with its event loop in a thread the test can submit work to."""

    def __init__(self, var_dir: Path, clock: Clock | None = None, points: Mapping[str, float] = POINTS) -> None:
        self.var_dir = var_dir
        self.clock = clock
        self.points = points  # archived with an hour of history, for the trends
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.platform: Platform | None = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for a real server thread to bind
        assert self.server.started, "the HMI server did not start"

    async def _start(self) -> None:
        self.platform = p = await open_platform(Settings(var_dir=self.var_dir), clock=self.clock)
        await p.redis.flushall()  # the embedded bus is one in-process server: start each test with empty streams
        services, _ = await build_hmi_services(p)
        self.services = services
        # The real alarm path: supervisor on the bus, the HMI's alarm service sending it commands.
        self.supervisor = build_supervisor(p.bus, p.clock, config=ALARMS,
                                           settings=AlarmSettings(state_file=self.var_dir / "alarms.json"))
        await self.supervisor.start()
        self.stop_alarms = asyncio.Event()
        self.alarms_task = asyncio.ensure_future(self.supervisor.run(self.stop_alarms))
        services.alarms = build_service(p.bus, p.archive, p.clock)
        await asyncio.to_thread(services.auth.users.create, data=UserCreate(
            username="otto", full_name="Otto Operator", group=Group.OPERATOR, password=SecretStr(PASSWORD)),
            now=p.clock.now())
        p.archive.register_points({name: "standard" for name in self.points})
        now = to_us(datetime.now(UTC))
        n = 3600
        ts = now - (n - np.arange(n)) * 1_000_000
        for i, (name, base) in enumerate(self.points.items()):
            values = base + np.sin(np.arange(n) / (300 + 50 * i)) * base * 0.1
            await p.archive.write_samples(SampleBatch.from_floats([name], np.zeros(n), ts, values))
        self.server = uvicorn.Server(uvicorn.Config(create_app(health=p.health, services=services),
                                                    host="127.0.0.1", port=self.port, log_level="warning"))
        self.serving = asyncio.ensure_future(self.server.serve())

    def stop(self) -> None:
        async def _stop() -> None:
            self.server.should_exit = True
            await self.serving
            await self.stop_extras()
            self.stop_alarms.set()
            await asyncio.wait_for(self.alarms_task, 10)
            if self.platform is not None:
                await self.platform.close()

        self.run(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def stop_extras(self) -> None:
        """What a subclass started besides the HMI and the alarm supervisor."""

    def wait_for_page_subscriptions(self) -> None:
        """The page has subscribed to alarms, logs and plans (publishing earlier could race the page)."""
        live = self.services.live
        assert live is not None

        async def wait() -> None:
            for _ in range(1000):
                if min(live.alarms.subscribers, live.logs.subscribers, live.plans.subscribers) >= 1:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the page never subscribed")

        self.run(wait())

    def publish(self, stream: str, payload: bytes) -> None:
        assert self.platform is not None
        self.run(self.platform.bus.publish(stream, payload, retention=RET))
