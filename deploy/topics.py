"""The Kafka topics IoT-LM uses, created once and idempotently after the broker is up."""

from __future__ import annotations

from iotlm.settings import Settings


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Each topic and its partition count. Frames (and their dead letters) are keyed by device and
    spread over `kafka.partitions`; alerts and control messages are few and keep one total order."""
    k = settings.kafka
    return {k.frames_topic: k.partitions, k.dlq_topic: k.partitions, k.alerts_topic: 1, k.control_topic: 1}


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics and grow any with too few partitions; return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewPartitions, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = topic_partitions(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="iotlm-topics",
                             request_timeout_ms=int(timeout_s * 1000))
    try:
        present = sorted(set(wanted) & set(admin.list_topics()))
        # kafka-python 3 calls the field "name"; 2.x called it "topic".
        existing = {t.get("name") or t["topic"]: len(t["partitions"]) for t in admin.describe_topics(present)}
        missing = [NewTopic(name, partitions, 1) for name, partitions in wanted.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing, timeout_ms=int(timeout_s * 1000), wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # another process created it between our look and our request: same outcome
        too_small = {name: NewPartitions(wanted[name]) for name, have in existing.items() if have < wanted[name]}
        if too_small:
            admin.create_partitions(too_small, timeout_ms=int(timeout_s * 1000))
    finally:
        admin.close()
    return [t.name for t in missing]
