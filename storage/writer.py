"""The fast, idempotent write path for stream results.

Every table is written in batches keyed by its natural key, so re-delivering a batch (a Kafka
consumer restarted before committing its offset, or a retry after a dropped connection) never
duplicates a row:

* PostgreSQL lane: binary COPY into a per-connection temp staging table, then one
  `INSERT ... SELECT ... ON CONFLICT` into the partitioned table. Tables where the first write wins
  first try a binary COPY straight into the table (under a savepoint): a key already stored makes it
  fail, and only then does the batch take the staging path.
* TimescaleDB lane: multi-row `INSERT ... VALUES ... ON CONFLICT` (PGlite crashes on COPY FROM STDIN),
  split into statements under PGlite's message size limit.

Predictions and raw frames use DO NOTHING (first write wins: they are facts); episodes and alerts,
which are re-sent as they grow or end, use DO UPDATE (latest version wins).

A batch that fails on a connection error is retried whole with exponential backoff; the conflict
clause makes the retry safe even if the first attempt committed before the connection dropped.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from operator import attrgetter
from typing import ClassVar

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from iotlm.settings import Settings, StorageSettings
from storage.lane import Lane, engine_from_settings, recorded_lane

log = logging.getLogger(__name__)

# Errors after which the same batch may succeed on a fresh connection (server restarting, network).
RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError, sa_exc.OperationalError, sa_exc.InterfaceError)
# PGlite and PostgreSQL both cap bind parameters per statement at 65535.
MAX_PARAMS_PER_STATEMENT = 30_000


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One classified window; the stream workers' sink maps its results onto this."""

    device_id: str
    window_start: datetime
    window_end: datetime
    model_version: str
    label: str
    probability: float
    distribution: Mapping[str, float]  # label -> probability
    room_id: str | None = None
    embedding_ref: str | None = None


@dataclass(frozen=True, slots=True)
class RawFrameRow:
    device_id: str
    t0: datetime
    seq: int
    payload: bytes  # the frame exactly as encoded on the wire
    received_at: datetime = field(default_factory=_utcnow)


