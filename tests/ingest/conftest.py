"""Fixtures for ingest tests against the real stack: private topics and an independent reader."""

from __future__ import annotations

import time
import uuid

import pytest

from iotlm.credentials import kafka_client_kwargs


@pytest.fixture
def topic_settings(settings, stack):
    """The session settings with frames and DLQ topics (and MQTT topic) private to one test."""
    from deploy.topics import admin_client, ensure_topics

    suffix = uuid.uuid4().hex[:10]
    private = settings.model_copy(deep=True)
    private.kafka.frames_topic = f"{settings.kafka.frames_topic}.test-{suffix}"
    private.kafka.dlq_topic = f"{settings.kafka.dlq_topic}.test-{suffix}"
    private.ingest.mqtt_topic = f"iotlm-test/{suffix}/#"
    private.kafka.partitions = 3  # enough to spread devices; fewer log files on the shared broker
    ensure_topics(private)
    yield private
    admin = admin_client(settings)
    try:
        admin.delete_topics([private.kafka.frames_topic, private.kafka.dlq_topic])
    finally:
        admin.close()


@pytest.fixture
def read_topic():
    """``read(settings, topic, expected, timeout_s)``: every record of ``topic``, read by a fresh
    kafka-python consumer (no group, from the beginning) until ``expected`` arrived or time ran out;
    then one more short poll so that extra, unexpected records would be seen too."""
    from kafka import KafkaConsumer, TopicPartition

    def read(settings, topic: str, expected: int, timeout_s: float = 60.0) -> list:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
        )
        try:
            deadline = time.monotonic() + timeout_s
            partitions = None
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(topic)
                time.sleep(0.1 if not partitions else 0)
            assert partitions, f"topic {topic} never appeared"
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            consumer.seek_to_beginning()
            records: list = []
            while len(records) < expected and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
            return records
        finally:
            consumer.close()

    return read
