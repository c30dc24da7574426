"""The composition root opens the embedded backends and reports their health."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deploy.factory import build_hmi_services, build_log_intake, build_marshall, open_platform
from hmi_api.app import create_app
from skyops.archive.sqlite import SqliteArchive
from skyops.codec import decode_logs
from skyops.settings import Settings
from skyops.streams import LOG_RECORDS


async def test_embedded_platform_is_healthy(tmp_path: Path) -> None:
    platform = await open_platform(Settings(var_dir=tmp_path))
    try:
        assert isinstance(platform.archive, SqliteArchive)
        assert platform.mode == "embedded"
        assert "lasilla.asm.wind_speed" in platform.archive.known_points()
        report = await platform.health()
        assert report["status"] == "ok"
        assert report["components"] == {"bus": "ok", "archive": "ok", "opdb": "ok"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(health=platform.health)),
                                     base_url="http://skyops") as client:
            r = await client.get("/health")
        assert r.status_code == 200
        assert r.json()["mode"] == "embedded"
    finally:
        await platform.close()


async def test_a_failing_backend_makes_health_degraded(tmp_path: Path) -> None:
    platform = await open_platform(Settings(var_dir=tmp_path))
    try:
        await platform.archive.close()  # the archive is gone: health must say so, with the reason
        report = await platform.health()
        assert report["status"] == "degraded"
        assert report["components"]["archive"].startswith("error:")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(health=platform.health)),
                                     base_url="http://skyops") as client:
            assert (await client.get("/health")).status_code == 503
    finally:
        await platform.redis.aclose()
        platform.engine.dispose()


def test_placeholder_secret_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="SKYOPS_SECRET_KEY"):
        Settings(environment="production")


def test_bad_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYOPS_CASSANDRA_KEYSPACE", "Bad-Name")
    with pytest.raises(ValueError, match="cassandra_keyspace"):
        Settings()


def test_cassandra_hosts_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYOPS_CASSANDRA_HOSTS", "10.0.0.1, 10.0.0.2")
    assert Settings().cassandra_hosts == ["10.0.0.1", "10.0.0.2"]
    monkeypatch.setenv("SKYOPS_CASSANDRA_HOSTS", "")
    assert Settings().cassandra_hosts is None


async def test_hmi_services_create_the_first_admin_and_audit_to_the_log_stream(tmp_path: Path) -> None:
    platform = await open_platform(Settings(var_dir=tmp_path))
    try:
        services, password = await build_hmi_services(platform)
        assert password is not None
        assert (await build_hmi_services(platform))[1] is None  # printed once only
        await services.audit("admin", "user.create", {"target": "otto"})
        entries = await platform.redis.xrange(LOG_RECORDS)
        (record,) = decode_logs(entries[-1][1][b"d"])
        assert record.source == "hmi"
        assert record.component == "audit"
        assert record.attributes == {"user": "admin", "action": "user.create", "target": "otto"}
    finally:
        await platform.close()


async def test_marshall_api_is_served_only_with_keys(tmp_path: Path) -> None:
    platform = await open_platform(Settings(var_dir=tmp_path))
    try:
        assert build_marshall(platform) is None
        platform.settings = Settings(var_dir=tmp_path, marshall_keys="k1-0123456789, k2-0123456789")
        router = build_marshall(platform)
        assert router is not None
        assert any(getattr(r, "path", "").endswith("/createAutoOB") for r in router.routes)
    finally:
        await platform.close()


async def test_log_intake_is_mounted_refuses_unknown_keys_and_keeps_good_lines(tmp_path: Path) -> None:
    platform = await open_platform(Settings(var_dir=tmp_path))
    try:
        app = create_app(health=platform.health, log_intake=build_log_intake(platform))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://skyops") as client:
            refused = await client.post("/intake/logs", content=b'{"level": "INFO", "message": "x"}\n',
                                        headers={"Authorization": "Bearer not-a-key"})
            ok = await client.post("/intake/logs", content=b'{"level": "WARNING", "message": "dome slow"}\n{oops\n',
                                   headers={"Authorization": "Bearer dev-key-deploy-0123456789"})
        assert refused.status_code == 401
        assert ok.status_code < 300, ok.text
        assert ok.json()["accepted"] == 1
        assert len(ok.json()["errors"]) == 1
        entries = await platform.redis.xrange(LOG_RECORDS)
        assert any(r.message == "dome slow" for e in entries for r in decode_logs(e[1][b"d"]))
    finally:
        await platform.close()
