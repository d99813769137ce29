"""Migrations apply and roll back on both lanes; lane-specific lifecycle (partitions, policies) works."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from storage.migrate import head_revision
from sqlalchemy import inspect, text

from iotlm.settings import StorageSettings
from storage import maintenance, migrate
from storage.lane import Lane, open_engine
from storage.writer import RawFrameRow, RawFrameWriter

TIME_SERIES = {"raw_frames", "window_predictions", "alerts", "room_states"}
CATALOG = {"sites", "buildings", "rooms", "devices", "labels", "model_versions", "finetune_jobs", "api_keys",
           "label_sets", "alert_rules", "alarms", "audit_log",
           "activity_episodes", "storage_lane"}
AGGREGATES = ["activity_per_room_hourly", "device_windows_hourly", "room_states_hourly"]
pytestmark = pytest.mark.services


def _tables(url: str) -> set[str]:
    engine = open_engine(url, single_connection=True)
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    engine.dispose()
    return names


class TestUpgradeDowngrade:
    def test_round_trip(self, lane_url, settings):
        lane = migrate.upgrade(lane_url)  # auto: TimescaleDB exactly where the extension is available
        assert lane is (Lane.TIMESCALEDB if lane_url == settings.timescale_url else Lane.POSTGRESQL)
        assert migrate.upgrade(lane_url) is lane  # already at head: nothing to do
        assert CATALOG | TIME_SERIES <= _tables(lane_url)
        info = migrate.describe(lane_url)
        assert info["lane"] == lane.value and info["revision"] == head_revision()
        assert info["aggregates"] == AGGREGATES
        if lane is Lane.TIMESCALEDB:
            assert set(info["hypertables"]) == TIME_SERIES
            assert info["hypertables"]["raw_frames"]["compression"] is True
            procs = {(p["proc"], p["table"]) for p in info["policies"]}
            assert ("policy_compression", "raw_frames") in procs
            assert {("policy_retention", t) for t in TIME_SERIES} <= procs
            assert {("policy_refresh_continuous_aggregate", a) for a in AGGREGATES} <= procs
        else:
            assert set(info["partitions"]) == TIME_SERIES
            days_ahead = StorageSettings().partition_days_ahead
            assert all(p["daily"] == days_ahead + 2 and p["default"] for p in info["partitions"].values())

        migrate.downgrade(lane_url, revision="0001")
        assert migrate.current_revision(lane_url) == "0001"
        assert migrate.describe(lane_url)["aggregates"] == []
        migrate.downgrade(lane_url)
        assert migrate.current_revision(lane_url) is None
        assert not (CATALOG | TIME_SERIES) & _tables(lane_url)

        assert migrate.upgrade(lane_url) is lane  # and again from nothing
        migrate.downgrade(lane_url)

    def test_concurrent_upgrades_serialize(self, pg_url):
        """Workers and the API may all upgrade at start-up: one migrates, the others find it done."""
        upgrades = [subprocess.Popen([sys.executable, "-m", "iotlm", "db", "upgrade", "--url", pg_url, "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outputs = [p.communicate(timeout=120) for p in upgrades]
        assert [p.returncode for p in upgrades] == [0, 0, 0], [err for _, err in outputs]
        assert [json.loads(out) for out, _ in outputs] == [{"lane": "postgresql", "revision": head_revision()}] * 3
        migrate.downgrade(pg_url)

    def test_forced_lanes(self, pg_url):
        with pytest.raises(RuntimeError, match="no timescaledb extension"):
            migrate.upgrade(pg_url, lane="timescale")
        assert migrate.upgrade(pg_url, lane="postgresql") is Lane.POSTGRESQL
        migrate.downgrade(pg_url)

    @pytest.mark.timescale
    def test_postgresql_lane_forced_where_timescaledb_is_available(self, ts_url):
        assert migrate.upgrade(ts_url, lane="postgresql") is Lane.POSTGRESQL
        assert migrate.describe(ts_url)["partitions"]
        with pytest.raises(ValueError, match="created for lane postgresql"):
            migrate.upgrade(ts_url, lane="timescale")
        migrate.downgrade(ts_url)


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


class TestPostgresPartitions:
    def test_replayed_rows_land_in_default_then_move_and_expire(self, pg_url):
        migrate.upgrade(pg_url)
        engine = open_engine(pg_url)
        now = datetime.now(timezone.utc)
        old = now - timedelta(days=20)
        writer = RawFrameWriter(engine)
        assert writer.write([RawFrameRow("dev-old", old, 1, b"replayed"), RawFrameRow("dev-new", now, 1, b"live")]) == 2
        assert _count(engine, "SELECT count(*) FROM raw_frames_default") == 1  # older than any partition: kept

        # Creating the partition for the replayed day moves its row out of the default partition.
        assert maintenance.create_partitions(engine, days_ahead=0, days_back=20) > 0
        assert _count(engine, "SELECT count(*) FROM raw_frames_default") == 0
        assert _count(engine, f"SELECT count(*) FROM raw_frames_p{old:%Y%m%d}") == 1
        with engine.connect() as conn:  # new partitions keep the payload's lz4 TOAST compression
            assert conn.execute(text("SELECT attcompression FROM pg_attribute WHERE attname = 'payload' "
                                     f"AND attrelid = 'raw_frames_p{old:%Y%m%d}'::regclass")).scalar_one() == "l"

        # Retention: 10 days for raw frames drops the replayed day's partition, live data stays.
        report = maintenance.maintain(engine, StorageSettings(raw_frame_retention_days=10))
        assert report["partitions_dropped"] >= 1
        assert _count(engine, "SELECT count(*) FROM raw_frames") == 1
        assert _count(engine, "SELECT count(*) FROM pg_class WHERE relname = :n", n=f"raw_frames_p{old:%Y%m%d}") == 0
        engine.dispose()
        migrate.downgrade(pg_url)


@pytest.mark.timescale
class TestTimescalePolicies:
    def test_compression_and_retention_jobs(self, ts_url):
        migrate.upgrade(ts_url)
        engine = open_engine(ts_url, single_connection=True)
        now = datetime.now(timezone.utc)
        RawFrameWriter(engine).write([
            RawFrameRow("dev-1", now - timedelta(days=3), 1, b"to compress"),
            RawFrameRow("dev-1", now - timedelta(days=45), 1, b"expired"),
            RawFrameRow("dev-1", now, 1, b"live"),
        ])
        assert maintenance.run_policies(engine)
        with engine.connect() as conn:
            compressed = conn.execute(text(
                "SELECT count(*) FROM timescaledb_information.chunks "
                "WHERE hypertable_name = 'raw_frames' AND is_compressed")).scalar_one()
            payloads = [r[0] for r in conn.execute(text("SELECT payload FROM raw_frames ORDER BY t0"))]
        assert compressed == 1
        assert payloads == [b"to compress", b"live"]  # compressed rows still read back; 45-day-old row dropped
        engine.dispose()
        migrate.downgrade(ts_url)


def test_models_match_migrations(lane_url):
    """The declarative models in storage.schema describe exactly what the migrations create."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.schema import Base

    def only_modelled(obj, name, type_, reflected, compare_to) -> bool:
        # Partitions, aggregates' tables and lane-specific indexes exist only in the database.
        return not (type_ in ("table", "index") and reflected and compare_to is None)

    migrate.upgrade(lane_url)
    engine = open_engine(lane_url, single_connection=True)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": only_modelled, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
    migrate.downgrade(lane_url)
