"""Kafka's SASL/SCRAM users and ACLs on the real broker: every component is what its principal
allows and nothing more (deploy/topics.py has the table), and nobody gets in without a password."""

from __future__ import annotations

import stat
import uuid

import pytest

from iotlm.credentials import kafka_client_kwargs, secrets_dir


@pytest.fixture
def topics(settings, stack):
    """`settings` with topics and a consumer group of their own, created (with ACLs) by the admin."""
    from deploy.topics import admin_client, ensure_topics, topic_partitions

    tag = uuid.uuid4().hex[:8]
    private = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"test.{tag}.frames", "dlq_topic": f"test.{tag}.dlq",
            "alerts_topic": f"test.{tag}.alerts", "control_topic": f"test.{tag}.control", "partitions": 1,
        }),
        "workers": settings.workers.model_copy(update={"consumer_group": f"test-{tag}"}),
    })
    ensure_topics(private)
    yield private
    admin = admin_client(private)
    try:
        admin.delete_topics(list(topic_partitions(private)))
    finally:
        admin.close()


def produce(settings, principal: str, topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, principal),
                             max_block_ms=10_000)
    try:
        producer.send(topic, b"x").get(timeout=15)
    finally:
        producer.close(timeout=5)


def read_one(settings, principal: str, topic: str, group: str | None = None) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, principal),
                             group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000)
    try:
        for message in consumer:  # the first record, or none within the timeout
            return [message.value]
        return []
    finally:
        consumer.close()


def test_secrets_are_generated_owner_only(stack, settings):
    folder = secrets_dir(settings)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "kafka.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.state_dir / "kafka" / "server.properties").stat().st_mode) == 0o600
    # no password the repository could know: each is long and random, none repeated
    from iotlm.credentials import KAFKA_PRINCIPALS, password

    secrets = {password(settings, "kafka", p) for p in KAFKA_PRINCIPALS}
    assert len(secrets) == len(KAFKA_PRINCIPALS) and min(map(len, secrets)) >= 24


def test_client_without_credentials_cannot_connect(stack, settings):
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):  # PLAINTEXT to a SASL listener: the broker hangs up
        KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000,
                         bootstrap_timeout_ms=5000).list_topics()
    wrong = kafka_client_kwargs(settings, "worker") | {"sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError):
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_block_ms=5000, **wrong)
        producer.send(settings.kafka.frames_topic, b"x").get(timeout=10)


def test_each_component_does_its_job(topics):
    """The positive side, so the refusals below are ACLs and not a broken broker."""
    k = topics.kafka
    produce(topics, "ingest", k.frames_topic)
    assert read_one(topics, "worker", k.frames_topic, group=topics.workers.consumer_group) == [b"x"]
    produce(topics, "worker", k.alerts_topic)
    produce(topics, "api", k.control_topic)
    assert read_one(topics, "ingest", k.control_topic) == [b"x"]


def test_worker_cannot_manage_topics_nor_write_control(topics):
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAuthorizationFailedError

    from deploy.topics import admin_client

    admin = admin_client(topics, "worker")
    try:
        with pytest.raises(KafkaError):
            admin.create_topics([NewTopic(f"test.{uuid.uuid4().hex[:8]}.evil", 1, 1)])
        with pytest.raises(KafkaError):
            admin.delete_topics([topics.kafka.frames_topic])
    finally:
        admin.close()
    assert topics.kafka.frames_topic in admin_client(topics).list_topics()  # still there
    with pytest.raises(TopicAuthorizationFailedError):
        produce(topics, "worker", topics.kafka.control_topic)
    with pytest.raises(TopicAuthorizationFailedError):
        produce(topics, "worker", topics.kafka.frames_topic)  # nor forge frames


def test_ingest_cannot_read_results_nor_join_groups(topics):
    from kafka.errors import KafkaError

    k = topics.kafka
    produce(topics, "worker", k.alerts_topic)
    produce(topics, "ingest", k.frames_topic)
    assert read_one(topics, "admin", k.alerts_topic) == [b"x"]  # the record is there to be read...
    assert read_one(topics, "ingest", k.alerts_topic) == []  # ...but not by ingest (kafka-python logs, returns none)
    try:  # nor may it consume frames as the workers' group
        got = read_one(topics, "ingest", k.frames_topic, group=topics.workers.consumer_group)
    except KafkaError:
        got = []
    assert got == []


def test_worker_topic_check_does_not_create(topics):
    from deploy.topics import TopicsMissing, ensure_topics

    other = topics.model_copy(update={"kafka": topics.kafka.model_copy(update={"alerts_topic": "test.nope.alerts"})})
    assert ensure_topics(topics, principal="worker") == []
    with pytest.raises(TopicsMissing):
        ensure_topics(other, principal="worker")


def test_the_tls_listener_serves_the_stack_ca_and_nobody_else_s(stack, settings, tmp_path):
    """SASL_SSL with the certificate `stack up` signed with its own CA: a client that trusts that CA
    round-trips; one that does not (the system's trust store) is refused at the handshake."""
    import subprocess

    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError

    from deploy.topics import admin_client, ensure_topics
    from iotlm.credentials import kafka_tls_bootstrap, tls_ca

    tag = uuid.uuid4().hex[:8]
    private = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
        "frames_topic": f"test.{tag}.frames", "dlq_topic": f"test.{tag}.dlq", "alerts_topic": f"test.{tag}.alerts",
        "control_topic": f"test.{tag}.control", "partitions": 1})})
    ensure_topics(private)
    try:
        # the certificate really is the stack CA's, for this host
        pem = subprocess.run(["openssl", "verify", "-CAfile", str(tls_ca(settings)),
                              str(settings.state_dir / "tls" / "kafka-keystore.pem")], capture_output=True, text=True)
        assert pem.returncode == 0, pem.stderr
        tls = kafka_tls_bootstrap(settings)
        producer = KafkaProducer(bootstrap_servers=tls, **kafka_client_kwargs(settings, "ingest", tls=True))
        producer.send(private.kafka.frames_topic, b"over tls").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(private.kafka.frames_topic, bootstrap_servers=tls, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=15_000,
                                 **kafka_client_kwargs(settings, "admin", tls=True))
        assert next(iter(consumer)).value == b"over tls"
        consumer.close()
        untrusting = kafka_client_kwargs(settings, "ingest", tls=True) | {"ssl_cafile": None}
        with pytest.raises(KafkaError):
            stranger = KafkaProducer(bootstrap_servers=tls, max_block_ms=5000, **untrusting)
            stranger.send(private.kafka.frames_topic, b"x").get(timeout=10)
    finally:
        admin = admin_client(private)
        admin.delete_topics([private.kafka.frames_topic, private.kafka.dlq_topic, private.kafka.alerts_topic,
                             private.kafka.control_topic])
        admin.close()
