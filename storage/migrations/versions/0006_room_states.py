"""Room states: what the room model (models.rooms) and the wearables in a room say about it, per window.

`room_states` is a hypertable (TimescaleDB lane) or RANGE-partitioned by day (PostgreSQL lane) on
`window_end`, with an hourly aggregate `room_states_hourly` (continuous aggregate / materialized view
refreshed by `iotlm db maintain`), retention like the predictions'. The room alert rules join the
rule kinds an alert rule may have.

Revision ID: 0006
Revises: 0005
"""

from alembic import context, op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from iotlm.settings import StorageSettings
from storage.lane import Lane, recorded_lane, time_bucket_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ts = sa.DateTime(timezone=True)
OLD_KINDS = "('fall', 'sensor_fault', 'no_movement', 'room_hours', 'device_silent')"
NEW_KINDS = ("('fall', 'sensor_fault', 'no_movement', 'room_hours', 'device_silent', 'room_occupied_hours', "
             "'room_over_capacity', 'room_co2', 'room_temperature', 'room_sensor_stuck')")
HOURLY = """
    SELECT {bucket} AS bucket, room_id, model_version,
           count(*) AS windows, avg(occupancy_count) AS mean_occupancy, max(occupancy_count) AS max_occupancy,
           avg(CASE WHEN occupied THEN 1.0 ELSE 0.0 END) AS occupied_fraction,
           avg(co2_ppm) AS mean_co2_ppm, max(co2_ppm) AS max_co2_ppm, avg(temperature_c) AS mean_temperature_c,
           max(people) AS max_people
    FROM room_states GROUP BY 1, 2, 3"""


def upgrade() -> None:
    bind = op.get_bind()
    lane = recorded_lane(bind)
    cfg = context.config.attributes.get("storage_settings") or StorageSettings()
    partition = {"postgresql_partition_by": "RANGE (window_end)"} if lane is Lane.POSTGRESQL else {}
    op.create_table(
        "room_states",
        sa.Column("device_id", sa.String(64), primary_key=True),  # the room's environment device
        sa.Column("window_end", ts, primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("window_start", ts, nullable=False),
        sa.Column("room_id", sa.String(64)),
        sa.Column("occupancy", sa.String(32), nullable=False),
        sa.Column("occupancy_count", sa.Float, nullable=False),
        sa.Column("occupied", sa.Boolean, nullable=False),
        sa.Column("occupancy_probability", sa.Float, nullable=False),
        sa.Column("room_use", sa.String(64), nullable=False),
        sa.Column("use_probability", sa.Float, nullable=False),
        sa.Column("air_quality", sa.String(16), nullable=False),
        sa.Column("co2_ppm", sa.Float),
        sa.Column("temperature_c", sa.Float),
        sa.Column("humidity", sa.Float),
        sa.Column("light_lux", sa.Float),
        sa.Column("people", sa.Integer, nullable=False, server_default="0"),  # wearables registered and present
        sa.Column("activities", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("distribution", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("truth", JSONB),  # replayed simulated truth, when the frames carried it
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("occupancy_count >= 0 AND occupancy_count < 100000", name="room_states_count_finite"),
        sa.CheckConstraint("occupancy_probability BETWEEN 0 AND 1 AND use_probability BETWEEN 0 AND 1",
                           name="room_states_probability_finite"),
        **partition,
    )
    op.create_index("room_states_room", "room_states", ["room_id", "window_end"])
    if lane is Lane.TIMESCALEDB:
        op.execute("SELECT create_hypertable('room_states', by_range('window_end', INTERVAL '1 day'))")
        op.execute(f"SELECT add_retention_policy('room_states', INTERVAL '{cfg.prediction_retention_days} days')")
    else:
        op.execute("CREATE TABLE room_states_default PARTITION OF room_states DEFAULT")
        op.execute("CREATE INDEX room_states_window_end_brin ON room_states USING brin (window_end)")
        op.execute(sa.text("SELECT iotlm_ensure_daily_partitions('room_states', current_date - 1, "
                           f"current_date + {cfg.partition_days_ahead})"))
    bucket = time_bucket_sql(lane, "INTERVAL '1 hour'", "window_end")
    if lane is Lane.TIMESCALEDB:
        with op.get_context().autocommit_block():
            op.execute("CREATE MATERIALIZED VIEW room_states_hourly WITH (timescaledb.continuous, "
                       f"timescaledb.materialized_only = true) AS {HOURLY.format(bucket=bucket)} WITH NO DATA")
            op.execute("SELECT add_continuous_aggregate_policy('room_states_hourly', start_offset => INTERVAL '3 days', "
                       "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes')")
    else:
        op.execute(f"CREATE MATERIALIZED VIEW room_states_hourly AS {HOURLY.format(bucket=bucket)} WITH NO DATA")
        op.execute("CREATE UNIQUE INDEX room_states_hourly_key ON room_states_hourly (bucket, room_id, model_version)")
    op.execute("ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_known")
    op.execute(f"ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_kind_known CHECK (kind IN {NEW_KINDS})")


def downgrade() -> None:
    bind = op.get_bind()
    lane = recorded_lane(bind)
    op.execute("DELETE FROM alert_rules WHERE kind LIKE 'room\\_%' AND kind <> 'room_hours'")
    op.execute("ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_known")
    op.execute(f"ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_kind_known CHECK (kind IN {OLD_KINDS})")
    if lane is Lane.TIMESCALEDB:
        with op.get_context().autocommit_block():
            op.execute("DROP MATERIALIZED VIEW room_states_hourly")
        op.execute("SELECT remove_retention_policy('room_states')")
    else:
        op.execute("DROP MATERIALIZED VIEW room_states_hourly")
    op.drop_table("room_states")
