"""Room windows, the room-state model and its evaluation (tiny training; the shipped checkpoint on a held-out building)."""

from __future__ import annotations

import numpy as np
import pytest

from models.rooms.model import ZERO_SHOT_PHRASES, RoomStateModel
from models.rooms.train import TEST_FIRST, building_windows, train_rooms
from models.rooms.windows import CHANNELS, MAX_AGE_S, N_INPUT, WINDOW_MIN, occupancy_bin, window_arrays


def test_windows_hold_the_last_report_and_flag_what_is_missing():
    t = np.arange(0, 3600, 600.0)  # a report every 10 min
    readings = {"co2": np.array([420, 430, 900, 1000, np.nan, 1100.0]), "temperature": np.full(6, 21.0)}
    x = window_arrays(t, readings, np.array([3540.0]))[0]
    n = len(CHANNELS)
    co2, fresh = CHANNELS.index("co2"), 2 * n + CHANNELS.index("co2")
    assert x.shape == (N_INPUT, WINDOW_MIN)
    # minute 3540 - 29*60 = 1800 .. 3540: reports at 1800 (1000), 2400 (lost), 3000 (1100)
    assert x[co2, 0] == pytest.approx((1000 - 420) / 500)
    assert x[co2, -1] == pytest.approx((1100 - 420) / 500)
    assert x[fresh].all()  # the lost report at 2400 s is bridged: 1800 s is at most MAX_AGE_S old until 3000 s
    assert MAX_AGE_S >= 1200
    assert not x[2 * n + CHANNELS.index("pir")].any() and not x[CHANNELS.index("pir")].any()  # no PIR channel
    late = window_arrays(t, readings, np.array([3000.0 + MAX_AGE_S + 600]))[0]
    assert not late[fresh, -1]  # nothing heard for longer than MAX_AGE_S: the minute is missing


def test_occupancy_bins():
    assert occupancy_bin([0, 1, 2, 4, 5, 10, 11, 40]).tolist() == [0, 1, 2, 2, 3, 3, 4, 4]


def test_a_tiny_training_run_saves_a_checkpoint_that_loads(tmp_path):
    config = train_rooms(tmp_path / "rooms-tiny", buildings=1, epochs=1, validation_buildings=1, hop_min=30,
                         max_steps=3, progress=False)
    assert config["training"]["steps"] == 3
    model = RoomStateModel.load(tmp_path / "rooms-tiny")
    p = model.predict(np.zeros((4, N_INPUT, WINDOW_MIN), np.float32))
    assert p["occupancy"].shape == (4, 5) and np.allclose(p["occupancy"].sum(1), 1, atol=1e-5)
    assert p["use"].shape == (4, 8)


@pytest.fixture(scope="module")
def held_out():
    return building_windows(TEST_FIRST, 2, hop_min=15, cache=None, progress=False)


def test_the_shipped_checkpoint_beats_the_majority_class_on_held_out_buildings(held_out):
    model = RoomStateModel.load()
    p = model.predict(held_out.x)
    accuracy = (p["occupancy_bin"] == held_out.occupancy).mean()
    majority = np.bincount(held_out.occupancy).max() / len(held_out)
    occupied = ((p["occupancy_bin"] > 0) == (held_out.occupancy > 0)).mean()
    assert accuracy > majority + 0.05, (accuracy, majority)
    assert occupied > 0.9
    # room use asked in words it was never trained on
    words = [ZERO_SHOT_PHRASES[u] for u in model.config["default_uses"]]
    zero_shot = model.predict(held_out.x, words)["use_index"]
    assert (zero_shot == held_out.use).mean() > majority_of(held_out.use)


def majority_of(y):
    return np.bincount(y).max() / len(y)


def test_the_evaluation_reports_the_keys_the_issue_names():
    from models.rooms.evaluate import run_room_evaluation

    report = run_room_evaluation(test_buildings=1, baseline_buildings=1)
    for key in ("occupancy_accuracy", "occupancy_macro_f1", "baseline_occupancy_macro_f1", "n_rooms", "n_windows"):
        assert key in report
    assert report["n_windows"] > 100 and report["n_rooms"] >= 3
    assert 0 <= report["baseline_occupancy_macro_f1"] <= 1
