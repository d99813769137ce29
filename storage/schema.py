"""The tables, as SQLAlchemy 2 declarative models.

The Alembic revisions in `storage/migrations/versions` create exactly these tables; the time-series
tables (`raw_frames`, `window_predictions`, `alerts`) are then made hypertables or RANGE-partitioned
by the lane-specific revision, which is why their primary keys include their time column.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY, BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String,
    Text, UniqueConstraint, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MODEL_STATUSES = ("candidate", "promoted", "retired")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
LABEL_SOURCES = ("manual", "llm", "rule", "import")
SEVERITIES = ("info", "warning", "critical")
SCOPES = ("read", "label", "admin")
RULE_KINDS = ("fall", "sensor_fault", "no_movement", "room_hours", "device_silent", "room_occupied_hours",
              "room_over_capacity", "room_co2", "room_temperature", "room_sensor_stuck")
RULE_SCOPES = ("fleet", "site", "room", "device")
ALARM_STATUSES = ("active", "acknowledged", "cleared")

Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class StorageLane(Base):
    """One row: which lane the schema was created for."""

    __tablename__ = "storage_lane"
    singleton: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    lane: Mapped[str] = mapped_column(String(16))
    timescaledb_version: Mapped[str | None] = mapped_column(String(32))
    chosen_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (CheckConstraint("singleton", name="storage_lane_one_row"),
                      CheckConstraint("lane IN ('timescaledb', 'postgresql')", name="storage_lane_known"))


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)


class Building(Base):
    __tablename__ = "buildings"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)


class Room(Base):
    __tablename__ = "rooms"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("buildings.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    floor: Mapped[int | None] = mapped_column(Integer)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    placement: Mapped[str | None] = mapped_column(String(32))  # wrist, waist, wall...
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id", ondelete="SET NULL"))
    owner: Mapped[str | None] = mapped_column(Text)
    registered_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    credentials_hash: Mapped[str | None] = mapped_column(Text)  # of the device's ingest secret, never the secret
    kind: Mapped[str | None] = mapped_column(String(32))  # imu, env, ...
    deactivated_at: Mapped[datetime | None] = mapped_column(Timestamp)  # set: its frames are refused
    credentials_issued_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RawFrame(Base):
    """An encoded frame as received, kept (compressed) so newly labeled stretches can be fine-tuned on."""

    __tablename__ = "raw_frames"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    t0: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class WindowPrediction(Base):
    __tablename__ = "window_predictions"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_end: Mapped[datetime] = mapped_column(Timestamp)
    room_id: Mapped[str | None] = mapped_column(String(64))  # where the device was when the window was seen
    label: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    distribution: Mapped[dict] = mapped_column(JSONB)
    embedding_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class ActivityEpisode(Base):
    """A run of consecutive windows with the same label on one device; re-sent as it grows."""

    __tablename__ = "activity_episodes"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(Timestamp)
    room_id: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64))
    windows: Mapped[int] = mapped_column(Integer)
    mean_probability: Mapped[float] = mapped_column(Float)


class Alert(Base):
    __tablename__ = "alerts"
    dedup_key: Mapped[str] = mapped_column(Text, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp)
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(String(64))
    room_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSONB, default=dict)
    __table_args__ = (CheckConstraint(f"severity IN {SEVERITIES}", name="alerts_severity_known"),)


class RoomState(Base):
    """What the room model and the wearables present say about a room for one window (models.rooms)."""

    __tablename__ = "room_states"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the room's environment device
    window_end: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp)
    room_id: Mapped[str | None] = mapped_column(String(64))
    occupancy: Mapped[str] = mapped_column(String(32))
    occupancy_count: Mapped[float] = mapped_column(Float)
    occupied: Mapped[bool] = mapped_column(Boolean)
    occupancy_probability: Mapped[float] = mapped_column(Float)
    room_use: Mapped[str] = mapped_column(String(64))
    use_probability: Mapped[float] = mapped_column(Float)
    air_quality: Mapped[str] = mapped_column(String(16))
    co2_ppm: Mapped[float | None] = mapped_column(Float)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    humidity: Mapped[float | None] = mapped_column(Float)
    light_lux: Mapped[float | None] = mapped_column(Float)
    people: Mapped[int] = mapped_column(Integer, server_default="0")
    activities: Mapped[dict] = mapped_column(JSONB, default=dict)
    distribution: Mapped[dict] = mapped_column(JSONB, default=dict)
    truth: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Narrative(Base):
    """The narration stage's one line about a closed episode or a room-state change (stream_workers/narration.py)."""

    __tablename__ = "narratives"
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    ends_at: Mapped[datetime | None] = mapped_column(Timestamp)
    room_id: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[dict] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (CheckConstraint("kind IN ('episode', 'room_state')", name="narratives_kind_known"),
                      CheckConstraint("length(text) <= 500", name="narratives_text_short"),
                      Index("narratives_at", "at"), Index("narratives_room", "room_id", "at"))


