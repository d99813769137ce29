"""Simulated people as live devices: frames on Kafka with the simulator's labels as truth."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ingest.codec import TRUTH_HEADER, Truth, decode, header
from ingest.simulate import SYNTHETIC_PLACEMENTS, replay_synthetic, synthetic_devices


def test_same_seed_same_people():
    first, again = synthetic_devices(2, seed=5), synthetic_devices(2, seed=5)
    for (device_id, a), (_, b) in zip(first, again):
        (fa, ta), (fb, tb) = a.frame(device_id, 3, 1.8e9, 1.0), b.frame(device_id, 3, 1.8e9, 1.0)
        assert np.array_equal(fa.imu.acc, fb.imu.acc) and np.array_equal(ta.labels, tb.labels)
    (id0, person0), (id1, person1) = first
    assert not np.array_equal(person0.frame(id0, 4, 1.8e9, 1.0)[0].imu.acc, person1.frame(id1, 4, 1.8e9, 1.0)[0].imu.acc)
    with pytest.raises(ValueError, match="streams forward only"):
        person0.frame(id0, 0, 1.8e9, 1.0)


@pytest.mark.services
def test_synthetic_devices_reach_kafka_with_truth(topic_settings, read_topic):
    summary = replay_synthetic(topic_settings, devices=3, speed=0, duration_s=12.0, seed=1, progress=False)
    assert summary.frames == 36
    records = read_topic(topic_settings, topic_settings.kafka.frames_topic, expected=36)
    assert Counter(r.key.decode() for r in records) == {"sim-000": 12, "sim-001": 12, "sim-002": 12}
    for record in records:
        frame = decode(record.value)
        truth = Truth.from_header(header(record.headers, TRUTH_HEADER))
        assert frame.placement == SYNTHETIC_PLACEMENTS[int(frame.device_id[-3:])]
        assert truth.dataset == "synthetic" and len(truth.labels) == frame.imu.n_samples == 50
        assert set(truth.names) == set(truth.labels.tolist()) and all(truth.names.values())
        # an accelerometer on a body reads about 1 g on average over a second, whatever the activity
        assert 3.0 < float(np.linalg.norm(frame.imu.acc, axis=1).mean()) < 30.0
