"""The Kafka topics IoT-LM uses, created once and idempotently after the broker is up, with the
users and ACLs that give each component exactly what it needs on them.

    principal  topics (and groups)                                    never
    ingest     frames: write; dead letters: write, read; control: read  results (alerts), groups
    worker     frames: read; dead letters: read, write; alerts: write;  create/delete topics outside
               control: read; its consumer group; topics named          its prefix, write control
               "<group>-..." (Faust's changelogs): create, read, write
    api        control: read, write; frames and dead letters: write     (imports go through the gate)
    admin      super user (topics, users, ACLs): `iotlm stack`, test set-up
"""

from __future__ import annotations

from iotlm.credentials import KAFKA_MECHANISM, KAFKA_PRINCIPALS, ensure_secrets, kafka_client_kwargs
from iotlm.settings import Settings


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Each topic and its partition count. Frames (and their dead letters) are keyed by device and
    spread over `kafka.partitions`; alerts and control messages are few and keep one total order."""
    k = settings.kafka
    return {k.frames_topic: k.partitions, k.dlq_topic: k.partitions, k.alerts_topic: 1, k.control_topic: 1}


def admin_client(settings: Settings, principal: str = "admin", timeout_s: float = 30.0, **kwargs):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout_s * 1000),
                            **kafka_client_kwargs(settings, principal), **kwargs)


class TopicsMissing(RuntimeError):
    """A component without the right to create topics found some missing."""


def ensure_topics(settings: Settings, timeout_s: float = 30.0, principal: str = "admin") -> list[str]:
    """Create the missing topics and grow any with too few partitions; grant each component its ACLs
    on them; return the names created. Any other `principal` only checks that they exist (it may not
    create topics) and raises TopicsMissing if not."""
    from kafka.admin import NewPartitions, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = topic_partitions(settings)
    if principal != "admin":  # it sees (and needs) only the topics it has rights on
        granted = {pattern.resource_name for pattern, _ in _grants(settings).get(principal, [])}
        wanted = {name: n for name, n in wanted.items() if name in granted}
    admin = admin_client(settings, principal, timeout_s, client_id="iotlm-topics")
    try:
        present = sorted(set(wanted) & set(admin.list_topics()))
        # kafka-python 3 calls the field "name"; 2.x called it "topic".
        existing = {t.get("name") or t["topic"]: len(t["partitions"]) for t in admin.describe_topics(present)}
        missing = [NewTopic(name, partitions, 1) for name, partitions in wanted.items() if name not in existing]
        if principal != "admin":
            if missing:
                raise TopicsMissing(
                    f"Kafka topics {', '.join(t.name for t in missing)} are missing (or not visible to {principal!r}); "
                    "`iotlm stack up` creates them and grants their ACLs")
            return []
        if missing:
            try:
                admin.create_topics(missing, timeout_ms=int(timeout_s * 1000), wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # another process created it between our look and our request: same outcome
        too_small = {name: NewPartitions(wanted[name]) for name, have in existing.items() if have < wanted[name]}
        if too_small:
            admin.create_partitions(too_small, timeout_ms=int(timeout_s * 1000))
        _check(admin.create_acls(component_acls(settings)))
    finally:
        admin.close()
    return [t.name for t in missing]


def ensure_users(settings: Settings, timeout_s: float = 30.0) -> None:
    """Upsert every component's SCRAM user with its password from the secrets (rotation: change the
    password there, run `iotlm stack up`, restart the component). Needs the admin user."""
    from kafka.admin import UserScramCredentialUpsertion

    passwords = ensure_secrets(settings, "kafka", KAFKA_PRINCIPALS)
    admin = admin_client(settings, timeout_s=timeout_s, client_id="iotlm-users")
    try:
        # admin itself too: the same call after a rotation of its password in the secrets file
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, KAFKA_MECHANISM, passwords[name], iterations=8192)
             for name in KAFKA_PRINCIPALS if name != "admin"])
    finally:
        admin.close()
    failed = {user: err for user, err in errors.items() if err}
    if failed:
        raise RuntimeError(f"Kafka SCRAM users not created: {failed}")


def component_acls(settings: Settings) -> list:
    """The ACLs of every component principal on `settings`' topics and consumer group (literal
    names, so a test's private topics get the same rules as the real ones)."""
    from kafka.admin import ACL, ACLPermissionType

    return [ACL(f"User:{principal}", "*", operation, ACLPermissionType.ALLOW, pattern)
            for principal, rules in _grants(settings).items() for pattern, operations in rules for operation in operations]


def _grants(settings: Settings) -> dict[str, list[tuple]]:
    """principal -> [(resource pattern, operations)]: the table in this module's docstring."""
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourcePattern, ResourceType

    k, group = settings.kafka, settings.workers.consumer_group
    read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
    grants: dict[str, list[tuple[ResourcePattern, tuple]]] = {
        "ingest": [
            (_topic(k.frames_topic), (write, describe)),
            (_topic(k.dlq_topic), (write, read, describe)),
            (_topic(k.control_topic), (read, describe)),
        ],
        "worker": [
            (_topic(k.frames_topic), (read, describe)),
            (_topic(k.dlq_topic), (read, write, describe)),
            (_topic(k.alerts_topic), (write, describe)),
            (_topic(k.control_topic), (read, describe)),
            (ResourcePattern(ResourceType.GROUP, group), (read, describe)),
            # the Faust engine's own topics (device-state changelog, assignor leader) carry the app id,
            # which is the consumer group, as prefix
            (ResourcePattern(ResourceType.TOPIC, f"{group}-", ACLResourcePatternType.PREFIXED),
             (ACLOperation.CREATE, read, write, describe, ACLOperation.DESCRIBE_CONFIGS)),
        ],
        "api": [
            (_topic(k.control_topic), (read, write, describe)),
            (_topic(k.frames_topic), (write, describe)),
            (_topic(k.dlq_topic), (write, describe)),
        ],
    }
    return grants


def _topic(name: str):
    from kafka.admin import ResourcePattern, ResourceType

    return ResourcePattern(ResourceType.TOPIC, name)


def _check(result: dict) -> None:
    if result.get("failed"):
        raise RuntimeError(f"Kafka ACLs not created: {result['failed']}")