class Label(Base):
    """Ground truth for a time range of one device, from a person or another source."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    starts_at: Mapped[datetime] = mapped_column(Timestamp)
    ends_at: Mapped[datetime] = mapped_column(Timestamp)
    label: Mapped[str] = mapped_column(String(64))
    labeled_by: Mapped[str] = mapped_column(Text)
    labeled_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    source: Mapped[str] = mapped_column(String(16))
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="labels_range_positive"),
                      CheckConstraint(f"source IN {LABEL_SOURCES}", name="labels_source_known"))


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    promoted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # lineage, training data, files and the promotion decision (revision 0005; finetune/registry.py)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    job_id: Mapped[int | None] = mapped_column(Integer)
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    training: Mapped[dict] = mapped_column(JSONB, default=dict)
    files: Mapped[dict] = mapped_column(JSONB, default=dict)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    retired_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (UniqueConstraint("name", "version", name="model_versions_name_version"),
                      CheckConstraint(f"status IN {MODEL_STATUSES}", name="model_versions_status_known"),
                      Index("model_versions_one_promoted", "name", unique=True,
                            postgresql_where=text("status = 'promoted'")))


class FinetuneJob(Base):
    __tablename__ = "finetune_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    base_model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    result_model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict] = mapped_column(JSONB, default=dict)
    requested_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    error: Mapped[str | None] = mapped_column(Text)
    # progress, ownership and the outcome (revision 0005; finetune/jobs.py)
    stage: Mapped[str] = mapped_column(String(32), server_default="queued")
    percent: Mapped[float] = mapped_column(Float, server_default="0")
    log: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    runner: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    result: Mapped[dict] = mapped_column(JSONB, default=dict)
    __table_args__ = (CheckConstraint(f"status IN {JOB_STATUSES}", name="finetune_jobs_status_known"),
                      Index("finetune_jobs_open", "status", "id",
                            postgresql_where=text("status IN ('queued', 'running')")))


class ApiKey(Base):
    """A key of the admin API: only its hash is kept, found by its public prefix."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    prefix: Mapped[str] = mapped_column(String(16), index=False)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    __table_args__ = (Index("api_keys_prefix", "prefix"),
                      CheckConstraint("scopes <@ ARRAY['read', 'label', 'admin']::text[]", name="api_keys_scopes_known"))


class LabelSet(Base):
    """The activity names the workers classify a site's devices against."""

    __tablename__ = "label_sets"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (CheckConstraint("cardinality(labels) >= 2", name="label_sets_two_or_more"),)


class AlertRule(Base):
    """Parameters of one built-in alert rule for the fleet, a site, a room or a device (most specific wins)."""

    __tablename__ = "alert_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str] = mapped_column(String(64))  # '' for the whole fleet
    params: Mapped[dict] = mapped_column(JSONB, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (UniqueConstraint("kind", "scope", "scope_id", name="alert_rules_one_per_kind_and_scope"),
                      CheckConstraint(f"kind IN {RULE_KINDS}", name="alert_rules_kind_known"),
                      CheckConstraint(f"scope IN {RULE_SCOPES}", name="alert_rules_scope_known"),
                      CheckConstraint("(scope = 'fleet') = (scope_id = '')", name="alert_rules_scope_id_given"))


class Alarm(Base):
    """What an operator handles: alerts of one rule on one subject, from first seen until cleared."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(80))  # 'device:<id>' or 'room:<id>'
    rule: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(64))
    room_id: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSONB, default=dict)
    dedup_keys: Mapped[list[str]] = mapped_column(ARRAY(Text))  # every alert counted: a re-delivery counts once
    occurrences: Mapped[int] = mapped_column(Integer, server_default="1")
    first_seen_at: Mapped[datetime] = mapped_column(Timestamp)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp)
    assignee: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(Timestamp)
    acknowledged_by: Mapped[int | None] = mapped_column(Integer)
    cleared_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cleared_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    __table_args__ = (CheckConstraint(f"status IN {ALARM_STATUSES}", name="alarms_status_known"),
                      CheckConstraint(f"severity IN {SEVERITIES}", name="alarms_severity_known"),
                      CheckConstraint("occurrences > 0", name="alarms_occurrences_positive"),
                      Index("alarms_one_open", "subject", "rule", unique=True,
                            postgresql_where=text("status <> 'cleared'")),
                      Index("alarms_last_seen", "last_seen_at"), Index("alarms_subject_rule", "subject", "rule"))


class AuditEntry(Base):
    """One write through the admin API: who (key), what, when, and the record before and after."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    key_id: Mapped[int | None] = mapped_column(Integer)  # None: the system (alarm keeper) or the local CLI
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(Text)
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
    __table_args__ = (Index("audit_log_entity", "entity", "entity_id"), Index("audit_log_at", "at"))
