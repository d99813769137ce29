"""Keeping the time-series tables in shape: `iotlm db maintain` runs `maintain` on a schedule.

TimescaleDB does all of this with background policies; on the PostgreSQL lane it is our job to
create partitions ahead, drop expired ones and refresh the materialized views. Tables and views
are found in the catalog, so adding one in a migration needs no change here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, Engine, text

from iotlm.settings import StorageSettings
from storage.lane import Lane, recorded_lane

RETENTION_FIELD = {
    "raw_frames": "raw_frame_retention_days",
    "window_predictions": "prediction_retention_days",
    "alerts": "alert_retention_days",
    "room_states": "prediction_retention_days",
}


def aggregate_names(conn: Connection, lane: Lane) -> list[str]:
    if lane is Lane.TIMESCALEDB:
        sql = "SELECT view_name FROM timescaledb_information.continuous_aggregates ORDER BY 1"
    else:
        sql = "SELECT matviewname FROM pg_matviews WHERE schemaname = current_schema() ORDER BY 1"
    return [r[0] for r in conn.execute(text(sql))]


def partitioned_tables(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(text(
        "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1"))]


def refresh_aggregates(engine: Engine, start: datetime | None = None, end: datetime | None = None) -> list[str]:
    """Bring the hourly aggregates up to date; returns the names refreshed.

    TimescaleDB refreshes the [start, end) window of each continuous aggregate (everything when
    None); PostgreSQL recomputes each materialized view whole (CONCURRENTLY once it has data,
    so readers are never blocked).
    """
    # Both refresh forms refuse to run inside a transaction block.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        lane = recorded_lane(conn)
        names = aggregate_names(conn, lane)
        for name in names:
            if lane is Lane.TIMESCALEDB:
                conn.execute(text("CALL refresh_continuous_aggregate(CAST(:name AS regclass), "
                                  "CAST(:start AS timestamptz), CAST(:end AS timestamptz))"),
                             {"name": name, "start": start, "end": end})
                continue
            populated = conn.execute(text("SELECT ispopulated FROM pg_matviews WHERE matviewname = :n"),
                                     {"n": name}).scalar()
            conn.execute(text(f"REFRESH MATERIALIZED VIEW {'CONCURRENTLY ' if populated else ''}{name}"))
    return names


def create_partitions(engine: Engine, days_ahead: int, days_back: int = 1) -> int:
    """PostgreSQL lane: daily partitions from `days_back` days ago to `days_ahead` days ahead (UTC).
    Rows already sitting in a table's DEFAULT partition for those days are moved in. Returns how many."""
    today = datetime.now(timezone.utc).date()
    with engine.begin() as conn:
        return sum(conn.execute(
            text("SELECT iotlm_ensure_daily_partitions(CAST(:t AS regclass), :first, :last)"),
            {"t": table, "first": today - timedelta(days=days_back), "last": today + timedelta(days=days_ahead)},
        ).scalar() for table in partitioned_tables(conn))


def drop_expired(engine: Engine, storage_settings: StorageSettings, now: datetime | None = None) -> int:
    """PostgreSQL lane: drop daily partitions older than each table's retention (and such rows in the
    DEFAULT partition). Returns how many partitions were dropped."""
    now = now or datetime.now(timezone.utc)
    with engine.begin() as conn:
        return sum(conn.execute(
            text("SELECT iotlm_drop_partitions_before(CAST(:t AS regclass), :cutoff)"),
            {"t": table, "cutoff": now - timedelta(days=getattr(storage_settings, RETENTION_FIELD[table]))},
        ).scalar() for table in partitioned_tables(conn) if table in RETENTION_FIELD)


def run_policies(engine: Engine) -> list[int]:
    """TimescaleDB lane: run every policy job now (PGlite has no background workers to run them)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        jobs = [r[0] for r in conn.execute(text(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy_%' "
            "AND proc_name <> 'policy_job_stat_history_retention' ORDER BY job_id"))]
        for job in jobs:
            conn.execute(text("CALL run_job(:job)"), {"job": job})
    return jobs


def maintain(engine: Engine, storage_settings: StorageSettings, *, run_timescale_policies: bool = False) -> dict:
    """One maintenance pass for the lane in use; returns what was done (for `iotlm db maintain --json`)."""
    with engine.connect() as conn:
        lane = recorded_lane(conn)
    report: dict = {"lane": lane.value}
    if lane is Lane.POSTGRESQL:
        report["partitions_created"] = create_partitions(engine, storage_settings.partition_days_ahead)
        report["partitions_dropped"] = drop_expired(engine, storage_settings)
    elif run_timescale_policies:
        report["jobs_run"] = run_policies(engine)
    report["aggregates_refreshed"] = refresh_aggregates(engine)
    return report
