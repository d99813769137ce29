"""The ingest gate: every entry point (MQTT bridge, raw bytes) hands it bytes and a source name.

Valid frames of admitted devices go to the frames topic, re-encoded as msgpack. Everything else
goes to the dead-letter topic with the ORIGINAL bytes as value and headers ``reason`` (for people),
``code`` (for machines), ``source`` and ``received_at``. Nothing is dropped and bad input never
raises out of :meth:`IngestGate.admit`; only a broken Kafka connection does.

A payload above ``max_frame_bytes`` is dead-lettered as a bounded prefix plus its size and digest
(:func:`ingest.dead_letters.bounded_payload`, shared with the workers).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from ingest.codec import CONTENT_TYPE_HEADER, CONTENT_TYPES, TRUTH_HEADER, decode, encode, truth_for_frame
from ingest.dead_letters import bounded_payload, dead_letter_headers
from ingest.frame import FrameError, FrameLimits
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

    def admit(self, raw: bytes, source: str, *, truth: bytes | None = None,
              expected_device: str | None = None) -> GateDecision:
        """Route one payload. ``truth`` is an optional ``iotlm-truth`` header value to carry along;
        ``expected_device`` is who the transport says sent it (the MQTT topic): a frame naming another
        device is refused with ``device_mismatch``."""
        received_at = time.time()
        device_id, forward, code, reason = self._verdict(raw, truth, expected_device)
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

    def check(self, raw: bytes, *, truth: bytes | None = None, expected_device: str | None = None) -> GateDecision:
        """What `admit` would decide, sending nothing: an upload is checked whole before any of it goes in."""
        device_id, forward, code, reason = self._verdict(raw, truth, expected_device)
        return GateDecision(accepted=forward is not None, device_id=device_id, code=code, reason=reason)

    def _verdict(self, raw: bytes, truth: bytes | None,
                 expected_device: str | None) -> tuple[str | None, bytes | None, str | None, str | None]:
        """(device id, bytes to forward or None, refusal code, refusal reason)."""
        device_id = None
        try:
            frame = decode(raw, self.limits)
            device_id = frame.device_id
            if expected_device is not None and device_id != expected_device:
                raise FrameError(f"frame of device {device_id!r} sent as device {expected_device!r}: a device "
                                 "may only send its own frames", "device_mismatch")
            refusal = self.admission.refusal(device_id)
            if refusal is not None:
                raise FrameError(refusal, "unknown_device")
            if truth is not None:
                truth_for_frame(truth, frame)
            return device_id, encode(frame), None, None
        except FrameError as exc:
            return device_id, None, exc.code, exc.reason
        except Exception as exc:  # a bug of ours must not lose the payload either
            return device_id, None, "internal", f"ingest failed to check this payload ({type(exc).__name__}: {exc})"

    def _dead_letter(self, raw, source, received_at, device_id, code, reason) -> GateDecision:
        value, truncation = bounded_payload(raw, self.settings.kafka)
        headers: Headers = dead_letter_headers(reason, code, source, received_at, **truncation)
        self.producer.send_raw(self.settings.kafka.dlq_topic, device_id, value, headers)
        self.outcomes[code] += 1
        return GateDecision(accepted=False, device_id=device_id, code=code, reason=reason)
