"""Tables, with the time-series ones as hypertables (TimescaleDB lane) or RANGE-partitioned (PostgreSQL lane).

Revision ID: 0001
Revises:
"""

from alembic import context, op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from storage.lane import Lane, choose_lane

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ts = sa.DateTime(timezone=True)
now = sa.text("now()")
# Chunk (hypertable) or partition (PostgreSQL) width per time-series table.
CHUNK_INTERVAL = {"raw_frames": "1 day", "window_predictions": "1 day", "alerts": "7 days"}
TIME_COLUMNS = {"raw_frames": "t0", "window_predictions": "window_start", "alerts": "started_at"}


def upgrade() -> None:
    bind = op.get_bind()
    lane = choose_lane(bind, context.config.attributes.get("requested_lane", "auto"))
    ts_version = None
    if lane is Lane.TIMESCALEDB:
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        ts_version = bind.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).scalar()

    op.create_table(
        "storage_lane",
        sa.Column("singleton", sa.Boolean, primary_key=True, server_default=sa.true()),
        sa.Column("lane", sa.String(16), nullable=False),
        sa.Column("timescaledb_version", sa.String(32)),
        sa.Column("chosen_at", ts, nullable=False, server_default=now),
        sa.CheckConstraint("singleton", name="storage_lane_one_row"),
        sa.CheckConstraint("lane IN ('timescaledb', 'postgresql')", name="storage_lane_known"),
    )
    op.execute(sa.text("INSERT INTO storage_lane (lane, timescaledb_version) VALUES (:lane, :v)")
               .bindparams(lane=lane.value, v=ts_version))

    op.create_table("sites", sa.Column("id", sa.String(64), primary_key=True), sa.Column("name", sa.Text, nullable=False))
    op.create_table(
        "buildings",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("buildings.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("floor", sa.Integer),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("placement", sa.String(32)),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id", ondelete="SET NULL")),
        sa.Column("owner", sa.Text),
        sa.Column("registered_at", ts, nullable=False, server_default=now),
        sa.Column("credentials_hash", sa.Text),
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("device_id", sa.String(64), nullable=False, index=True),
        sa.Column("starts_at", ts, nullable=False),
        sa.Column("ends_at", ts, nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("labeled_by", sa.Text, nullable=False),
        sa.Column("labeled_at", ts, nullable=False, server_default=now),
        sa.Column("source", sa.String(16), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="labels_range_positive"),
        sa.CheckConstraint("source IN ('manual', 'llm', 'rule', 'import')", name="labels_source_known"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("status", sa.String(16), nullable=False, server_default="candidate"),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("promoted_at", ts),
        sa.UniqueConstraint("name", "version", name="model_versions_name_version"),
        sa.CheckConstraint("status IN ('candidate', 'promoted', 'retired')", name="model_versions_status_known"),
    )
    op.create_table(
        "finetune_jobs",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("base_model_version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("result_model_version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("requested_by", sa.Text),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("started_at", ts),
        sa.Column("finished_at", ts),
        sa.Column("error", sa.Text),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
                           name="finetune_jobs_status_known"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("scopes", sa.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("revoked_at", ts),
    )
    op.create_table(
        "activity_episodes",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("started_at", ts, primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("ended_at", ts, nullable=False),
        sa.Column("room_id", sa.String(64)),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("windows", sa.Integer, nullable=False),
        sa.Column("mean_probability", sa.Float, nullable=False),
    )
    op.create_index("activity_episodes_room_started", "activity_episodes", ["room_id", "started_at"])

    def partitioned_by(column: str) -> dict:
        return {"postgresql_partition_by": f"RANGE ({column})"} if lane is Lane.POSTGRESQL else {}

    op.create_table(
        "raw_frames",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("t0", ts, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("received_at", ts, nullable=False, server_default=now),
        **partitioned_by("t0"),
    )
    op.create_table(
        "window_predictions",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("window_start", ts, primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("window_end", ts, nullable=False),
        sa.Column("room_id", sa.String(64)),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("distribution", JSONB, nullable=False),
        sa.Column("embedding_ref", sa.Text),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        **partitioned_by("window_start"),
    )
    op.create_table(
        "alerts",
        sa.Column("dedup_key", sa.Text, primary_key=True),
        sa.Column("started_at", ts, primary_key=True),
        sa.Column("ended_at", ts),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("device_id", sa.String(64)),
        sa.Column("room_id", sa.String(64)),
        sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name="alerts_severity_known"),
        **partitioned_by("started_at"),
    )
    op.create_index("window_predictions_room", "window_predictions", ["room_id", "window_start"])

    if lane is Lane.POSTGRESQL and bind.execute(sa.text(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")).scalar():
        # Frames over ~2 KB are TOASTed; lz4 is cheaper than the default pglz. Partitions inherit it.
        op.execute("ALTER TABLE raw_frames ALTER COLUMN payload SET COMPRESSION lz4")
    for table, column in TIME_COLUMNS.items():
        if lane is Lane.TIMESCALEDB:
            op.execute(f"SELECT create_hypertable('{table}', by_range('{column}', INTERVAL '{CHUNK_INTERVAL[table]}'))")
        else:
            # Rows older (replays) or newer than the daily partitions land here instead of being rejected;
            # creating a partition later moves its rows out of the default (iotlm_ensure_daily_partitions).
            op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
            # Time-ordered appends: a BRIN index is tiny and enough for range scans on time.
            op.execute(f"CREATE INDEX {table}_{column}_brin ON {table} USING brin ({column})")


def downgrade() -> None:
    for table in ("alerts", "window_predictions", "raw_frames", "activity_episodes", "api_keys", "finetune_jobs",
                  "model_versions", "labels", "devices", "rooms", "buildings", "sites", "storage_lane"):
        op.drop_table(table)
