"""Alert rules: fall, sensor faults, no movement, room hours, silent devices; deduplication."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from iotlm.settings import WorkerSettings
from stream_workers.alerts import AlertRules
from stream_workers.records import WindowResult
from stream_workers.windows import Window

RATE = 50.0
G = 9.80665


def window(acc: np.ndarray, start: float = 1000.0, device: str = "dev-a") -> Window:
    return Window(
        device_id=device, start=start, end=start + len(acc) / RATE, rate_hz=RATE, acc=acc.astype(np.float32),
        gyro=None, placement="waist", truth=None, partition=0, first_offset=0, completed_at=0.0,
    )


def standing(n: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([0.0, 0.0, G]) + rng.normal(0, 0.3, (n, 3))


def fall() -> np.ndarray:
    acc = standing()
    acc[40:55] = np.random.default_rng(1).normal(0, 0.5, (15, 3))  # 0.3 s of free fall
    acc[60:63] = [0.0, 0.0, 4.0 * G]  # impact
    return acc


class TestFall:
    def test_free_fall_then_impact_is_a_critical_alert(self):
        alerts = AlertRules(WorkerSettings()).on_window(window(fall()))
        assert [(a.rule, a.severity) for a in alerts] == [("fall", "critical")]
        assert abs(alerts[0].at - (1000.0 + 40 / RATE)) < 0.05

    def test_normal_movement_and_a_bump_alone_are_not_falls(self):
        bump = standing()
        bump[60:63] = [0.0, 0.0, 4.0 * G]
        rules = AlertRules(WorkerSettings())
        assert rules.on_window(window(standing())) == []
        assert rules.on_window(window(bump, start=1010.0)) == []

    def test_the_same_fall_in_two_overlapping_windows_is_raised_once(self):
        rules = AlertRules(WorkerSettings())
        acc = np.concatenate([standing(64), fall()])
        first = rules.on_window(window(acc[:128]))
        second = rules.on_window(window(acc[64:], start=1000.0 + 64 / RATE))
        assert len(first + second) == 1


class TestSensorFault:
    def test_a_flat_axis_is_a_stuck_sensor(self):
        acc = standing()
        acc[:, 1] = 0.25
        alerts = AlertRules(WorkerSettings()).on_window(window(acc))
        assert [a.rule for a in alerts] == ["sensor_fault"] and "axis y is a flat line" in alerts[0].message

    def test_clipped_samples_are_saturation(self):
        acc = standing()
        acc[:60, 0] = 156.9
        alerts = AlertRules(WorkerSettings()).on_window(window(acc))
        assert [a.rule for a in alerts] == ["sensor_fault"] and "clipped" in alerts[0].message


class TestNoMovement:
    def test_stillness_longer_than_the_limit_raises_once(self):
        rules = AlertRules(WorkerSettings(no_movement_s=10.0, no_movement_std=0.05))
        still = np.tile([0.0, 0.0, G], (128, 1)) + np.random.default_rng(0).normal(0, 0.005, (128, 3))
        raised = [a for k in range(20) for a in rules.on_window(window(still, start=1000.0 + 1.28 * k))]
        assert [a.rule for a in raised] == ["no_movement"] and raised[0].at == 1000.0

    def test_movement_resets_the_clock(self):
        rules = AlertRules(WorkerSettings(no_movement_s=10.0))
        still = np.tile([0.0, 0.0, G], (128, 1)) + np.random.default_rng(0).normal(0, 0.005, (128, 3))
        raised = []
        for k in range(20):
            acc = standing(seed=k) if k % 5 == 4 else still
            raised += rules.on_window(window(acc, start=1000.0 + 1.28 * k))
        assert raised == []


class TestRoomHours:
    def test_activity_outside_its_allowed_hours_in_a_room(self):
        config = WorkerSettings(
            device_rooms={"dev-a": "kitchen"},
            room_hours=[{"room": "kitchen", "activity": "walking", "start_hour": 7, "end_hour": 22}],
        )
        rules = AlertRules(config)

        def result(hour: int, activity: str = "walking") -> WindowResult:
            t = datetime(2026, 1, 5, hour, 30, tzinfo=timezone.utc).timestamp()
            return WindowResult("dev-a", t, t + 2.56, "v1", activity, 0.9, {})

        assert rules.on_result(result(12)) == []
        assert rules.on_result(result(3, activity="lying")) == []
        alerts = rules.on_result(result(3))
        assert [(a.rule, a.room) for a in alerts] == [("room_hours", "kitchen")]


class TestSilentDevice:
    def test_a_device_silent_past_the_limit_raises_once_per_silence(self):
        rules = AlertRules(WorkerSettings(silent_device_s=30.0))
        rules.heard("dev-a", now=100.0)
        rules.heard("dev-b", now=125.0)
        assert rules.on_tick(now=120.0) == []
        assert [a.device_id for a in rules.on_tick(now=131.0)] == ["dev-a"]
        assert rules.on_tick(now=140.0) == []
        rules.heard("dev-a", now=200.0)
        assert {a.device_id for a in rules.on_tick(now=240.0)} == {"dev-a", "dev-b"}
