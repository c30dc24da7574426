"""The ASM poller against the real simulator over HTTP on loopback, scenarios included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis

from collectors.asm import AsmClient, AsmPoller
from collectors.domain.processing import PointProcessor
from collectors.publisher import SamplePublisher
from collectors.simulators.asm import serve
from config_db.monitoring import AsmSource, MonitoringConfig, load_monitoring
from skyops import codec
from skyops.bus import Bus
from skyops.records import Quality, SampleBatch
from skyops.streams import MON_SAMPLES
from skyops.timeutil import FakeClock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
def config() -> MonitoringConfig:
    return load_monitoring()


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    client = FakeRedis(server=FakeServer(version=(7, 0)))
    yield Bus(client, clock=FakeClock(T0))
    await client.aclose()


async def published(bus: Bus) -> SampleBatch:
    entries = await bus.redis.xrange(MON_SAMPLES)
    return SampleBatch.concat([codec.decode_samples(fields[b"d"]) for _, fields in entries])


def make_poller(config: MonitoringConfig, bus: Bus, url: str, clock: FakeClock,
                http: httpx.AsyncClient, **source_kw: object) -> AsmPoller:
    source = AsmSource.model_validate({**config.sources.asm[0].model_dump(), "url": url, **source_kw})
    publisher = SamplePublisher(bus, PointProcessor(config.points), config.queue)
    return AsmPoller(source, AsmClient(source, http, sleep=_no_sleep), publisher, clock=clock)


async def test_poller_publishes_every_field_of_the_simulator(config: MonitoringConfig, bus: Bus) -> None:
    clock = FakeClock(T0)
    async with serve(seed=4, clock=clock) as (url, sim), httpx.AsyncClient() as http:
        poller = make_poller(config, bus, url, clock, http)
        for _ in range(3):
            reading = await poller.poll_once()
            assert reading.problems == []
            clock.advance(10)
        assert sim.requests == 3
    got = await published(bus)
    points = {got.points[i] for i in got.point_idx}
    assert points == set(config.sources.asm[0].fields.values()) | {"lasilla.asm.data_age_s"}
    assert set(got.quality.tolist()) == {Quality.GOOD}
    assert poller.up


async def test_wind_rising_scenario_arrives_through_the_poller(config: MonitoringConfig, bus: Bus) -> None:
    clock = FakeClock(T0)
    async with serve(seed=4, clock=clock, scenario="wind_rising", scenario_start=T0) as (url, _), \
            httpx.AsyncClient() as http:
        poller = make_poller(config, bus, url, clock, http)
        winds = []
        for _ in range(5):
            clock.advance(300)
            r = await poller.poll_once()
            winds.extend(s.value for s in r.samples if s.point == "lasilla.asm.wind_speed")
    assert winds == sorted(winds)
    assert winds[-1] == pytest.approx(20.0)


async def test_malformed_payloads_give_bad_samples_and_log_records(
    config: MonitoringConfig, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    caplog.set_level(logging.WARNING, logger="collectors.asm")
    async with serve(seed=4, clock=clock, scenario="malformed", scenario_start=T0) as (url, _), \
            httpx.AsyncClient() as http:
        poller = make_poller(config, bus, url, clock, http)
        results = []
        for t in (10, 70, 130, 190, 250):
            clock.set(T0 + timedelta(seconds=t))
            results.append({s.point: s for s in (await poller.poll_once()).samples})
    assert results[0]["lasilla.asm.seeing"].quality == Quality.BAD
    assert results[1]["lasilla.asm.wind_speed"].quality == Quality.BAD
    assert results[2]["lasilla.asm.humidity"].quality == Quality.BAD
    assert results[3]["lasilla.asm.temperature"].quality == Quality.BAD
    assert results[1]["lasilla.asm.seeing"].quality == Quality.GOOD
    assert {s.quality for s in results[4].values()} == {Quality.BAD}
    messages = [r.getMessage() for r in caplog.records]
    assert any("field 'seeing' missing" in m for m in messages)
    assert any("field 'wind_speed' is not a finite number: 'n/a'" in m for m in messages)
    assert any("field 'humidity' is not a finite number: nan" in m for m in messages)
    assert any("not JSON" in m for m in messages)
    got = await published(bus)
    assert len(got) > 0


async def test_outage_503_and_timeout_retry_then_publish_bad(
    config: MonitoringConfig, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0)
    caplog.set_level(logging.INFO, logger="collectors.asm")
    async with serve(seed=4, clock=clock, scenario="data_outage", scenario_start=T0, hang_s=5) as (url, sim), \
            httpx.AsyncClient() as http:
        poller = make_poller(config, bus, url, clock, http, timeout_s=0.2, retries=2)
        clock.set(T0 + timedelta(seconds=250))
        stale = await poller.poll_once()
        assert any("old" in p for p in stale.problems)
        clock.set(T0 + timedelta(seconds=400))
        failed = await poller.poll_once()
        assert sim.requests == 1 + 3  # one try and two retries
        assert {s.quality for s in failed.samples} == {Quality.BAD}
        clock.set(T0 + timedelta(seconds=500))
        timed_out = await poller.poll_once()
        assert "timed out" in timed_out.problems[0]
        assert not poller.up
        clock.set(T0 + timedelta(seconds=600))
        assert (await poller.poll_once()).problems == []
        assert poller.up
    assert any("retry 1/2" in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.ERROR and "poll failed" in r.getMessage() for r in caplog.records)


async def test_scenario_control_over_http(config: MonitoringConfig) -> None:
    async with serve(seed=1) as (url, sim), httpx.AsyncClient() as http:
        base = url.rsplit("/asm/", 1)[0]
        assert (await http.put(f"{base}/asm/scenario/nope")).status_code == 404
        assert (await http.put(f"{base}/asm/scenario/humidity_95")).json() == {"scenario": "humidity_95"}
        assert sim.scenario is not None
        bad = await http.post(f"{base}/asm/scenario", json={"name": "x", "steps": [{"at_s": 0}]})
        assert bad.status_code == 422
        assert "duration_s" in bad.json()["detail"]
        assert (await http.delete(f"{base}/asm/scenario")).status_code == 200
        assert sim.scenario is None
