"""Hourly aggregates and data lifecycle.

TimescaleDB lane: continuous aggregates with refresh policies, compression and retention policies.
PostgreSQL lane: materialized views with the same names and columns (refreshed by `iotlm db maintain`),
SQL functions that create daily partitions ahead and drop expired ones, and the first week of partitions.

Revision ID: 0002
Revises: 0001
"""

from alembic import context, op
import sqlalchemy as sa

from iotlm.settings import StorageSettings
from storage.lane import Lane, recorded_lane, time_bucket_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

AGGREGATES = {
    # Per room, model version and label: how many windows were seen each hour (x hop = time spent).
    "activity_per_room_hourly": """
        SELECT {bucket} AS bucket, room_id, model_version, label,
               count(*) AS windows, avg(probability) AS mean_probability
        FROM window_predictions GROUP BY 1, 2, 3, 4""",
    # Per device and model version: windows each hour and the span they cover (uptime).
    "device_windows_hourly": """
        SELECT {bucket} AS bucket, device_id, model_version,
               count(*) AS windows, min(window_start) AS first_window_start, max(window_end) AS last_window_end
        FROM window_predictions GROUP BY 1, 2, 3""",
}
AGGREGATE_KEYS = {
    "activity_per_room_hourly": "bucket, room_id, model_version, label",
    "device_windows_hourly": "bucket, device_id, model_version",
}

ENSURE_PARTITIONS = """
CREATE FUNCTION iotlm_ensure_daily_partitions(parent regclass, first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    key text;
    day date;
    part text;
    lo timestamptz;
    hi timestamptz;
    created integer := 0;
BEGIN
    SELECT a.attname INTO key FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = parent;
    FOR day IN SELECT generate_series(first_day, last_day, INTERVAL '1 day')::date LOOP
        part := format('%s_p%s', parent::text, to_char(day, 'YYYYMMDD'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        -- Rows that arrived before their partition existed sit in the default partition: move them over.
        EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMPRESSION)',
                       part, parent);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved', parent::text || '_default', key, lo, key, hi, part);
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;
"""

DROP_PARTITIONS = """
CREATE FUNCTION iotlm_drop_partitions_before(parent regclass, cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    key text;
    part record;
    dropped integer := 0;
BEGIN
    SELECT a.attname INTO key FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = parent;
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = parent AND c.relname ~ '_p[0-9]{8}$'
           AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    EXECUTE format('DELETE FROM %I WHERE %I < %L', parent::text || '_default', key, cutoff);
    RETURN dropped;
END $$;
"""


def _storage_settings() -> StorageSettings:
    return context.config.attributes.get("storage_settings") or StorageSettings()


def upgrade() -> None:
    bind = op.get_bind()
    lane = recorded_lane(bind)
    cfg = _storage_settings()
    retention_days = {
        "raw_frames": cfg.raw_frame_retention_days,
        "window_predictions": cfg.prediction_retention_days,
        "alerts": cfg.alert_retention_days,
    }
    bucket = time_bucket_sql(lane, "INTERVAL '1 hour'", "window_start")
    if lane is Lane.TIMESCALEDB:
        op.execute("ALTER TABLE raw_frames SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', "
                   "timescaledb.compress_orderby = 't0, seq')")
        op.execute(f"SELECT add_compression_policy('raw_frames', INTERVAL '{cfg.raw_frame_compress_after_days} days')")
        for table, days in retention_days.items():
            op.execute(f"SELECT add_retention_policy('{table}', INTERVAL '{days} days')")
        # Continuous aggregates cannot be created inside a transaction.
        with op.get_context().autocommit_block():
            for name, select in AGGREGATES.items():
                op.execute(f"CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous, "
                           f"timescaledb.materialized_only = true) AS {select.format(bucket=bucket)} WITH NO DATA")
                op.execute(f"SELECT add_continuous_aggregate_policy('{name}', start_offset => INTERVAL '3 days', "
                           "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes')")
        return
    op.execute(ENSURE_PARTITIONS)
    op.execute(DROP_PARTITIONS)
    for table in retention_days:
        op.execute(sa.text(f"SELECT iotlm_ensure_daily_partitions('{table}', current_date - 1, "
                           f"current_date + {cfg.partition_days_ahead})"))
    for name, select in AGGREGATES.items():
        op.execute(f"CREATE MATERIALIZED VIEW {name} AS {select.format(bucket=bucket)} WITH NO DATA")
        # The unique index lets `REFRESH ... CONCURRENTLY` keep the view readable while it refreshes.
        op.execute(f"CREATE UNIQUE INDEX {name}_key ON {name} ({AGGREGATE_KEYS[name]})")


def downgrade() -> None:
    bind = op.get_bind()
    lane = recorded_lane(bind)
    if lane is Lane.TIMESCALEDB:
        with op.get_context().autocommit_block():
            for name in AGGREGATES:
                op.execute(f"DROP MATERIALIZED VIEW {name}")
        for table in ("raw_frames", "window_predictions", "alerts"):
            op.execute(f"SELECT remove_retention_policy('{table}')")
        op.execute("SELECT remove_compression_policy('raw_frames')")
        op.execute("SELECT decompress_chunk(c, true) FROM show_chunks('raw_frames') c")
        op.execute("ALTER TABLE raw_frames SET (timescaledb.compress = false)")
        return
    for name in AGGREGATES:
        op.execute(f"DROP MATERIALIZED VIEW {name}")
    # Daily partitions go with their tables in 0001's downgrade; only the functions are ours here.
    op.execute("DROP FUNCTION iotlm_ensure_daily_partitions(regclass, date, date)")
    op.execute("DROP FUNCTION iotlm_drop_partitions_before(regclass, timestamptz)")
