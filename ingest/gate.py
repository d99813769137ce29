"""The ingest gate: every entry point (MQTT bridge, raw bytes) hands it bytes and a source name.

Valid frames of admitted devices go to the frames topic, re-encoded as msgpack. Everything else
goes to the dead-letter topic with the ORIGINAL bytes as value and headers ``reason`` (for people),
``code`` (for machines), ``source`` and ``received_at``. Nothing is dropped and bad input never
raises out of :meth:`IngestGate.admit`; only a broken Kafka connection does.

A payload above ``max_frame_bytes`` is dead-lettered as its first ``dlq_keep_bytes`` plus
``original_size`` and ``original_sha256`` headers instead of whole: raising the DLQ topic's
``max.message.bytes`` to whatever a client chooses to upload would let one client fill the broker,
and the prefix plus digest is enough to identify and diagnose the upload.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from ingest.codec import CONTENT_TYPE_HEADER, CONTENT_TYPES, TRUTH_HEADER, Truth, decode, encode
from ingest.dead_letters import dead_letter_headers
from ingest.frame import Frame, FrameError, FrameLimits
from ingest.producer import DeviceProducer, Headers


class DeviceAdmission(Protocol):
    """Decides whether a device may send. The composition root (the CLI) passes the registry-backed one
    (admin.registry.FleetRegistry); without it, settings decide."""

    def refusal(self, device_id: str) -> str | None:
        """None when admitted, else why not (a sentence for the DLQ ``reason`` header)."""


class SettingsAdmission:
    """Admission from ``settings.ingest``: an explicit list plus allowed id prefixes."""

    def __init__(self, ingest_settings) -> None:
        self.registered = frozenset(ingest_settings.registered_devices)
        self.prefixes = tuple(ingest_settings.allow_prefixes)

    def refusal(self, device_id: str) -> str | None:
        if device_id in self.registered or device_id.startswith(self.prefixes):
            return None
        return (
            f"unknown device {device_id!r}: not in settings.ingest.registered_devices and no allowed "
            f"prefix ({', '.join(self.prefixes) or 'none'}); register it to let its frames in"
        )


def _check_truth(value: bytes, frame: Frame) -> None:
    """Consumers trust the truth header, so it is checked like the frame it travels with."""
    try:
        truth = Truth.from_header(value)
    except Exception as exc:
        raise FrameError(f"{TRUTH_HEADER} header is not valid ({type(exc).__name__}: {exc})", "bad_truth") from None
    n = frame.imu.n_samples if frame.imu is not None else None
    if n is not None and len(truth.labels) != n:
        raise FrameError(f"{TRUTH_HEADER} has {len(truth.labels)} labels for {n} IMU samples", "bad_truth")


@dataclass(frozen=True)
class GateDecision:
    """What the gate did with one payload."""

    accepted: bool
    device_id: str | None = None
    code: str | None = None
    reason: str | None = None


class IngestGate:
    """Decode, validate, admit, then forward to the frames topic or dead-letter with the reason."""

    def __init__(self, settings, producer: DeviceProducer, admission: DeviceAdmission | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self.admission = admission or SettingsAdmission(settings.ingest)
        self.limits = FrameLimits.from_settings(settings)
        self.outcomes: Counter[str] = Counter()  # "accepted" or the rejection code

    def admit(self, raw: bytes, source: str, *, truth: bytes | None = None) -> GateDecision:
        """Route one payload. ``truth`` is an optional ``iotlm-truth`` header value to carry along."""
        received_at = time.time()
        device_id, forward, code, reason = self._verdict(raw, truth)
        if forward is None:
            return self._dead_letter(raw, source, received_at, device_id, code, reason)
        headers: Headers = [
            (CONTENT_TYPE_HEADER, CONTENT_TYPES["msgpack"].encode()),
            ("source", source.encode()),
            ("received_at", f"{received_at:.6f}".encode()),
        ]
        if truth is not None:
            headers.append((TRUTH_HEADER, truth))
        self.producer.send_raw(self.settings.kafka.frames_topic, device_id, forward, headers)
        self.outcomes["accepted"] += 1
        return GateDecision(accepted=True, device_id=device_id)

    def check(self, raw: bytes, *, truth: bytes | None = None) -> GateDecision:
        """What `admit` would decide, sending nothing: an upload is checked whole before any of it goes in."""
        device_id, forward, code, reason = self._verdict(raw, truth)
        return GateDecision(accepted=forward is not None, device_id=device_id, code=code, reason=reason)

    def _verdict(self, raw: bytes, truth: bytes | None) -> tuple[str | None, bytes | None, str | None, str | None]:
        """(device id, bytes to forward or None, refusal code, refusal reason)."""
        device_id = None
        try:
            frame = decode(raw, self.limits)
            device_id = frame.device_id
            refusal = self.admission.refusal(device_id)
            if refusal is not None:
                raise FrameError(refusal, "unknown_device")
            if truth is not None:
                _check_truth(truth, frame)
            return device_id, encode(frame), None, None
        except FrameError as exc:
            return device_id, None, exc.code, exc.reason
        except Exception as exc:  # a bug of ours must not lose the payload either
            return device_id, None, "internal", f"ingest failed to check this payload ({type(exc).__name__}: {exc})"

    def _dead_letter(self, raw, source, received_at, device_id, code, reason) -> GateDecision:
        value, truncation = raw, {}
        if len(raw) > self.settings.kafka.max_frame_bytes:
            value = raw[: self.settings.kafka.dlq_keep_bytes]
            truncation = {"original_size": str(len(raw)), "original_sha256": hashlib.sha256(raw).hexdigest(),
                          "truncated": "true"}
        headers: Headers = dead_letter_headers(reason, code, source, received_at, **truncation)
        self.producer.send_raw(self.settings.kafka.dlq_topic, device_id, value, headers)
        self.outcomes[code] += 1
        return GateDecision(accepted=False, device_id=device_id, code=code, reason=reason)
