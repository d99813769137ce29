"""The write path: re-delivery is idempotent on both lanes, and a PostgreSQL restart mid-stream loses nothing."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from deploy.process import free_ports
from iotlm.settings import StorageSettings
from storage import migrate
from storage.lane import open_engine
from storage.writer import AlertRow, AlertWriter, PredictionRow, PredictionWriter, RawFrameRow, RawFrameWriter

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)  # before any daily partition: the DEFAULT one takes them
pytestmark = pytest.mark.services


def predictions(n: int, devices: int = 4, model_version: str = "m1") -> list[PredictionRow]:
    return [
        PredictionRow(f"dev-{i % devices}", T0 + timedelta(seconds=1.28 * (i // devices)),
                      T0 + timedelta(seconds=1.28 * (i // devices) + 2.56), model_version,
                      "walking", 0.9, {"walking": 0.9, "sitting": 0.1}, "room-1", f"emb/{i}")
        for i in range(n)
    ]


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


class TestIdempotentWrites:
    def test_redelivered_predictions_leave_one_row_each(self, migrated):
        _url, lane, engine = migrated
        rows = predictions(600)
        writer = PredictionWriter(engine, lane, StorageSettings(write_batch_rows=250))
        assert writer.write(rows) == 600
        assert writer.write(rows) == 0  # the whole batch again: a consumer restarted before committing
        assert writer.write(rows[100:200] + rows[100:200] + predictions(1, model_version="m2")) == 1
        # stored rows ahead of new ones in one batch (a re-read that runs past the last write): only the new
        assert writer.write(rows[500:] + predictions(700)[600:]) == 100
        assert count(engine, "window_predictions") == 701
        with engine.connect() as conn:
            dist = conn.execute(text("SELECT distribution FROM window_predictions WHERE embedding_ref = 'emb/7'"))
            assert dist.scalar_one() == {"walking": 0.9, "sitting": 0.1}

    def test_raw_frames_round_trip_and_split_under_message_limit(self, migrated):
        _url, lane, engine = migrated
        # ~400 KB of frames: on the TimescaleDB lane this takes many INSERTs under PGlite's message limit.
        frames = [RawFrameRow(f"dev-{i % 3}", T0 + timedelta(seconds=i), i, bytes([i % 256]) * 5000 + b"\\\x00")
                  for i in range(80)]
        writer = RawFrameWriter(engine, lane)
        assert writer.write(frames) == 80
        assert writer.write(frames[:10]) == 0
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT payload FROM raw_frames WHERE seq = 7")).scalar_one()
        assert stored == frames[7].payload

    def test_alert_resent_when_it_ends_is_updated_not_duplicated(self, migrated):
        _url, lane, engine = migrated
        writer = AlertWriter(engine, lane)
        opened = AlertRow("fall:dev-1:1", T0, "fall", "critical", "dev-1", "room-1", payload={"impact_g": 2.5})
        ended = AlertRow("fall:dev-1:1", T0, "fall", "critical", "dev-1", "room-1", ended_at=T0 + timedelta(minutes=3),
                         payload={"impact_g": 2.5, "resolved_by": "nurse"})
        assert writer.write([opened]) == 1
        assert writer.write([opened, ended]) == 1  # the later version in a batch wins...
        assert writer.write([opened]) == 1  # ...and a late re-delivery of the open alert keeps what the end added
        with engine.connect() as conn:
            row = conn.execute(text("SELECT ended_at, payload FROM alerts")).one()
        assert row.ended_at == ended.ended_at
        assert row.payload == {"impact_g": 2.5, "resolved_by": "nurse"}
        assert count(engine, "alerts") == 1


@pytest.fixture
def private_postgres(settings, tmp_path):
    """A PostgreSQL of this test's own, started through the stack API, so restarting it never
    disturbs the shared stack's server other tests use."""
    from deploy.stack import Stack

    own = settings.model_copy(update={
        "state_dir": tmp_path / "state",
        "stack": settings.stack.model_copy(update={"postgres_port": free_ports()[0]}),
    })
    stack = Stack(own)
    stack.up(["postgres"])
    yield own, stack
    stack.down(only=["postgres"])
    shutil.rmtree(stack.services["postgres"].data_root, ignore_errors=True)


@pytest.mark.slow
def test_postgres_restart_mid_stream_loses_nothing(private_postgres):
    own, stack = private_postgres
    migrate.upgrade(own.database_url)
    engine = open_engine(own.database_url)
    writer = PredictionWriter(engine, storage_settings=StorageSettings(
        write_batch_rows=200, write_retry_initial_s=0.05, write_retry_max_s=0.5, write_retry_deadline_s=60))
    rows = predictions(12_000)
    batches = [rows[i:i + 200] for i in range(0, len(rows), 200)]
    written: list[int] = []
    failures: list[BaseException] = []

    def stream() -> None:
        try:
            for batch in batches:
                written.append(writer.write(batch))
                time.sleep(0.02)  # a worker's pace: the restart lands in the middle of the stream
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=stream)
    worker.start()
    while len(written) < 10 and worker.is_alive():
        time.sleep(0.01)
    assert stack.down(only=["postgres"]) == ["postgres"]
    time.sleep(1.0)
    stack.up(["postgres"])
    worker.join(timeout=120)

    assert not failures and not worker.is_alive()
    assert writer.retries > 0
    assert len(written) == len(batches)
    assert count(engine, "window_predictions") == len(rows)
    assert writer.write(rows) == 0  # re-sending everything after the outage adds nothing
    engine.dispose()
