"""MQTT bridge: frames published with mosquitto_pub reach Kafka; junk reaches the DLQ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from ingest.codec import TRUTH_HEADER, Truth, decode, encode, header
from ingest.frame import Frame, ImuStream
from ingest.gate import IngestGate
from ingest.mqtt_bridge import MqttBridge
from ingest.producer import DeviceProducer

pytestmark = pytest.mark.services


def mqtt_topic(settings, device_id: str) -> str:
    return settings.ingest.mqtt_topic.removesuffix("#") + device_id


DEVICES = ("dev-mqtt-1", "dev-mqtt-2", "dev-mqtt-3", "dev-mqtt-4", "dev-mqtt-a", "dev-mqtt-b")
SECRETS: dict[str, str] = {}  # device -> its MQTT password in the current test


@pytest.fixture
def topic_settings(topic_settings):
    """The ingest topic settings, with a Mosquitto account for each device these tests publish as
    (what the admin API's credentials route gives a real device: deploy/mqtt_accounts.py)."""
    from deploy.mqtt_accounts import devices_in_file, reload, write_accounts
    from iotlm.credentials import mosquitto_digest

    SECRETS.update({device: uuid.uuid4().hex for device in DEVICES})
    write_accounts(topic_settings, devices_in_file(topic_settings) | {d: mosquitto_digest(p) for d, p in SECRETS.items()})
    assert reload(topic_settings)
    time.sleep(0.5)  # SIGHUP is handled on Mosquitto's next loop turn
    return topic_settings


def mosquitto_pub(settings, topic: str, payload_path, truth: bytes | None = None, *, device: str | None = None) -> None:
    """Publish as `device` (default: the topic's last level), with its own password."""
    host, port = settings.mqtt_address
    device = device or topic.rsplit("/", 1)[-1]
    argv = ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-f", str(payload_path),
            "-u", device, "-P", SECRETS[device]]
    if truth is not None:  # MQTT 5 user property, carried to the Kafka header of the same name
        argv += ["-V", "mqttv5", "-D", "publish", "user-property", TRUTH_HEADER, truth.decode()]
    subprocess.run(argv, check=True, timeout=30)


def a_frame(device_id: str) -> Frame:
    rng = np.random.default_rng(3)
    return Frame(device_id=device_id, seq=5, t0=time.time(), duration_s=0.5, placement="pocket",
                 imu=ImuStream(100.0, rng.normal(size=(50, 3))))


def test_valid_frame_to_kafka_and_junk_to_dlq(topic_settings, read_topic, tmp_path):
    frame = a_frame("dev-mqtt-1")
    truth = Truth(labels=np.full(50, 4, np.int16), dataset="hapt", names={4: "SITTING"}).to_header()
    wrong_truth = Truth(labels=np.full(7, 4, np.int16), dataset="hapt").to_header()
    (tmp_path / "frame.json").write_bytes(encode(frame, "json"))
    (tmp_path / "junk.bin").write_bytes(b"temperature=21.5")
    with DeviceProducer(topic_settings) as producer:
        bridge = MqttBridge(topic_settings, IngestGate(topic_settings, producer), client_id=f"t-{uuid.uuid4().hex}")
        result = {}
        runner = threading.Thread(target=lambda: result.update(s=bridge.run(max_messages=3, duration_s=60)))
        runner.start()
        assert bridge.ready.wait(15), "bridge never subscribed"
        device_topic = mqtt_topic(topic_settings, "dev-mqtt-1")
        mosquitto_pub(topic_settings, device_topic, tmp_path / "frame.json", truth=truth)
        mosquitto_pub(topic_settings, device_topic, tmp_path / "junk.bin")
        mosquitto_pub(topic_settings, device_topic, tmp_path / "frame.json", truth=wrong_truth)
        runner.join(60)
    summary = result["s"]
    assert (summary.received, summary.accepted, summary.dead_lettered, summary.stopped_by) == (3, 1, 2, "max_messages")

    (forwarded,) = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=1)
    back = decode(forwarded.value)
    assert forwarded.key == b"dev-mqtt-1" and back.seq == 5
    assert np.array_equal(back.imu.acc.view(np.uint32), frame.imu.acc.view(np.uint32))
    assert header(forwarded.headers, "source") == f"mqtt:{device_topic}".encode()
    assert header(forwarded.headers, TRUTH_HEADER) == truth

    junk, mislabelled = sorted(read_topic(topic_settings, topic_settings.kafka.dlq_topic, expected=2),
                               key=lambda r: float(header(r.headers, "received_at")))
    assert junk.value == b"temperature=21.5" and header(junk.headers, "code") == b"unknown_format"
    assert b"neither JSON" in header(junk.headers, "reason")
    assert header(mislabelled.headers, "code") == b"bad_truth"
    assert header(mislabelled.headers, "reason") == f"{TRUTH_HEADER} has 7 labels for 50 IMU samples".encode()


