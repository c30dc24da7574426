"""The `ves` commands over a real SQLite operational DB."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from skyops.opdb import make_engine, make_sessionmaker, upgrade
from tests.unit.ves_sync.builders import DUSK, block, plan, wind_trigger
from ves_sync.cli import app
from ves_sync.domain.ves import change_for
from ves_sync.store import VesSyncStore


def test_history_and_statuses_show_what_the_store_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opdb.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    store = VesSyncStore(make_sessionmaker(engine))
    event = plan([block(1)], plan_id="replan-7", reason="wind", trigger=wind_trigger(DUSK))
    store.record_change(change_for(event, ts=DUSK + timedelta(minutes=1), instrument="SOXS", written_by="ves_sync",
                                   before=[], after=[200000001]))
    store.save_link(ob_id="soxs-ob-0001", p2_ob_id=200000001, container_id=1, content_digest="d",
                    p2_ob={"obStatus": "X"}, p2_etag='"e"', now=DUSK)
    engine.dispose()
    runner = CliRunner()

    shown = runner.invoke(app, ["history", "--sql-url", url], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "replan-7" in shown.output
    assert "WindPointing.asm:1" in shown.output
    assert "200000001" in shown.output

    listed = runner.invoke(app, ["statuses", "--sql-url", url], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    assert "soxs-ob-0001" in listed.output
    assert " X " in listed.output

    bad = runner.invoke(app, ["history", "--sql-url", url, "--limit", "0"])
    assert bad.exit_code != 0


def test_execute_refuses_a_clock_that_does_not_run() -> None:
    refused = CliRunner().invoke(app, ["execute", "--speed", "0"])
    assert refused.exit_code != 0
    assert "--speed" in refused.output
