"""Rooms on the stream without services: the room windower, fusion with wearables, the room alert rules."""

from __future__ import annotations

import numpy as np
import pytest

from admin.rules import RuleBook, checked_params
from ingest.frame import EnvStream, Frame
from iotlm.settings import WorkerSettings
from stream_workers.alerts import AlertRules
from stream_workers.rooms import HOP_S, RoomStateResult, RoomWindower, fuse

T0 = 1_790_000_000.0 // 86_400 * 86_400  # a UTC midnight


def env_frame(device: str, seq: int, t0: float, co2, rate_hz: float = 1 / 60, temperature=None) -> Frame:
    co2 = np.asarray(co2, float)
    channels = {"co2": co2, "temperature": np.full(len(co2), 21.0) if temperature is None else temperature}
    return Frame(device_id=device, seq=seq, t0=t0, duration_s=len(co2) / rate_hz, placement="room",
                 env=EnvStream(rate_hz=rate_hz, channels=channels))


def test_windows_are_cut_on_the_hop_grid_from_the_device_clock():
    windower = RoomWindower(lambda d: "r1")
    windows = []
    for seq in range(6):  # 6 frames of 10 one-minute reports: one hour
        windows += windower.add(env_frame("env-1", seq, T0 + 600 * seq, 500 + np.arange(10) + 10 * seq), 0, seq)
    ends = [w.end for w in windows]
    assert all(end % HOP_S == 0 for end in ends)
    assert ends == sorted(set(ends)) and ends[0] >= T0 + 600 and ends[-1] <= T0 + 3540
    assert len(ends) == (ends[-1] - ends[0]) / HOP_S + 1
    minute = (windows[-1].end - T0) / 60  # the newest report in the window is the one at its end
    assert windows[-1].latest["co2"] == pytest.approx(500 + minute % 10 + 10 * (minute // 10))
    assert windows[-1].room_id == "r1"
    # the frame re-sent (same seq) adds nothing; the commit waits behind the frames the next window needs
    assert windower.add(env_frame("env-1", 5, T0 + 3000, np.full(10, 900.0)), 0, 5) == []
    assert 0 < windower.held_offsets()[0] <= 5


def test_a_room_device_gone_quiet_stops_holding_the_commit():
    windower = RoomWindower()
    for seq in range(3):
        windower.add(env_frame("env-q", seq, T0 + 600 * seq, np.full(10, 500.0 + seq)), 2, 10 + seq, now=1000.0 + seq)
    assert windower.held_offsets() == {2: 10}
    assert windower.release_quiet(1002.0 + 1200, quiet_s=15) == []  # two frames' time: it may just be slow
    assert windower.release_quiet(1002.0 + 1800, quiet_s=15) == ["env-q"]
    assert windower.held_offsets() == {}
    later = [w for seq in (9, 10) for w in
             windower.add(env_frame("env-q", seq, T0 + 600 * seq, np.full(10, 700.0)), 2, 11 + seq, now=5000.0)]
    assert later and all(w.first_offset >= 20 and w.end >= T0 + 5400 + 600 for w in later)  # from what it sent since


def state(co2=500.0, count=0.0, t=T0 + 12 * 3600, people=0, temperature=21.0, stuck=None) -> RoomStateResult:
    return RoomStateResult(
        device_id="env-1", room_id="r1", window_start=t - 1800, window_end=t, model_version="m",
        occupancy="empty" if count == 0 else "2-4 people", occupancy_count=count, occupancy_probability=0.9,
        room_use="empty" if count == 0 else "meeting", use_probability=0.8, air_quality="good",
        readings={"co2": co2, "temperature": temperature}, distribution={}, people=people, stuck=stuck or {})


def test_wearables_in_the_room_are_people_there():
    fused = fuse(state(count=0), {"wrist-1": "walking", "wrist-2": "sitting"})
    assert fused.people == 2 and fused.occupancy_count == 2 and fused.occupancy == "2-4 people"
    assert fused.occupied and fused.activities == {"wrist-1": "walking", "wrist-2": "sitting"}
    many = fuse(state(count=6), {"wrist-1": "sitting"})
    assert many.occupancy_count == 6 and many.people == 1  # the room model's larger count stands


def test_co2_out_of_band_raises_once_after_its_duration_dated_at_its_start():
    rules = AlertRules(WorkerSettings(room_co2_max_ppm=1400, room_co2_for_s=1200))
    raised = []
    for k in range(12):  # every 5 minutes; above 1400 from k = 2 on
        raised += rules.on_room_state(state(co2=1000 if k < 2 else 1600, t=T0 + 43_200 + 300 * k))
    assert [(a.rule, a.at) for a in raised] == [("room_co2", T0 + 43_200 + 600)]
    assert "CO2 1600" in raised[0].message and raised[0].room == "r1"
    # back in band, then out again later: a new episode, raised again once its duration has passed
    rules.on_room_state(state(co2=900, t=T0 + 50_000))
    again = [a for k in range(6) for a in rules.on_room_state(state(co2=1500, t=T0 + 60_000 + 300 * k))]
    assert [a.at for a in again] == [T0 + 60_000]


def test_hours_capacity_temperature_and_stuck_sensors():
    config = WorkerSettings(room_open_hour=7, room_close_hour=19, room_capacity=4, room_temperature_for_s=0,
                            room_stuck_s=3600)
    rules = AlertRules(config)
    night = rules.on_room_state(state(count=2, t=T0 + 22 * 3600))
    assert [a.rule for a in night] == ["room_occupied_hours"]
    assert rules.on_room_state(state(count=2, t=T0 + 10 * 3600)) == []
    crowded = rules.on_room_state(state(count=3, people=6, t=T0 + 11 * 3600))
    assert [a.rule for a in crowded] == ["room_over_capacity"] and "6 people" in crowded[0].message
    hot = rules.on_room_state(state(temperature=31.0, t=T0 + 13 * 3600))
    assert [a.rule for a in hot] == ["room_temperature"]
    stuck = rules.on_room_state(state(t=T0 + 14 * 3600, stuck={"co2": 4000.0, "temperature": 10.0}))
    assert [(a.rule, a.details["channel"], a.at) for a in stuck] == [("room_sensor_stuck", "co2", T0 + 14 * 3600 - 4000)]


class _Fleet:
    """Rules as the admin registry hands them over (admin.rules.RuleBook); one device in room r1."""

    def __init__(self, rows):
        self.book = RuleBook(rows)

    def room_of(self, device_id):
        return "r1"

    def rule_overrides(self, kind, device_id):
        return self.book.overrides(kind, device_id, "r1", "site-1")


def test_room_rules_are_configured_per_room_through_the_admin_rules():
    rows = [
        {"kind": "room_over_capacity", "scope": "room", "scope_id": "r1", "enabled": True,
         "params": checked_params("room_over_capacity", {"room_capacity": 10})},
        {"kind": "room_co2", "scope": "fleet", "scope_id": "", "enabled": False, "params": {}},
    ]
    rules = AlertRules(WorkerSettings(room_capacity=2), _Fleet(rows))
    assert rules.on_room_state(state(count=5, t=T0 + 36_000)) == []  # r1 holds 10
    assert [a.rule for a in rules.on_room_state(state(count=12, t=T0 + 37_000))] == ["room_over_capacity"]
    assert all(a.rule != "room_co2" for k in range(10)
               for a in rules.on_room_state(state(co2=3000, t=T0 + 40_000 + 300 * k)))  # disabled fleet-wide
    with pytest.raises(Exception):
        checked_params("room_co2", {"room_co2_max_ppm": -5})


def test_one_micro_batch_serves_both_models_in_its_order():
    from stream_workers.rooms import MixedInference, RoomWindow

    room = RoomWindow("env-1", "r1", 0.0, 1800.0, np.zeros((18, 30), np.float32), {}, 0, 0)
    seen = []

    def motion(items):
        seen.append(("motion", len(items)))
        return [("imu", x) for x in items]

    def rooms(items):
        seen.append(("rooms", len(items)))
        return [("room", w.device_id) for w in items]

    out = MixedInference(motion, rooms)(["a", room, "b", room])
    assert out == [("imu", "a"), ("room", "env-1"), ("imu", "b"), ("room", "env-1")]
    assert seen == [("motion", 2), ("rooms", 2)]  # each model once per batch
    assert MixedInference(motion, None)(["c"]) == [("imu", "c")]
    with pytest.raises(RuntimeError, match="no room model"):
        MixedInference(motion, None)([room])
