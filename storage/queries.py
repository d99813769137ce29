"""Read side for the API, the LLM tools and Grafana: the same SQL answers on both lanes.

Only the bucketing function differs between lanes (`time_bucket_sql`); the hourly aggregates have
the same names and columns whether they are continuous aggregates or materialized views. Results
are lists of plain dicts, ready for JSON.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text

from storage.lane import Lane, recorded_lane, time_bucket_sql


class StorageQueries:
    """Read queries over one database; `lane` None reads the lane recorded at migration time."""

    def __init__(self, engine: Engine, lane: Lane | None = None):
        self.engine = engine
        if lane is None:
            with engine.connect() as conn:
                lane = recorded_lane(conn)
        self.lane = lane

    def _rows(self, sql: str, **params) -> list[dict]:
        # Connections are closed right away: PGlite serves one client at a time.
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    def _labels_over_time(self, where: str, start: datetime, end: datetime, bucket: str,
                          model_version: str | None, **params) -> list[dict]:
        b = time_bucket_sql(self.lane, ":bucket", "window_start")
        return self._rows(
            f"SELECT {b} AS bucket, label, count(*) AS windows, avg(probability) AS mean_probability "
            f"FROM window_predictions WHERE {where} AND window_start >= :start AND window_start < :end "
            "AND (CAST(:model_version AS text) IS NULL OR model_version = :model_version) "
            "GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
            start=start, end=end, bucket=bucket, model_version=model_version, **params,
        )

    def device_history(self, device_id: str, start: datetime, end: datetime, bucket: str = "5 minutes",
                       model_version: str | None = None) -> list[dict]:
        """Per bucket and label: windows seen and mean top probability (most frequent label first)."""
        return self._labels_over_time("device_id = :device_id", start, end, bucket, model_version,
                                      device_id=device_id)

    def room_history(self, room_id: str, start: datetime, end: datetime, bucket: str = "5 minutes",
                     model_version: str | None = None) -> list[dict]:
        """Like `device_history`, over every device that was in the room."""
        return self._labels_over_time("room_id = :room_id", start, end, bucket, model_version, room_id=room_id)

    def episodes(self, start: datetime, end: datetime, device_id: str | None = None, room_id: str | None = None,
                 label: str | None = None) -> list[dict]:
        """Episodes overlapping [start, end), oldest first."""
        return self._rows(
            "SELECT device_id, room_id, label, started_at, ended_at, windows, mean_probability, model_version "
            "FROM activity_episodes WHERE started_at < :end AND ended_at > :start "
            "AND (CAST(:device_id AS text) IS NULL OR device_id = :device_id) "
            "AND (CAST(:room_id AS text) IS NULL OR room_id = :room_id) "
            "AND (CAST(:label AS text) IS NULL OR label = :label) ORDER BY started_at, device_id",
            start=start, end=end, device_id=device_id, room_id=room_id, label=label,
        )

    def activity_minutes(self, room_id: str, start: datetime, end: datetime, hop_s: float,
                         model_version: str | None = None) -> list[dict]:
        """Per hour and label, minutes of activity in a room, from the hourly aggregate.

        Hopping windows overlap; each window stands for one hop of time, hence windows x hop.
        """
        return self._rows(
            "SELECT bucket, label, sum(windows) AS windows, "
            "round(CAST(sum(windows) * CAST(:hop_s AS float8) / 60 AS numeric), 2) AS minutes "
            "FROM activity_per_room_hourly WHERE room_id = :room_id AND bucket >= :start AND bucket < :end "
            "AND (CAST(:model_version AS text) IS NULL OR model_version = :model_version) "
            "GROUP BY bucket, label ORDER BY bucket, label",
            room_id=room_id, start=start, end=end, hop_s=hop_s, model_version=model_version,
        )

    def device_uptime(self, device_id: str, start: datetime, end: datetime, hop_s: float) -> list[dict]:
        """Per hour, minutes a device was streaming (windows x hop, over its model versions' maximum)."""
        return self._rows(
            "SELECT bucket, max(windows) AS windows, "
            "round(CAST(max(windows) * CAST(:hop_s AS float8) / 60 AS numeric), 2) AS minutes, "
            "min(first_window_start) AS first_window_start, max(last_window_end) AS last_window_end "
            "FROM device_windows_hourly WHERE device_id = :device_id AND bucket >= :start AND bucket < :end "
            "GROUP BY bucket ORDER BY bucket",
            device_id=device_id, start=start, end=end, hop_s=hop_s,
        )

    def alerts(self, start: datetime, end: datetime, device_id: str | None = None, room_id: str | None = None,
               kind: str | None = None, open_only: bool = False) -> list[dict]:
        """Alerts started in [start, end), newest first."""
        return self._rows(
            "SELECT dedup_key, kind, severity, device_id, room_id, started_at, ended_at, payload FROM alerts "
            "WHERE started_at >= :start AND started_at < :end "
            "AND (CAST(:device_id AS text) IS NULL OR device_id = :device_id) "
            "AND (CAST(:room_id AS text) IS NULL OR room_id = :room_id) "
            "AND (CAST(:kind AS text) IS NULL OR kind = :kind) AND (NOT :open_only OR ended_at IS NULL) "
            "ORDER BY started_at DESC, dedup_key",
            start=start, end=end, device_id=device_id, room_id=room_id, kind=kind, open_only=open_only,
        )

    def room_states(self, start: datetime, end: datetime, room_id: str) -> list[dict]:
        """The room's stored states whose windows end in (start, end], oldest first."""
        return self._rows(
            "SELECT device_id, room_id, window_start, window_end, model_version, occupancy, occupancy_count, occupied, "
            "room_use, air_quality, people FROM room_states WHERE room_id = :room_id AND window_end > :start "
            "AND window_end <= :end ORDER BY window_end, device_id",
            start=start, end=end, room_id=room_id,
        )

    def narratives(self, start: datetime, end: datetime, subject_id: str | None = None, room_id: str | None = None,
                   limit: int = 1000) -> list[dict]:
        """The narration stage's lines about [start, end), newest first (Grafana: `at` and `text` as annotations)."""
        return self._rows(
            "SELECT subject_id, at, ends_at, kind, room_id, text, model_version, source FROM narratives "
            "WHERE at >= :start AND at < :end AND (CAST(:subject_id AS text) IS NULL OR subject_id = :subject_id) "
            "AND (CAST(:room_id AS text) IS NULL OR room_id = :room_id) ORDER BY at DESC LIMIT :limit",
            start=start, end=end, subject_id=subject_id, room_id=room_id, limit=limit,
        )

    def labeled_frames(self, labeled_since: datetime, device_id: str | None = None,
                       limit: int | None = None) -> list[dict]:
        """Raw frames inside label ranges given since `labeled_since`, with their label: fine-tuning input."""
        return self._rows(
            "SELECT f.device_id, f.t0, f.seq, f.payload, l.label, l.id AS label_id FROM labels l "
            "JOIN raw_frames f ON f.device_id = l.device_id AND f.t0 >= l.starts_at AND f.t0 < l.ends_at "
            "WHERE l.labeled_at >= :since AND (CAST(:device_id AS text) IS NULL OR l.device_id = :device_id) "
            "ORDER BY f.device_id, f.t0, f.seq LIMIT :limit",
            since=labeled_since, device_id=device_id, limit=limit,
        )

    def latest_model_version(self, name: str | None = None, status: str = "promoted") -> dict | None:
        """The most recently promoted (or created, for other statuses) model version, optionally by name."""
        rows = self._rows(
            "SELECT id, name, version, path, metrics, status, created_at, promoted_at FROM model_versions "
            "WHERE status = :status AND (CAST(:name AS text) IS NULL OR name = :name) "
            "ORDER BY coalesce(promoted_at, created_at) DESC, id DESC LIMIT 1",
            name=name, status=status,
        )
        return rows[0] if rows else None