def test_bridge_command_stops_cleanly_on_sigterm(topic_settings, read_topic, tmp_path):
    (tmp_path / "frame.bin").write_bytes(encode(a_frame("dev-mqtt-2")))
    env = os.environ | topic_settings.stack.environ() | {
        "IOTLM_STATE_DIR": str(topic_settings.state_dir),  # where the stack wrote the credentials
        "IOTLM_KAFKA__FRAMES_TOPIC": topic_settings.kafka.frames_topic,
        "IOTLM_KAFKA__DLQ_TOPIC": topic_settings.kafka.dlq_topic,
        "IOTLM_INGEST__MQTT_TOPIC": topic_settings.ingest.mqtt_topic,
    }
    bridge = subprocess.Popen(
        [sys.executable, "-m", "iotlm.cli", "ingest", "mqtt-bridge", "--json", "--client-id", f"t-{uuid.uuid4().hex}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in bridge.stderr:  # wait for the subscription before publishing
            if "subscribed" in line:
                break
        mosquitto_pub(topic_settings, mqtt_topic(topic_settings, "dev-mqtt-2"), tmp_path / "frame.bin")
        assert len(read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=1)) == 1
        bridge.send_signal(signal.SIGTERM)
        out, err = bridge.communicate(timeout=30)
    finally:
        if bridge.poll() is None:
            bridge.kill()
    assert bridge.returncode == 0, err
    summary = json.loads(out)
    assert summary["received"] == 1 and summary["accepted"] == 1 and summary["stopped_by"] == "signal"


def test_frames_published_while_the_bridge_is_down_arrive_after_restart(topic_settings, read_topic, tmp_path):
    client_id = f"t-{uuid.uuid4().hex}"
    (tmp_path / "frame.bin").write_bytes(encode(a_frame("dev-mqtt-3")))
    with DeviceProducer(topic_settings) as producer:
        gate = IngestGate(topic_settings, producer)
        first = MqttBridge(topic_settings, gate, client_id=client_id)
        runner = threading.Thread(target=first.run, kwargs=dict(duration_s=60))
        runner.start()
        assert first.ready.wait(15)
        first.stop()
        runner.join(30)

        mosquitto_pub(topic_settings, mqtt_topic(topic_settings, "dev-mqtt-3"), tmp_path / "frame.bin")

        summary = MqttBridge(topic_settings, gate, client_id=client_id).run(max_messages=1, duration_s=30)
    assert (summary.received, summary.accepted, summary.stopped_by) == (1, 1, "max_messages")
    (forwarded,) = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=1)
    assert forwarded.key == b"dev-mqtt-3"


class KafkaOutage:
    """Stands in for a producer while Kafka is unreachable: the shared test broker cannot be taken
    down without disturbing the other tests, so this one fake is the outage."""

    def send_raw(self, *args, **kwargs):
        from kafka.errors import KafkaTimeoutError

        raise KafkaTimeoutError("broker unreachable")

    def flush(self):
        pass


def test_a_frame_kafka_did_not_take_is_redelivered_to_the_next_session(topic_settings, read_topic, tmp_path):
    client_id = f"t-{uuid.uuid4().hex}"
    (tmp_path / "frame.bin").write_bytes(encode(a_frame("dev-mqtt-4")))
    failing = MqttBridge(topic_settings, IngestGate(topic_settings, KafkaOutage()), client_id=client_id)
    runner = threading.Thread(target=lambda: failing.run(duration_s=60))
    runner.start()
    assert failing.ready.wait(15)
    mosquitto_pub(topic_settings, mqtt_topic(topic_settings, "dev-mqtt-4"), tmp_path / "frame.bin")
    runner.join(30)
    assert "forwarding to Kafka failed" in failing.failure

    with DeviceProducer(topic_settings) as producer:
        summary = MqttBridge(topic_settings, IngestGate(topic_settings, producer), client_id=client_id).run(
            max_messages=1, duration_s=30)
    assert (summary.received, summary.accepted) == (1, 1)
    (forwarded,) = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=1)
    assert forwarded.key == b"dev-mqtt-4"


def test_a_device_cannot_publish_as_another_nor_on_a_topic_naming_none(topic_settings, read_topic, tmp_path):
    (tmp_path / "b.bin").write_bytes(encode(a_frame("dev-mqtt-b")))
    with DeviceProducer(topic_settings) as producer:
        bridge = MqttBridge(topic_settings, IngestGate(topic_settings, producer), client_id=f"t-{uuid.uuid4().hex}")
        runner = threading.Thread(target=lambda: bridge.run(max_messages=2, duration_s=20))
        runner.start()
        assert bridge.ready.wait(15), "bridge never subscribed"
        # device A sends B's frame on its own topic: the broker lets it through, the bridge refuses it
        mosquitto_pub(topic_settings, mqtt_topic(topic_settings, "dev-mqtt-a"), tmp_path / "b.bin")
        # B on a topic naming no device: the broker's ACL drops it (the bridge's own check is behind it)
        mosquitto_pub(topic_settings, mqtt_topic(topic_settings, "dev-mqtt-b/extra"), tmp_path / "b.bin",
                      device="dev-mqtt-b")
        mosquitto_pub(topic_settings, mqtt_topic(topic_settings, "dev-mqtt-b"), tmp_path / "b.bin")  # its own
        runner.join(60)
    assert bridge.received == 2
    (forwarded,) = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=1)
    assert forwarded.key == b"dev-mqtt-b"
    (refused,) = read_topic(topic_settings, topic_settings.kafka.dlq_topic, expected=1)
    assert header(refused.headers, "code") == b"device_mismatch"
    assert "sent as device 'dev-mqtt-a'" in header(refused.headers, "reason").decode()


def test_the_device_of_a_topic():
    from ingest.mqtt_bridge import device_of_topic

    assert device_of_topic("iotlm/frames/dev-1", "iotlm/frames/#") == "dev-1"
    assert device_of_topic("iotlm/frames/dev-1", "$share/workers/iotlm/frames/#") == "dev-1"
    assert device_of_topic("iotlm/frames/dev-1/imu", "iotlm/frames/#") == ""
    assert device_of_topic("iotlm/frames/", "iotlm/frames/#") == ""
    assert device_of_topic("other/dev-1", "iotlm/frames/#") == ""
