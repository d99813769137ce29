"""Frames onto Kafka: keyed by device id, so one device's frames stay in order on one partition."""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.codec import CONTENT_TYPE_HEADER, CONTENT_TYPES, TRUTH_HEADER, Format, Truth, encode
from ingest.frame import Frame, FrameLimits

Headers = list[tuple[str, bytes]]

# Room for headers and record framing on top of the largest frame (or DLQ record) we send.
_REQUEST_OVERHEAD_BYTES = 65_536


@dataclass
class SendStats:
    """What a producer has handed to Kafka so far (counted at send; errors surface at flush)."""

    records: int = 0
    bytes: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)


class DeviceProducer:
    """Validated, encoded frames to ``settings.kafka.frames_topic``; raw records to any topic.

    Batches with ``producer_linger_ms``/``producer_batch_bytes`` for throughput; call :meth:`flush`
    (or leave the ``with`` block) to wait until the broker has acknowledged everything.
    """

    def __init__(self, settings, *, client_id: str = "iotlm-ingest", principal: str = "ingest") -> None:
        from kafka import KafkaProducer

        from iotlm.credentials import kafka_client_kwargs

        self.settings = settings
        self.limits = FrameLimits.from_settings(settings)
        self.stats = SendStats()
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            **kafka_client_kwargs(settings, principal),  # the API's imports send as "api"
            client_id=client_id,
            acks="all",  # with kafka-python's idempotence: a retried batch is never written twice
            linger_ms=settings.kafka.producer_linger_ms,
            batch_size=settings.kafka.producer_batch_bytes,
            max_request_size=settings.kafka.max_frame_bytes + _REQUEST_OVERHEAD_BYTES,
            # retries without a count, bounded by kafka-python's delivery timeout (120 s): a broker restart
            # is ridden out instead of dropping what was queued; idempotence keeps retries from duplicating
        )

    def send(self, frame: Frame, *, truth: Truth | None = None, fmt: Format = "msgpack"):
        """Check ``frame`` against the limits consumers apply, encode it and queue it for the frames
        topic. Returns kafka-python's future."""
        self.limits.check_clock(frame)
        value = encode(frame, fmt)
        self.limits.check_size(len(value))
        headers: Headers = [(CONTENT_TYPE_HEADER, CONTENT_TYPES[fmt].encode())]
        if truth is not None:
            headers.append((TRUTH_HEADER, truth.to_header()))
        return self.send_raw(self.settings.kafka.frames_topic, frame.device_id, value, headers)

    def send_raw(self, topic: str, key: str | None, value: bytes, headers: Headers):
        """Queue bytes as they are (the gate's forwards and dead letters)."""
        self.stats.records += 1
        self.stats.bytes += len(value)
        self.stats.per_topic[topic] = self.stats.per_topic.get(topic, 0) + 1
        return self._producer.send(
            topic, value=value, key=key.encode() if key is not None else None, headers=list(headers)
        )

    def flush(self, timeout_s: float | None = 60.0) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> DeviceProducer:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.close()
