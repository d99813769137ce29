"""Kafka 4 (KRaft, from Maven Central jars) against the Python clients the workers use."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

from iotlm.settings import Settings


def _fresh_topic(settings: Settings) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = f"test.deploy.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, 2, 1)], wait_for_metadata=True)
    finally:
        admin.close()
    return name


class TestTopics:
    def test_stack_created_the_topics_with_their_partitions(self, stack, settings: Settings):
        from kafka import KafkaAdminClient

        from deploy.topics import ensure_topics, topic_partitions

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            described = admin.describe_topics(list(topic_partitions(settings)))
        finally:
            admin.close()
        assert {t["name"]: len(t["partitions"]) for t in described} == topic_partitions(settings)
        assert topic_partitions(settings)[settings.kafka.frames_topic] == settings.kafka.partitions
        assert ensure_topics(settings) == []  # idempotent


class TestPythonClients:
    def test_kafka_python_round_trip(self, stack, settings: Settings):
        from kafka import KafkaConsumer, KafkaProducer

        topic = _fresh_topic(settings)
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        for i in range(5):
            producer.send(topic, key=b"dev-1", value=f"frame {i}".encode())
        producer.flush(timeout=30)
        producer.close()
        consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=f"g-{topic}",
                                 auto_offset_reset="earliest", consumer_timeout_ms=15000)
        values = []
        for message in consumer:
            values.append(message.value.decode())
            if len(values) == 5:
                break
        consumer.close()
        assert values == [f"frame {i}" for i in range(5)]  # one key: one partition, in order

    def test_aiokafka_round_trip(self, stack, settings: Settings):
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        topic = _fresh_topic(settings)

        async def round_trip() -> list[bytes]:
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
            await producer.start()
            try:
                for i in range(3):
                    await producer.send_and_wait(topic, f"aio {i}".encode(), key=b"dev-2")
            finally:
                await producer.stop()
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
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

    def test_console_consumer_from_the_same_jars(self, stack, settings: Settings):
        from kafka import KafkaProducer

        from deploy.stack import kafka_java_argv

        topic = _fresh_topic(settings)
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        producer.send(topic, key=b"k", value=b"hello from python")
        producer.flush(timeout=30)
        producer.close()
        result = subprocess.run(
            kafka_java_argv("org.apache.kafka.tools.consumer.ConsoleConsumer")
            + ["--bootstrap-server", settings.kafka_bootstrap, "--topic", topic, "--from-beginning",
               "--max-messages", "1", "--timeout-ms", "30000"],
            capture_output=True, text=True, timeout=90,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == "hello from python"
