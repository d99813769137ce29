"""Mosquitto on the real broker: no anonymous clients, each device publishes on its own topic only and
subscribes to nothing, the bridge has its own account (deploy/mqtt_accounts.py)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from iotlm.credentials import MQTT_BRIDGE, mosquitto_digest, password

pytestmark = pytest.mark.services


class Client:
    """A paho MQTT 5 client that waits for each acknowledgement and keeps the reason codes."""

    def __init__(self, settings, username: str | None, secret: str | None):
        import paho.mqtt.client as mqtt

        self.connack, self.suback, self.received = [], [], []
        self._event = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, secret)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: (self.connack.append(reason), self._event.set())
        self.client.on_subscribe = lambda _c, _u, _m, reasons, _p: (self.suback.extend(reasons), self._event.set())
        self.client.on_message = lambda _c, _u, message: self.received.append((message.topic, message.payload))
        self.client.connect(*settings.mqtt_address, keepalive=10)
        self.client.loop_start()
        self._wait("CONNACK")

    def _wait(self, what: str) -> None:
        assert self._event.wait(10), f"no {what}"
        self._event.clear()

    @property
    def accepted(self) -> bool:
        return bool(self.connack) and not self.connack[0].is_failure

    def subscribe(self, topic: str):
        self.client.subscribe(topic, qos=1)
        self._wait("SUBACK")
        return self.suback[-1]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(settings, stack):
    """Two device accounts (A, B), as the admin API's credentials route makes them; the base topic."""
    from deploy.mqtt_accounts import devices_in_file, reload, topic_base, write_accounts

    secrets = {f"dev-sec-{name}-{uuid.uuid4().hex[:6]}": uuid.uuid4().hex for name in "ab"}
    write_accounts(settings, devices_in_file(settings) | {d: mosquitto_digest(s) for d, s in secrets.items()})
    assert reload(settings)
    time.sleep(0.5)
    return secrets, topic_base(settings)


def test_anonymous_and_wrong_passwords_are_refused(settings, devices):
    secrets, _ = devices
    device = next(iter(secrets))
    for username, secret in ((None, None), (device, "not-its-secret"), ("nobody", "x")):
        client = Client(settings, username, secret)
        try:
            assert not client.accepted, (username, client.connack)
        finally:
            client.close()
    client = Client(settings, device, secrets[device])
    assert client.accepted
    client.close()


def test_a_device_publishes_only_on_its_own_topic_and_reads_nothing(settings, devices):
    secrets, base = devices
    a, b = secrets
    bridge = Client(settings, MQTT_BRIDGE, password(settings, "mqtt", MQTT_BRIDGE))
    device_a, device_b = Client(settings, a, secrets[a]), Client(settings, b, secrets[b])
    try:
        assert not bridge.subscribe(f"{base}/#").is_failure  # the bridge reads every device
        # Mosquitto acknowledges a device's subscriptions but never delivers a message to it (no read ACL)
        for topic in (f"{base}/{b}", f"{base}/#", "#"):
            device_a.subscribe(topic)
        device_a.publish(f"{base}/{b}", b"A as B")
        device_a.publish(f"{base}/{a}/extra", b"A elsewhere")
        device_b.publish(f"{base}/{b}", b"B on its own topic")
        device_a.publish(f"{base}/{a}", b"A on its own topic")
        deadline = time.monotonic() + 10
        while len(bridge.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # anything else would have come by now
        assert sorted(bridge.received) == [(f"{base}/{a}", b"A on its own topic"), (f"{base}/{b}", b"B on its own topic")]
        assert device_a.received == []  # B's frames (and A's own) never reach device A
    finally:
        for client in (device_a, device_b, bridge):
            client.close()
