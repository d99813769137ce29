"""MQTT -> ingest gate -> Kafka, for devices that speak MQTT to the building's Mosquitto.

The bridge subscribes to ``settings.ingest.mqtt_topic`` with a persistent MQTT 5 session, so
messages published while it is restarting wait in Mosquitto instead of being lost. Every message
goes through :class:`~ingest.gate.IngestGate` with source ``mqtt:<topic>``; an MQTT 5 user property
``iotlm-truth`` is carried to the Kafka header of the same name. A message is acknowledged to
Mosquitto only once the Kafka producer holds it, so one that cannot be handed over is redelivered
to the next session. SIGTERM/SIGINT stop it cleanly: disconnect (keeping the session), then flush
what is queued for Kafka.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.codec import TRUTH_HEADER
from ingest.gate import IngestGate

SESSION_EXPIRY_S = 3600  # how long Mosquitto keeps our queued messages while the bridge is away


def device_of_topic(topic: str, topic_filter: str) -> str:
    """The device a message's topic names: the one level after the filter's prefix
    (``iotlm/frames/dev-1`` under ``iotlm/frames/#``, also for a ``$share/<group>/`` subscription).
    Anything else (deeper levels, nothing after the prefix) names no device: "" matches no frame."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    prefix = topic_filter.removesuffix("#")
    rest = topic[len(prefix):] if topic.startswith(prefix) else ""
    return rest if rest and "/" not in rest else ""


@dataclass
class BridgeSummary:
    received: int
    accepted: int
    dead_lettered: int
    wall_s: float
    stopped_by: str  # "signal", "max_messages", "duration", "stop" or "error"
    failure: str | None = None


class MqttBridge:
    """Subscribe, hand each payload to the gate, stop on a signal, a count or a deadline."""

    def __init__(
        self, settings, gate: IngestGate, *, client_id: str | None = None, on_ready: Callable[[], None] | None = None
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.settings = settings
        self.gate = gate
        self.ready = threading.Event()  # set once the subscription is acknowledged
        self._on_ready = on_ready
        self.failure: str | None = None  # why the bridge stopped on its own, if it did
        self.received = 0
        self._stop = threading.Event()
        self._stopped_by = "stop"
        self._max_messages: int | None = None
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or settings.ingest.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        from iotlm.credentials import MQTT_BRIDGE, password

        self._client.username_pw_set(MQTT_BRIDGE, password(settings, "mqtt", MQTT_BRIDGE))  # its own account: reads all
        self._connect_properties = Properties(PacketTypes.CONNECT)
        self._connect_properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.failure = f"MQTT broker refused the connection: {reason_code}"
            self.stop("error")
            return
        client.subscribe(self.settings.ingest.mqtt_topic, qos=self.settings.ingest.mqtt_qos)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.ready.set()
        if self._on_ready is not None:
            self._on_ready()

    def _on_message(self, client, userdata, message) -> None:
        truth = None
        for key, value in getattr(message.properties, "UserProperty", None) or ():
            if key == TRUTH_HEADER:
                truth = value.encode()
        try:
            # The topic names the sender (the broker's ACLs bind a device to its own topic): a payload
            # naming another device is refused, and a topic naming none is refused as no device's.
            self.gate.admit(bytes(message.payload), f"mqtt:{message.topic}", truth=truth,
                            expected_device=device_of_topic(message.topic, self.settings.ingest.mqtt_topic))
        except Exception as exc:  # Kafka unreachable: bad input never raises, so this is infrastructure
            self.failure = f"forwarding to Kafka failed ({type(exc).__name__}: {exc}); unacknowledged messages stay in Mosquitto"
            self.stop("error")
            return
        # Acknowledged only once the producer holds it: a failure above leaves it queued in our session.
        client.ack(message.mid, message.qos)
        with self._lock:
            self.received += 1
            if self._max_messages is not None and self.received >= self._max_messages:
                self._stopped_by = "max_messages"
                self._stop.set()

    def stop(self, reason: str = "stop") -> None:
        self._stopped_by = reason
        self._stop.set()

    def run(self, *, max_messages: int | None = None, duration_s: float | None = None) -> BridgeSummary:
        """Bridge until stopped; handles SIGTERM/SIGINT when called from the main thread."""
        self._max_messages = max_messages
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop("signal"))
        host, port = self.settings.mqtt_address
        started = time.monotonic()
        before = dict(self.gate.outcomes)
        self._client.connect(
            host, port, keepalive=30, clean_start=False, properties=self._connect_properties
        )
        self._client.loop_start()
        try:
            if not self._stop.wait(timeout=duration_s):
                self._stopped_by = "duration"
        finally:
            # no unsubscribe: the session keeps the subscription so Mosquitto queues for our return
            self._client.disconnect()
            self._client.loop_stop()
            self.gate.producer.flush()
        accepted = self.gate.outcomes["accepted"] - before.get("accepted", 0)
        return BridgeSummary(
            received=self.received,
            accepted=accepted,
            dead_lettered=self.received - accepted,
            wall_s=time.monotonic() - started,
            stopped_by=self._stopped_by,
            failure=self.failure,
        )
