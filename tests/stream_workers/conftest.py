"""Fixtures for the live stream-worker tests: a private topic set, consumer group and database per test,
and the windows a complete replay must produce (what every test compares the stored rows with)."""

from __future__ import annotations

import uuid
import pytest

from deploy.process import free_port_block
from stream_workers.app import segment_from_frame
from stream_workers.windows import WindowAssembler
from iotlm.credentials import postgres_connect_kwargs


@pytest.fixture
def isolated(settings, stack):
    """`settings` with its own frames/DLQ/alerts topics, consumer group and PostgreSQL database."""
    import psycopg
    from deploy.topics import admin_client, ensure_topics, topic_partitions
    from storage.migrate import upgrade

    tag = uuid.uuid4().hex[:10]
    db = f"iotlm_sw_{tag}"
    owner = postgres_connect_kwargs(settings)  # the shared database, as the schema owner
    with psycopg.connect(**owner, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    private = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"test.{tag}.frames", "dlq_topic": f"test.{tag}.dlq",
            "alerts_topic": f"test.{tag}.alerts", "control_topic": f"test.{tag}.control", "partitions": 4,
        }),
        "workers": settings.workers.model_copy(update={
            "consumer_group": f"test-{tag}", "metrics_port": free_port_block(4), "model_key": f"test:{tag}:model",
            "commit_interval_s": 0.5,
        }),
        "stack": settings.stack.model_copy(update={"postgres_db": db}),
        "storage": settings.storage.model_copy(update={"lane": "postgresql"}),
    })
    ensure_topics(private)
    upgrade(private.database_url)
    yield private
    with psycopg.connect(**owner, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    admin = admin_client(private, client_id="iotlm-test-cleanup")
    try:
        admin.delete_topics(list(topic_partitions(private)))
    finally:
        admin.close()


@pytest.fixture
def stored_windows():
    """fn(settings, device_ids) -> [(device, window start)] of every stored prediction row, duplicates kept."""
    import psycopg

    def query(settings, device_ids) -> list[tuple[str, float]]:
        with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
            rows = conn.execute(
                "SELECT device_id, window_start FROM window_predictions WHERE device_id = ANY(%s)",
                (list(device_ids),),
            ).fetchall()
        return [(device, round(start.timestamp(), 3)) for device, start in rows]

    return query


@pytest.fixture
def stored_raw_frames():
    """fn(settings, device_ids) -> [(device, seq, payload)] of every stored raw frame row, duplicates kept."""
    import psycopg

    def query(settings, device_ids) -> list[tuple[str, int, bytes]]:
        with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
            rows = conn.execute("SELECT device_id, seq, payload FROM raw_frames WHERE device_id = ANY(%s)",
                                (list(device_ids),)).fetchall()
        return [(device, seq, bytes(payload)) for device, seq, payload in rows]

    return query


@pytest.fixture
def expected_windows():
    """fn(settings, frames, rate_hz) -> {(device, window start)} an assembler makes of the complete stream."""

    def compute(settings, frames, rate_hz: float) -> set[tuple[str, float]]:
        assembler = WindowAssembler.from_settings(settings.workers, rate_hz)
        keys = set()
        for offset, (frame, truth) in enumerate(frames):
            segment = segment_from_frame(frame, truth.labels if truth else None, 0, offset, 0.0)
            keys |= {(x.device_id, round(x.start, 3)) for x in assembler.add(segment).windows}
        return keys

    return compute
