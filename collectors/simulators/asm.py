"""The ASM weather simulator: La Silla's site monitor as an HTTP JSON service on loopback, with scripted scenarios."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from pydantic import ValidationError

from collectors.domain.weather import Scenario, WeatherModel, answer
from collectors.simulators.http import LoopbackServer
from skyops.timeutil import Clock, SystemClock

SCENARIO_DIR = Path(__file__).with_name("scenarios")
CURRENT_PATH = "/asm/current"


def shipped_scenarios() -> dict[str, Path]:
    """The scenarios that ship with the simulator, by name."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or any scenario file by path."""
    shipped = shipped_scenarios()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        return Scenario.load(shipped[name_or_path])
    return Scenario.load(name_or_path)


class AsmSimulator:
    """The simulator's state: the weather model, the clock, and the scenario running (if any)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        scenario: Scenario | None = None,
        scenario_start: datetime | None = None,
        hang_s: float = 30.0,
        site: str = "La Silla",
    ) -> None:
        self.model = WeatherModel(seed=seed)
        self.clock: Clock = clock or SystemClock()
        self.scenario = scenario
        self.scenario_start = scenario_start or (self.clock.now() if scenario else None)
        self.hang_s = hang_s
        self.site = site
        self.requests = 0
        self._stopping = asyncio.Event()

    def start_scenario(self, scenario: Scenario | None, at: datetime | None = None) -> None:
        self.scenario = scenario
        self.scenario_start = at or self.clock.now()

    def stop(self) -> None:
        """End requests held open by a `timeout` outage, so the server can shut down at once."""
        self._stopping.set()

    async def current(self) -> Response:
        self.requests += 1
        a = answer(self.model, self.clock.now(), self.scenario, self.scenario_start)
        if a.kind == "http_503":
            return Response('{"error": "ASM data acquisition unavailable"}', status_code=503,
                            media_type="application/json")
        if a.kind == "timeout":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.hang_s)
            return Response(status_code=504)
        if a.kind == "not_json":
            return Response("<html>ASM maintenance</html>", media_type="application/json")
        body = {"site": self.site, "timestamp": a.measured_at.isoformat(), **a.payload}
        # The real ASM writes NaN bare (not valid JSON, but it happens): so does the simulator.
        nan = any(isinstance(v, float) and math.isnan(v) for v in a.payload.values())
        return Response(json.dumps(body, allow_nan=nan), media_type="application/json")


def create_app(sim: AsmSimulator) -> FastAPI:
    """The HTTP API: the current reading, and scenario control for demos and tests."""
    app = FastAPI(title="ASM simulator (La Silla)")

    @app.get(CURRENT_PATH)
    async def current() -> Response:
        return await sim.current()

    @app.get("/asm/scenario")
    async def get_scenario() -> dict[str, Any]:
        return {
            "scenario": sim.scenario.model_dump() if sim.scenario else None,
            "started": sim.scenario_start.isoformat() if sim.scenario and sim.scenario_start else None,
            "available": sorted(shipped_scenarios()),
        }

    @app.put("/asm/scenario/{name}")
    async def put_scenario(name: str) -> dict[str, str]:
        if name not in shipped_scenarios():
            raise HTTPException(404, f"no scenario {name!r}; available: {', '.join(sorted(shipped_scenarios()))}")
        sim.start_scenario(load_scenario(name))
        return {"scenario": name}

    @app.post("/asm/scenario")
    async def post_scenario(body: dict[str, Any]) -> dict[str, str]:
        try:
            scenario = Scenario.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise HTTPException(422, f"bad scenario: {problems}") from None
        sim.start_scenario(scenario)
        return {"scenario": scenario.name}

    @app.delete("/asm/scenario")
    async def clear_scenario() -> dict[str, None]:
        sim.start_scenario(None)
        return {"scenario": None}

    return app


@contextlib.asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int = 0,
    clock: Clock | None = None,
    scenario: Scenario | str | Path | None = None,
    scenario_start: datetime | None = None,
    hang_s: float = 30.0,
) -> AsyncIterator[tuple[str, AsmSimulator]]:
    """Run the simulator on `host:port` (0: a free port); yields the reading's URL and the simulator."""
    sc = load_scenario(scenario) if isinstance(scenario, str | Path) else scenario
    sim = AsmSimulator(seed=seed, clock=clock, scenario=sc, scenario_start=scenario_start, hang_s=hang_s)
    server = LoopbackServer(create_app(sim), host=host, port=port)
    await server.start()
    try:
        yield server.url + CURRENT_PATH, sim
    finally:
        sim.stop()
        await server.stop()


async def run_forever(host: str = "127.0.0.1", port: int = 8081, *, seed: int = 0,
                      scenario: str | None = None) -> None:
    """Serve until cancelled (the `skyops` command's simulator mode)."""
    async with serve(host, port, seed=seed, scenario=scenario):
        await asyncio.Event().wait()
