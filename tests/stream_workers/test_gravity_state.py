"""The workers' per-device gravity reference: learned from a device's own gait windows, exported and
restored with the rest of its durable state, handed to the model only with the windows that have one."""

from __future__ import annotations

import json

import numpy as np

from stream_workers.gravity import DeviceGravity
from stream_workers.inference import WindowClassifier
from stream_workers.windows import Window

RATE = 25.0


def gait(up, n_samples=64, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / RATE
    up = np.asarray(up, float)
    return (9.81 * up + 2.5 * np.sin(2 * np.pi * 2 * t)[:, None] * up + rng.normal(0, 0.3, (n_samples, 3))).astype(np.float32)


def window(device, placement, acc, up=None):
    return Window(device, 0.0, 2.56, RATE, acc, None, placement, None, 0, 0, 0.0, up=up)


class RecordingModel:
    version = "fake-1"
    rate_hz = RATE
    window_s = 2.56

    def __init__(self):
        self.calls = []

    def predict_proba(self, acc, gyro, rate_hz, labels, placement="unknown", **kw):
        self.calls.append((len(acc), placement, kw.get("up")))
        return np.tile(np.eye(len(labels))[0], (len(acc), 1))


def test_reference_needs_gait_then_survives_export_and_restore():
    gravity = DeviceGravity()
    still = np.tile(np.array([0.0, 0.0, 9.81], np.float32), (64, 1))
    assert gravity.observe("w1", "waist", still) is None  # only sitting so far: no reference yet
    for i in range(3):
        up = gravity.observe("w1", "waist", gait([0.0, 1.0, 0.0], seed=i))
    assert np.allclose(up, [0, 1, 0], atol=0.05)
    assert gravity.observe("u-1", "unknown", gait([0.0, 1.0, 0.0])) is None  # "up" depends on the placement
    state = json.loads(json.dumps(gravity.export("w1")))  # what goes into the durable per-device table
    successor = DeviceGravity()  # the worker that takes the partition over
    successor.restore("w1", state)
    assert np.allclose(successor.observe("w1", "waist", still), up, atol=0.02)  # one still window barely moves it
    successor.forget("w1")
    assert successor.export("w1") is None


def test_classifier_passes_the_reference_only_for_windows_that_have_one():
    model = RecordingModel()
    classifier = WindowClassifier(model, ["walking", "sitting"])
    windows = [window("a", "waist", gait([1, 0, 0]), up=(1.0, 0.0, 0.0)), window("b", "waist", gait([1, 0, 0])),
               window("a", "waist", gait([1, 0, 0]), up=(0.0, 1.0, 0.0))]
    results = classifier(windows)
    assert [r.device_id for r in results] == ["a", "b", "a"]
    with_up = [c for c in model.calls if c[2] is not None]
    without = [c for c in model.calls if c[2] is None]
    assert len(with_up) == 1 and with_up[0][0] == 2 and np.allclose(with_up[0][2], [[1, 0, 0], [0, 1, 0]])
    assert len(without) == 1 and without[0][0] == 1
