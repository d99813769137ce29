"""Device credentials from the admin API are the device's MQTT login on the real Mosquitto; replacing
or revoking them (deactivating the device) locks the old secret out within seconds, no restart."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

pytestmark = pytest.mark.services


def connects(settings, device: str, secret: str) -> bool:
    """One MQTT 5 CONNECT as `device`: True on a successful CONNACK."""
    import paho.mqtt.client as mqtt

    answer, done = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.username_pw_set(device, secret)
    client.on_connect = lambda _c, _u, _f, reason, _p: (answer.append(reason), done.set())
    client.connect(*settings.mqtt_address, keepalive=10)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return not answer[0].is_failure


def within(seconds: float, condition) -> float:
    """How long `condition` took to hold; fails past `seconds`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, f"not within {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - began


def test_issued_secret_logs_in_and_a_revoked_one_is_refused_within_seconds(api):
    device = f"dev-mqtt-cred-{uuid.uuid4().hex[:6]}"
    with api.client() as c:
        assert c.post("/v1/devices", json={"id": device}).status_code == 201
        first = c.post(f"/v1/devices/{device}/credentials").json()["secret"]
        within(5, lambda: connects(api.settings, device, first))
        second = c.post(f"/v1/devices/{device}/credentials").json()["secret"]  # replaces the first
        within(5, lambda: not connects(api.settings, device, first))
        assert connects(api.settings, device, second)
        assert c.delete(f"/v1/devices/{device}").status_code == 200  # deactivate: revokes its login
        assert within(5, lambda: not connects(api.settings, device, second)) < 5
