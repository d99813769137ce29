"""`iotlm db upgrade|info|maintain|downgrade --json` against real servers."""

from __future__ import annotations

import json

import pytest

from storage.migrate import head_revision
from typer.testing import CliRunner

from iotlm.cli import app

runner = CliRunner()
pytestmark = pytest.mark.services


def db(*args: str) -> dict:
    result = runner.invoke(app, ["db", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_db_commands_on_postgresql(pg_url):
    assert db("upgrade", "--url", pg_url) == {"lane": "postgresql", "revision": head_revision()}
    info = db("info", "--url", pg_url)
    assert info["lane"] == "postgresql" and set(info["partitions"]) == {"raw_frames", "window_predictions", "alerts",
                                                                      "room_states"}
    report = db("maintain", "--url", pg_url)
    assert report["partitions_created"] == 0  # the migration already created the week ahead
    assert report["aggregates_refreshed"] == ["activity_per_room_hourly", "device_windows_hourly", "room_states_hourly"]
    assert db("downgrade", "--url", pg_url, "--revision", "base") == {"revision": None}


@pytest.mark.timescale
def test_db_commands_on_timescaledb(ts_url):
    assert db("upgrade", "--lane", "timescale", "--url", ts_url)["lane"] == "timescaledb"
    info = db("info", "--url", ts_url)
    assert info["lane"] == "timescaledb" and info["timescaledb_version"].startswith("2.")
    assert set(info["hypertables"]) == {"raw_frames", "window_predictions", "alerts", "room_states"}
    assert db("maintain", "--url", ts_url)["aggregates_refreshed"] == info["aggregates"]
    assert db("downgrade", "--url", ts_url) == {"revision": None}
