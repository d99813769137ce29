"""Room replay sources: frames on a regular report grid, lost reports held, real series kept on their weekday and hour."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ingest.codec import Truth, decode, encode
from ingest.rooms import ROOM_FRAME_S, WEEK_S, RoomSignal, real_room_devices, simulated_room_devices, simulated_start


def test_a_lost_report_is_sent_as_the_one_before_and_truth_rides_along():
    signal = RoomSignal("test", 60.0, {"co2": np.array([np.nan, 500, 510, np.nan, 530, 540, 550, 560, 570, 580.0])},
                        counts=np.arange(10))
    frame, truth = signal.frame("room-x", 0, 1_790_000_000.0, 600.0)
    assert frame.env.channels["co2"].tolist() == [500, 500, 510, 510, 530, 540, 550, 560, 570, 580]
    assert isinstance(truth, Truth) and truth.dataset == "rooms" and truth.labels.tolist() == list(range(10))
    assert decode(encode(frame)).env.rate_hz == pytest.approx(1 / 60)
    assert signal.frame("room-x", 1, 1_790_000_600.0, 600.0) is None  # the signal has ended
    with pytest.raises(ValueError, match="whole number"):
        signal.frame("room-x", 0, 1_790_000_000.0, 90.0)


def test_simulated_rooms_fit_the_frame_and_start_on_the_hour_they_were_simulated():
    devices = simulated_room_devices(1, days=1, skip_s=8 * 3600)
    assert devices and all(d.startswith("room-b900-") for d, _ in devices)
    for device_id, signal in devices:
        frame, truth = signal.frame(device_id, 0, 0.0 + 1_790_000_000, ROOM_FRAME_S)
        assert frame.env.n_samples == ROOM_FRAME_S / signal.interval_s and len(truth.labels) == frame.env.n_samples
    start = simulated_start(86_400.0, 8 * 3600, now=1_790_050_000.0)
    assert start % 86_400 == 8 * 3600 and start + 86_400 <= 1_790_050_000.0


def test_real_series_keep_weekday_and_hour_and_end_before_now():
    pytest.importorskip("river")
    from models.rooms.real import uci_occupancy

    devices, start = real_room_devices("river-occupancy")
    recording = uci_occupancy()
    assert [d for d, _ in devices] == ["room-uci-office"]
    assert (start - recording.t[0]) % WEEK_S == 0
    assert start + (recording.t[-1] - recording.t[0]) <= time.time()
