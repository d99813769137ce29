"""Schema setup in one call, for the CLI, the other parts and the tests.

    lane = storage.migrate.upgrade(settings.database_url)        # -> Lane.POSTGRESQL
    lane = storage.migrate.upgrade(settings.timescale_url)       # -> Lane.TIMESCALEDB

Alembic runs programmatically from `storage/migrations`; there is no alembic.ini.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from iotlm.settings import StorageSettings
from storage.lane import Lane, choose_lane, open_engine, recorded_lane

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


# Any constant shared by all IoT-LM processes: serializes concurrent migrations of one database.
MIGRATION_LOCK_KEY = 0x107_1A4


def _run(engine: Engine, action, revision: str, requested_lane: str, storage_settings: StorageSettings | None):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        # Several processes (workers, API, test sessions) may start at once and each upgrade.
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        conn.commit()
        try:
            config.attributes.update(connection=conn, requested_lane=requested_lane, storage_settings=storage_settings)
            action(config, revision)
            conn.commit()
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()


def _engine(url_or_engine: str | Engine) -> Engine:
    # One short-lived connection: also right for PGlite, which serves a single connection.
    return open_engine(url_or_engine, single_connection=True) if isinstance(url_or_engine, str) else url_or_engine


def upgrade(url_or_engine: str | Engine, *, lane: str = "auto", revision: str = "head",
            storage_settings: StorageSettings | None = None) -> Lane:
    """Bring the schema to `revision`; the lane is chosen on first creation ('auto' detects TimescaleDB)
    and kept: asking for the other lane later raises instead of silently keeping the old one."""
    engine = _engine(url_or_engine)
    if lane != "auto":
        with engine.connect() as conn:
            wanted = choose_lane(conn, lane)
            if inspect(conn).has_table("storage_lane") and recorded_lane(conn) is not wanted:
                raise ValueError(f"schema was created for lane {recorded_lane(conn).value}, not {wanted.value}; "
                                 "downgrade to base first to switch lanes")
    _run(engine, command.upgrade, revision, lane, storage_settings)
    with engine.connect() as conn:
        chosen = recorded_lane(conn)
    if chosen is Lane.POSTGRESQL:
        grant_roles(engine)
    return chosen


# What each component's role may do (iotlm.credentials; `iotlm stack up` creates the roles, none a
# superuser). Only the owner, who runs the migrations, may DROP, TRUNCATE or ALTER anything.
RESULT_TABLES = ("window_predictions", "activity_episodes", "alerts", "raw_frames", "room_states", "narratives")
_GRANTS = (
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO iotlm_reader, iotlm_worker, iotlm_api",
    # workers: their results (idempotent upserts: INSERT ... ON CONFLICT DO UPDATE), and read the registry
    f"GRANT INSERT, UPDATE ON {', '.join(RESULT_TABLES)} TO iotlm_worker",
    # the API: the registry, labels, alarms, keys, audit; never the migration bookkeeping
    "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO iotlm_api",
    "REVOKE INSERT, UPDATE, DELETE ON alembic_version, storage_lane FROM iotlm_api",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO iotlm_worker, iotlm_api",
)


def grant_roles(engine: Engine) -> bool:
    """Grant the component roles their rights on this database's tables (idempotent; after every
    upgrade, so new tables are covered). False where the roles do not exist (a server not set up by
    `iotlm stack`, or PGlite, which has a single user)."""
    with engine.connect() as conn:
        have = {r[0] for r in conn.execute(text(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('iotlm_reader', 'iotlm_worker', 'iotlm_api')"))}
        if len(have) < 3:
            return False
        for statement in _GRANTS:
            conn.execute(text(statement))
        conn.commit()
    return True


def head_revision() -> str:
    """The newest revision in `storage/migrations` (what `upgrade()` brings a database to)."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def downgrade(url_or_engine: str | Engine, *, revision: str = "base") -> None:
    """Roll the schema back to `revision` ('base' removes every table this part created)."""
    _run(_engine(url_or_engine), command.downgrade, revision, "auto", None)


def current_revision(url_or_engine: str | Engine) -> str | None:
    with _engine(url_or_engine).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def describe(url_or_engine: str | Engine) -> dict:
    """What `iotlm db info` shows: lane, revision, hypertables or partitions, aggregates, policies."""
    engine = _engine(url_or_engine)
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if not inspect(conn).has_table("storage_lane"):
            return {"lane": None, "revision": revision}
        row = conn.execute(text("SELECT lane, timescaledb_version, chosen_at FROM storage_lane")).one()
        info = {"lane": row.lane, "revision": revision, "timescaledb_version": row.timescaledb_version,
                "lane_chosen_at": row.chosen_at.isoformat()}
        if Lane(row.lane) is Lane.TIMESCALEDB:
            info["hypertables"] = {
                r.hypertable_name: {"chunks": r.num_chunks, "compression": r.compression_enabled}
                for r in conn.execute(text(
                    "SELECT hypertable_name, num_chunks, compression_enabled FROM timescaledb_information.hypertables "
                    "ORDER BY 1"))
            }
            info["aggregates"] = [r[0] for r in conn.execute(text(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates ORDER BY 1"))]
            info["policies"] = [
                {"job_id": r.job_id, "proc": r.proc_name, "table": r.hypertable_name,
                 "schedule": str(r.schedule_interval), "config": r.config}
                for r in conn.execute(text(
                    "SELECT job_id, proc_name, hypertable_name, schedule_interval, config "
                    "FROM timescaledb_information.jobs WHERE proc_schema = '_timescaledb_functions' "
                    "AND proc_name <> 'policy_job_stat_history_retention' ORDER BY job_id"))
            ]
        else:
            info["partitions"] = {
                r.parent: {"daily": r.daily, "first_day": r.first_day, "last_day": r.last_day,
                           "default": r.default_partition}
                for r in conn.execute(text(
                    "SELECT p.relname AS parent, count(*) FILTER (WHERE c.relname ~ '_p[0-9]{8}$') AS daily, "
                    "min(right(c.relname, 8)) FILTER (WHERE c.relname ~ '_p[0-9]{8}$') AS first_day, "
                    "max(right(c.relname, 8)) FILTER (WHERE c.relname ~ '_p[0-9]{8}$') AS last_day, "
                    "max(c.relname) FILTER (WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') AS default_partition "
                    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                    "JOIN pg_partitioned_table pt ON pt.partrelid = p.oid GROUP BY p.relname ORDER BY 1"))
            }
            info["aggregates"] = [r[0] for r in conn.execute(text(
                "SELECT matviewname FROM pg_matviews WHERE schemaname = current_schema() ORDER BY 1"))]
            info["policies"] = ["materialized views and partitions are maintained by `iotlm db maintain`"]
        return info
