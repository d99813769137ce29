"""The tables, as SQLAlchemy 2 declarative models.

The Alembic revisions in `storage/migrations/versions` create exactly these tables; the time-series
tables (`raw_frames`, `window_predictions`, `alerts`) are then made hypertables or RANGE-partitioned
by the lane-specific revision, which is why their primary keys include their time column.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY, BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer, LargeBinary, String,
    Text, UniqueConstraint, func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MODEL_STATUSES = ("candidate", "promoted", "retired")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
LABEL_SOURCES = ("manual", "llm", "rule", "import")
SEVERITIES = ("info", "warning", "critical")

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
    credentials_hash: Mapped[str | None] = mapped_column(Text)


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
    __table_args__ = (UniqueConstraint("name", "version", name="model_versions_name_version"),
                      CheckConstraint(f"status IN {MODEL_STATUSES}", name="model_versions_status_known"))


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
    __table_args__ = (CheckConstraint(f"status IN {JOB_STATUSES}", name="finetune_jobs_status_known"),)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