@dataclass(frozen=True, slots=True)
class EpisodeRow:
    """An activity episode; sent again each time it grows, the latest version wins."""

    device_id: str
    started_at: datetime
    ended_at: datetime
    model_version: str
    label: str
    windows: int
    mean_probability: float
    room_id: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert; sent again when it ends (ended_at set), the latest version wins."""

    dedup_key: str
    started_at: datetime
    kind: str
    severity: str  # info | warning | critical
    device_id: str | None = None
    room_id: str | None = None
    ended_at: datetime | None = None
    payload: Mapping = field(default_factory=dict)


def _wire_size(value) -> int:
    """Rough bytes a bind value adds to an INSERT (placeholder text, length header, data)."""
    if isinstance(value, (str, bytes)):
        return 12 + len(value)
    if isinstance(value, Jsonb):
        return 12 + len(json.dumps(value.obj))
    return 24


@dataclass(frozen=True)
class TableSpec:
    """How rows of one dataclass land in one table."""

    table: str
    row_type: type
    key: tuple[str, ...]
    json_columns: tuple[str, ...] = ()
    # None: first write wins (ON CONFLICT DO NOTHING). Otherwise the SET clause of DO UPDATE.
    on_conflict_update: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.row_type))


# Predictions and raw frames are facts: the same model on the same window gives the same answer, and a
# batch may hold the same key twice (DO UPDATE would reject that), so the first write wins.
PREDICTIONS = TableSpec("window_predictions", PredictionRow, ("device_id", "window_start", "model_version"),
                        json_columns=("distribution",))
RAW_FRAMES = TableSpec("raw_frames", RawFrameRow, ("device_id", "t0", "seq"))
EPISODES = TableSpec(
    "activity_episodes", EpisodeRow, ("device_id", "started_at", "model_version"),
    on_conflict_update="ended_at = excluded.ended_at, label = excluded.label, windows = excluded.windows, "
                       "mean_probability = excluded.mean_probability, room_id = excluded.room_id",
)
ALERTS = TableSpec(
    "alerts", AlertRow, ("dedup_key", "started_at"), json_columns=("payload",),
    # A late re-delivery of the open alert must not reopen it or drop what its end added to the payload.
    on_conflict_update="ended_at = coalesce(excluded.ended_at, alerts.ended_at), severity = excluded.severity, "
                       "payload = alerts.payload || excluded.payload",
)


def column_type_oids(cur: psycopg.Cursor, table: str, columns: Sequence[str]) -> list[int]:
    """Type oids of `columns` of `table`, in that order, as binary COPY needs them."""
    cur.execute("SELECT attname, atttypid::int FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", [table])
    oids = dict(cur.fetchall())
    return [oids[c] for c in columns]


class BatchWriter:
    """Writes batches of one row type (`spec`) idempotently; see the module docstring for the two paths.

    `lane` None reads the lane recorded at migration time; pass it to skip that round trip.
    """

    spec: ClassVar[TableSpec]

    def __init__(self, engine_or_settings: Engine | Settings, lane: Lane | str | None = None,
                 storage_settings: StorageSettings | None = None):
        if isinstance(engine_or_settings, Settings):
            self.engine = engine_from_settings(engine_or_settings)
            storage_settings = storage_settings or engine_or_settings.storage
        else:
            self.engine = engine_or_settings
        self.config = storage_settings or StorageSettings()
        self.retries = 0  # connection errors survived so far, for metrics and tests
        self.lane = Lane(lane) if lane is not None else self._with_retry(self._read_lane)
        spec = self.spec
        cols = ", ".join(spec.columns)
        conflict = f"ON CONFLICT ({', '.join(spec.key)}) " + (
            f"DO UPDATE SET {spec.on_conflict_update}" if spec.on_conflict_update else "DO NOTHING")
        self._stage = f"stage_{spec.table}"
        self._copy_sql = f"COPY {self._stage} ({cols}) FROM STDIN"
        self._direct_copy_sql = f"COPY {spec.table} ({cols}) FROM STDIN"  # first-write-wins tables' fast path
        self._merge_sql = f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM {self._stage} {conflict}"
        self._insert_head = f"INSERT INTO {spec.table} ({cols}) VALUES "
        self._insert_row = "(" + ", ".join(["%s"] * len(spec.columns)) + ")"
        self._conflict = " " + conflict
        self._json_idx = [spec.columns.index(c) for c in spec.json_columns]
        self._values = attrgetter(*spec.columns)  # row -> tuple in column order (astuple deep-copies: slow)
        self._copy_types: list[int] | None = None  # column type oids, read on the first COPY

    def write(self, rows: Sequence) -> int:
        """Store `rows`; returns how many were new (DO NOTHING) or new-or-updated (DO UPDATE)."""
        if self.spec.on_conflict_update:
            # DO UPDATE may touch a key once per statement: keep the last version of each key in the batch.
            key_of = attrgetter(*self.spec.key)
            rows = list({key_of(r): r for r in rows}.values())
        write = self._copy_batch if self.lane is Lane.POSTGRESQL else self._insert_batch
        stored = 0
        for start in range(0, len(rows), self.config.write_batch_rows):
            batch = rows[start:start + self.config.write_batch_rows]
            stored += self._with_retry(lambda: self._in_transaction(write, batch))
        return stored

    def _read_lane(self) -> Lane:
        with self.engine.connect() as conn:
            return recorded_lane(conn)

    def _in_transaction(self, write: Callable[[psycopg.Cursor, Sequence], int], batch: Sequence) -> int:
        raw = self.engine.raw_connection()
        try:
            with raw.driver_connection.cursor() as cur:
                stored = write(cur, batch)
            raw.commit()
            return stored
        except RETRYABLE:
            raw.invalidate()  # never hand a broken connection back to the pool
            raise
        except Exception:
            raw.rollback()
            raise
        finally:
            raw.close()

    def _copy_batch(self, cur: psycopg.Cursor, batch: Sequence) -> int:
        if self._copy_types is None:
            self._copy_types = column_type_oids(cur, self.spec.table, self.spec.columns)
        if not self.spec.on_conflict_update:
            # First write wins, and almost every batch is new (re-deliveries follow only a restart or a
            # rebalance): COPY straight into the table, the key checked by its index as rows go in. Any
            # key already there (or twice in the batch) aborts that COPY alone, and the batch takes the
            # staging path below, which skips the keys already stored.
            cur.execute("SAVEPOINT direct_copy")
            try:
                self._copy_rows(cur, self._direct_copy_sql, batch)
                cur.execute("RELEASE SAVEPOINT direct_copy")
                return len(batch)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT direct_copy")
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {self._stage} "
                    f"(LIKE {self.spec.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        self._copy_rows(cur, self._copy_sql, batch)
        cur.execute(self._merge_sql)
        return cur.rowcount

    def _copy_rows(self, cur: psycopg.Cursor, copy_sql: str, batch: Sequence) -> None:
        # Binary COPY: about twice the rows/s of text COPY, the client no longer formats every value.
        with cur.copy(copy_sql + " (FORMAT BINARY)") as copy:
            copy.set_types(self._copy_types)
            for row in batch:
                values = self._values(row)
                if self._json_idx:
                    values = list(values)
                    for i in self._json_idx:
                        values[i] = None if values[i] is None else Jsonb(values[i])  # None stays SQL NULL
                copy.write_row(values)

    def _insert_batch(self, cur: psycopg.Cursor, batch: Sequence) -> int:
        stored = 0
        for chunk in self._statement_chunks(batch):
            params = [value for values in chunk for value in values]
            cur.execute(self._insert_head + ", ".join([self._insert_row] * len(chunk)) + self._conflict, params)
            stored += cur.rowcount
        return stored

    def _statement_chunks(self, batch: Sequence):
        """Rows' bind values grouped into statements under the parameter cap and the byte budget."""
        max_rows = max(1, MAX_PARAMS_PER_STATEMENT // len(self.spec.columns))
        chunk: list[list] = []
        size = 0
        for row in batch:
            values = list(self._values(row))
            for i in self._json_idx:
                values[i] = None if values[i] is None else Jsonb(values[i])
            row_size = sum(_wire_size(v) for v in values)
            if chunk and (size + row_size > self.config.timescale_max_statement_bytes or len(chunk) >= max_rows):
                yield chunk
                chunk, size = [], 0
            chunk.append(values)
            size += row_size
        if chunk:
            yield chunk

    def _with_retry(self, attempt: Callable[[], int]):
        delay = self.config.write_retry_initial_s
        deadline = time.monotonic() + self.config.write_retry_deadline_s
        while True:
            try:
                return attempt()
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise
                self.retries += 1
                log.warning("storage write to %s failed (%s); retrying in %.2fs", self.spec.table,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, delay)
                time.sleep(delay * random.uniform(0.8, 1.2))  # jitter: restarted workers don't retry in lockstep
                delay = min(delay * 2, self.config.write_retry_max_s)


class PredictionWriter(BatchWriter):
    spec = PREDICTIONS


class RawFrameWriter(BatchWriter):
    spec = RAW_FRAMES


class EpisodeWriter(BatchWriter):
    spec = EPISODES


class AlertWriter(BatchWriter):
    spec = ALERTS
