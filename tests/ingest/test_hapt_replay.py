"""HAPT subjects replayed as live devices reach Kafka complete, in order and bit-exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest

from deploy.services import kafka_java_argv
from ingest.codec import TRUTH_HEADER, Truth, decode, header
from ingest.hapt import HAPT_TEST_SUBJECTS, load_hapt
from ingest.simulate import hapt_device_ids, hapt_devices, replay_hapt
from iotlm.credentials import kafka_tool_config

pytestmark = pytest.mark.services


def test_frames_tile_the_signal_in_whole_samples():
    (device_id, signal), = hapt_devices(1)
    assert signal.frame(device_id, 0, 1.8e9, 0.02)[0].imu.n_samples == 1
    with pytest.raises(ValueError, match="not a whole number of samples at 50 Hz"):
        signal.frame(device_id, 0, 1.8e9, 1.01)
    assert signal.frame(device_id, 10**6, 1.8e9, 1.0) is None  # past the end of the recording


def test_device_ids_put_test_subjects_first_and_suffix_copies():
    ids = hapt_device_ids(32)
    assert [s for _, s in ids[:9]] == list(HAPT_TEST_SUBJECTS)
    assert ids[0] == ("hapt-s02", 2) and ids[30] == ("hapt-s02-c1", 2)
    assert len({d for d, _ in ids}) == 32


def test_twenty_devices_thirty_seconds_read_back_bit_exact(topic_settings, read_topic):
    start = 1_764_000_000.0
    summary = replay_hapt(topic_settings, devices=20, speed=200.0, duration_s=30.0, start_time=start, progress=False)
    assert summary.frames == 600 and all(d.frames == 30 for d in summary.devices)
    assert summary.wall_s >= 30.0 / 200.0  # paced, not dumped

    records = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=600)
    per_device = Counter(r.key.decode() for r in records)
    assert per_device == {d.device_id: 30 for d in summary.devices}

    # the reference is the dataset itself: each subject's experiments back to back
    subjects = {int(d.device_id.removeprefix("hapt-s")) for d in summary.devices}
    source = defaultdict(list)
    for rec in load_hapt(subjects):
        source[rec.subject].append(rec)
    acc = {s: np.concatenate([r.acc for r in recs]) for s, recs in source.items()}
    gyro = {s: np.concatenate([r.gyro for r in recs]) for s, recs in source.items()}
    labels = {s: np.concatenate([r.labels for r in recs]) for s, recs in source.items()}
    seqs = defaultdict(list)
    for record in records:
        frame = decode(record.value)
        subject = int(frame.device_id.removeprefix("hapt-s"))
        part = slice(frame.seq * 50, frame.seq * 50 + 50)
        assert frame.placement == "waist" and frame.t0 == start + frame.seq
        assert np.array_equal(frame.imu.acc.view(np.uint32), acc[subject][part].view(np.uint32))
        assert np.array_equal(frame.imu.gyro.view(np.uint32), gyro[subject][part].view(np.uint32))
        truth = Truth.from_header(header(record.headers, TRUTH_HEADER))
        assert truth.subject == subject and np.array_equal(truth.labels, labels[subject][part])
        assert set(truth.names) == {int(i) for i in set(truth.labels.tolist()) - {-1}}
        seqs[frame.device_id].append(frame.seq)
    # one device keeps one partition, so its frames arrive in seq order
    assert all(s == list(range(30)) for s in seqs.values())

    # and a reader sharing no code with us, Kafka's own console consumer, counts the same
    console = subprocess.run(
        kafka_java_argv("org.apache.kafka.tools.consumer.ConsoleConsumer")
        + ["--bootstrap-server", topic_settings.kafka_bootstrap, "--command-config", str(kafka_tool_config(topic_settings)), "--topic", topic_settings.kafka.frames_topic,
           "--from-beginning", "--max-messages", "600", "--timeout-ms", "60000",
           "--formatter-property", "print.key=true", "--formatter-property", "print.value=false"],
        capture_output=True, text=True, timeout=120,
    )
    assert console.returncode == 0, console.stderr
    assert Counter(console.stdout.split()) == per_device


def test_simulate_command_prints_a_json_summary(topic_settings, read_topic):
    env = os.environ | topic_settings.stack.environ() | {
        "IOTLM_KAFKA__FRAMES_TOPIC": topic_settings.kafka.frames_topic,
        "IOTLM_STATE_DIR": str(topic_settings.state_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "iotlm.cli", "simulate", "--source", "hapt", "--devices", "3",
         "--speed", "0", "--duration", "5", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["frames"] == 15 and [d["device_id"] for d in summary["devices"]] == ["hapt-s02", "hapt-s04", "hapt-s09"]
    assert len(read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=15)) == 15


def test_simulate_command_refuses_unknown_source_clearly():
    done = subprocess.run(
        [sys.executable, "-m", "iotlm.cli", "simulate", "--source", "radio", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "--source radio" in done.stderr
