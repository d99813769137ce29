"""Kafka 4 (KRaft, from Maven Central jars) against the Python clients the workers use."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from iotlm.settings import Settings
from iotlm.credentials import kafka_client_kwargs, kafka_tool_config


@pytest.fixture
def fresh_topic(stack, settings: Settings) -> Iterator[str]:
    """A topic of two partitions of our own, deleted afterwards."""
    from kafka.admin import NewTopic

    from deploy.topics import admin_client

    name = f"test.deploy.{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    try:
        admin.create_topics([NewTopic(name, 2, 1)], wait_for_metadata=True)
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


class TestTopics:
    def test_stack_created_the_topics_with_their_partitions(self, stack, settings: Settings):
        from deploy.topics import admin_client, ensure_topics, topic_partitions

        admin = admin_client(settings)
        try:
            described = admin.describe_topics(list(topic_partitions(settings)))
        finally:
            admin.close()
        assert {t["name"]: len(t["partitions"]) for t in described} == topic_partitions(settings)
        assert topic_partitions(settings)[settings.kafka.frames_topic] == settings.kafka.partitions
        assert ensure_topics(settings) == []  # idempotent

    def test_ensure_topics_creates_then_grows_partitions(self, stack, settings: Settings):
        from deploy.topics import admin_client, ensure_topics

        suffix = uuid.uuid4().hex[:8]
        names = {f: f"test.deploy.{f}.{suffix}" for f in ("frames_topic", "dlq_topic", "alerts_topic", "control_topic")}
        mine = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={**names, "partitions": 2})})
        assert sorted(ensure_topics(mine)) == sorted(names.values())
        more = mine.model_copy(update={"kafka": mine.kafka.model_copy(update={"partitions": 4})})
        assert ensure_topics(more) == []
        admin = admin_client(settings)
        try:
            counts = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(names.values()))}
            admin.delete_topics(list(names.values()))
        finally:
            admin.close()
        assert counts == {names["frames_topic"]: 4, names["dlq_topic"]: 4, names["alerts_topic"]: 1,
                          names["control_topic"]: 1}


class TestPythonClients:
    def test_kafka_python_round_trip(self, fresh_topic: str, settings: Settings):
        from kafka import KafkaConsumer, KafkaProducer

        topic = fresh_topic
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"), acks="all")
        for i in range(5):
            producer.send(topic, key=b"dev-1", value=f"frame {i}".encode())
        producer.flush(timeout=30)
        producer.close()
        consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"), group_id=f"g-{topic}",
                                 auto_offset_reset="earliest", consumer_timeout_ms=15000)
        values = []
        for message in consumer:
            values.append(message.value.decode())
            if len(values) == 5:
                break
        consumer.close()
        assert values == [f"frame {i}" for i in range(5)]  # one key: one partition, in order

    def test_aiokafka_round_trip(self, fresh_topic: str, settings: Settings):
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        topic = fresh_topic

        async def round_trip() -> list[bytes]:
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"))
            await producer.start()
            try:
                for i in range(3):
                    await producer.send_and_wait(topic, f"aio {i}".encode(), key=b"dev-2")
            finally:
                await producer.stop()
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"),
                                        group_id=f"g-{topic}", auto_offset_reset="earliest")
            await consumer.start()
            got = []
            try:
                async with asyncio.timeout(30):
                    async for message in consumer:
                        got.append(message.value)
                        if len(got) == 3:
                            break
            finally:
                await consumer.stop()
            return got

        assert asyncio.run(round_trip()) == [b"aio 0", b"aio 1", b"aio 2"]

    def test_console_consumer_from_the_same_jars(self, fresh_topic: str, settings: Settings):
        from kafka import KafkaProducer

        from deploy.stack import kafka_java_argv

        topic = fresh_topic
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"))
        producer.send(topic, key=b"k", value=b"hello from python")
        producer.flush(timeout=30)
        producer.close()
        result = subprocess.run(
            kafka_java_argv("org.apache.kafka.tools.consumer.ConsoleConsumer")
            + ["--bootstrap-server", settings.kafka_bootstrap, "--command-config", str(kafka_tool_config(settings)), "--topic", topic, "--from-beginning",
               "--max-messages", "1", "--timeout-ms", "30000"],
            capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == "hello from python"
