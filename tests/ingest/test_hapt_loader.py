"""The HAPT loader reads the packaged recordings without pandas."""

import numpy as np

from ingest.hapt import HAPT_ACTIVITIES, load_hapt


def test_all_thirty_subjects_with_consistent_shapes():
    recordings = load_hapt()
    assert {r.subject for r in recordings} == set(range(1, 31))
    assert len(recordings) == 61  # subject 10 recorded three experiments, everyone else two
    for r in recordings:
        n = len(r.labels)
        assert r.rate_hz == 50.0
        assert r.acc.shape == (n, 3) and r.acc.dtype == np.float32
        assert r.gyro.shape == (n, 3) and r.gyro.dtype == np.float32
        assert r.labels.dtype == np.int16


def test_labels_and_gravity_units():
    recordings = load_hapt([1, 2, 3])
    labels = np.concatenate([r.labels for r in recordings])
    assert set(np.unique(labels)) <= set(HAPT_ACTIVITIES) | {-1}
    assert set(range(1, 7)) <= set(np.unique(labels))
    acc = np.concatenate([r.acc for r in recordings])
    assert 9.3 < np.linalg.norm(acc, axis=1).mean() < 10.5  # m/s^2, gravity included
    gyro = np.concatenate([r.gyro for r in recordings])
    assert np.abs(gyro).max() < 20  # rad/s, not deg/s


def test_subject_filter():
    recordings = load_hapt([2, 4])
    assert [r.subject for r in recordings] == [2, 2, 4, 4]
