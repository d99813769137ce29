"""The dead-letter topic: the one header format every stage writes, and reading it back (what was
refused, why, and from where)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ingest.codec import header


def dead_letter_headers(reason: str, code: str, source: str, received_at: float | None = None,
                        **extra: str | bytes) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: ``reason`` (for people), ``code`` (for machines), ``source``,
    ``received_at`` (epoch seconds, default now), then ``extra`` in order (say ``original_topic``).

    Text is encoded with backslashreplace: a reason quoting hostile text must still encode."""
    when = time.time() if received_at is None else received_at
    headers = [("reason", reason), ("code", code), ("source", source), ("received_at", f"{when:.6f}"),
               *extra.items()]
    return [(name, value if isinstance(value, bytes) else value.encode(errors="backslashreplace"))
            for name, value in headers]


def bounded_payload(raw: bytes, kafka_settings) -> tuple[bytes, dict[str, str]]:
    """What a dead letter may carry of ``raw``: all of it up to ``max_frame_bytes``, else its first
    ``dlq_keep_bytes`` plus ``original_size``, ``original_sha256`` and ``truncated`` headers. Raising the
    DLQ topic's ``max.message.bytes`` to whatever a client uploads would let one client fill the broker
    (and a dead letter larger than the broker takes would crash its writer); the prefix plus digest is
    enough to identify and diagnose the upload."""
    if len(raw) <= kafka_settings.max_frame_bytes:
        return raw, {}
    return raw[: kafka_settings.dlq_keep_bytes], {
        "original_size": str(len(raw)), "original_sha256": hashlib.sha256(raw).hexdigest(), "truncated": "true"}


@dataclass(frozen=True)
class DeadLetter:
    """One refused payload as the gate recorded it."""

    code: str
    reason: str
    source: str
    received_at: float
    device_id: str | None
    size: int  # of the original payload (the record may hold only a prefix of it)
    payload: bytes
    partition: int
    offset: int

    @classmethod
    def from_record(cls, record) -> DeadLetter:
        def text(name: str, default: str = "") -> str:
            value = header(record.headers, name)
            return value.decode(errors="replace") if value is not None else default

        return cls(
            code=text("code", "?"),
            reason=text("reason", "?"),
            source=text("source", "?"),
            received_at=float(text("received_at", "0") or 0),
            device_id=record.key.decode(errors="replace") if record.key else None,
            size=int(text("original_size") or len(record.value)),
            payload=record.value,
            partition=record.partition,
            offset=record.offset,
        )


def read_dead_letters(settings, last: int = 20, timeout_s: float = 10.0) -> list[DeadLetter]:
    """The ``last`` most recent dead letters (by arrival), oldest first."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.kafka.dlq_topic
    from iotlm.credentials import kafka_client_kwargs

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "ingest"),
                             group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:  # each partition may hold all of the most recent ones
            consumer.seek(tp, max(0, ends[tp] - last))
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                letters.extend(DeadLetter.from_record(r) for r in batch)
        return sorted(letters, key=lambda d: d.received_at)[-last:]
    finally:
        consumer.close()
