"""The IMU simulator: sensor physics, signals of every activity, and body-level plausibility."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid
from scipy.spatial.transform import Rotation

from models.simulator import (
    ACTIVITIES, JOINTS, PLACEMENT_JOINTS, PLACEMENTS, SubjectParams, simulate_batch, simulate_clip,
)  # fmt: skip
from models.simulator.clip import sensor_pose, simulate_body
from models.simulator.imu import GRAVITY, G_WORLD, specific_force_and_rate
from models.simulator.validate import compare, load_hapt_windows

HAPT = ("walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying")
VIGOROUS = ("running", "jumping", "playing badminton", "jumping jacks", "rope jumping", "nordic walking", "rowing",
            "dribbling a basketball")


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def _gravity_direction(acc: np.ndarray) -> np.ndarray:
    mean = acc.mean(axis=0)
    return mean / np.linalg.norm(mean)


class TestSensorPhysics:
    def test_resting_sensor_reads_gravity_upwards_in_any_orientation(self):
        fs = 100.0
        for rotation in Rotation.random(200, random_state=0).as_matrix():
            R = np.repeat(rotation[None], 20, axis=0)
            p = np.repeat(np.array([[0.3, -1.0, 0.9]]), 20, axis=0)
            acc, gyro = specific_force_and_rate(R, p, fs)
            assert np.allclose(np.linalg.norm(acc, axis=1), GRAVITY)
            assert np.allclose(R @ acc[0], [0.0, 0.0, GRAVITY])  # points against gravity, i.e. up
            assert np.allclose(gyro, 0.0, atol=1e-9)

    def test_spinning_sensor_reads_its_rate(self):
        fs, rate = 200.0, 2.0
        t = np.arange(400) / fs
        rng = np.random.default_rng(1)
        for _ in range(20):
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            start = Rotation.random(random_state=rng).as_matrix()
            R = start @ Rotation.from_rotvec(np.outer(t, rate * axis)).as_matrix()  # spin about a body axis
            _, gyro = specific_force_and_rate(R, np.zeros((len(t), 3)), fs)
            assert np.allclose(gyro, rate * axis, atol=1e-6)

    def test_integrating_simulated_readings_recovers_the_trajectory(self):
        """Rotate the accelerometer back to the world, add gravity, integrate twice: the path
        returns (and integrating the gyro returns the orientation)."""
        rng = np.random.default_rng(2)
        body = simulate_body("walking", rng, duration_s=3.0, subject=SubjectParams())
        for placement in ("wrist", "waist", "ankle"):
            pose = sensor_pose(body, placement, rng)
            fs = 1.0 / (body.t[1] - body.t[0])
            acc, gyro = specific_force_and_rate(pose.rotation, pose.position, fs)
            k = slice(1, -1)  # the end samples repeat their neighbours
            R, p, acc, gyro, t = pose.rotation[k], pose.position[k], acc[k], gyro[k], body.t[k]
            accel_world = np.einsum("nij,nj->ni", R, acc) + G_WORLD
            v0 = (p[1] - p[0]) * fs - 0.5 * accel_world[0] / fs  # true velocity at the first sample
            velocity = v0 + cumulative_trapezoid(accel_world, t, axis=0, initial=0)
            path = p[0] + cumulative_trapezoid(velocity, t, axis=0, initial=0)
            assert np.abs(path - p).max() < 0.02, placement  # < 2 cm after 5 s of walking

            orientation = R[0]
            for n in range(len(t) - 1):
                orientation = orientation @ Rotation.from_rotvec(0.5 * (gyro[n] + gyro[n + 1]) / fs).as_matrix()
            error = Rotation.from_matrix(orientation.T @ R[-1]).magnitude()
            assert np.degrees(error) < 2.0, placement


class TestClips:
    @pytest.mark.parametrize("rate_hz", [10.0, 20.0, 50.0, 100.0])
    def test_every_activity_gives_finite_signals_at_every_placement(self, rate_hz):
        rng = np.random.default_rng(int(rate_hz))
        placements = tuple(PLACEMENTS) + ("unknown",)
        for activity in ACTIVITIES:
            clip = simulate_clip(activity, rng, duration_s=3.0, rate_hz=rate_hz, placements=placements)
            n = int(round(3.0 * rate_hz))
            assert clip.t.shape == (n,) and clip.joints.shape == (n, len(JOINTS), 3)
            assert clip.descriptions[0] == activity and len(clip.descriptions) > 2
            for placement, trace in clip.imu.items():
                assert trace.acc.shape == trace.gyro.shape == (n, 3)
                assert trace.acc.dtype == np.float32
                assert np.isfinite(trace.acc).all() and np.isfinite(trace.gyro).all(), (activity, placement)
                # Gravity dominates on average, except on the feet and shins in gait (up to ~4 g mean
                # in running and jumping, with 10 g landings) and on the limbs in sport.
                ceiling = 80.0 if activity in VIGOROUS else 40.0 if placement in ("ankle", "foot", "unknown") else 20.0
                assert 6.0 < np.linalg.norm(trace.acc, axis=1).mean() < ceiling, (activity, placement)
                if placement != "unknown":
                    assert trace.joint in PLACEMENT_JOINTS[placement]

    def test_same_seed_same_clip_and_realism_perturbs_readings(self):
        subject = SubjectParams.random(np.random.default_rng(3))
        a = simulate_clip("walking", np.random.default_rng(4), subject=subject)
        b = simulate_clip("walking", np.random.default_rng(4), subject=subject)
        assert np.array_equal(a.imu["waist"].acc, b.imu["waist"].acc)
        still = simulate_clip("standing", np.random.default_rng(5), realism=False).imu["waist"].acc
        noisy = simulate_clip("standing", np.random.default_rng(5), realism=True).imu["waist"].acc
        # Sample-to-sample change: smooth body motion for an ideal device, white noise on top for a real one.
        assert 2 * np.diff(still, axis=0).std() < np.diff(noisy, axis=0).std()

    def test_random_mount_turns_the_device_but_keeps_gravity(self):
        rng = np.random.default_rng(6)
        directions = [
            _gravity_direction(simulate_clip("standing", rng, realism=False, random_mount=True).imu["waist"].acc)
            for _ in range(8)
        ]
        assert max(_angle_deg(directions[0], d) for d in directions[1:]) > 45.0

    def test_a_device_seed_keeps_the_device_worn_the_same_way(self):
        subject = SubjectParams.random(np.random.default_rng(10))

        def gravity_in_device(seed: int, device_seed: int) -> np.ndarray:
            clip = simulate_clip("standing", np.random.default_rng(seed), subject=subject, device_seed=device_seed,
                                 random_mount=True)
            return _gravity_direction(clip.imu["waist"].acc)

        assert _angle_deg(gravity_in_device(1, 5), gravity_in_device(2, 5)) < 10.0
        assert _angle_deg(gravity_in_device(1, 5), gravity_in_device(1, 6)) > 10.0

    def test_placements_can_fix_a_side(self):
        clip = simulate_clip("waving", np.random.default_rng(9), duration_s=2.0,
                             placements=("right wrist", "left pocket", "upper arm"))
        assert clip.imu["right wrist"].joint == "right_wrist"
        assert clip.imu["left pocket"].joint == "left_hip"
        assert clip.imu["upper arm"].joint in PLACEMENT_JOINTS["upper arm"]

    def test_every_activity_has_paraphrases_led_by_its_label(self):
        for name, spec in ACTIVITIES.items():
            assert spec.descriptions[0] == name and len(set(spec.descriptions)) >= 5

    def test_batch_draws_from_the_requested_activities(self):
        clips = simulate_batch(6, np.random.default_rng(7), activities=HAPT, duration_s=2.0)
        assert len(clips) == 6 and {c.activity for c in clips} <= set(HAPT)


class TestBodyPlausibility:
    def test_lying_turns_the_waist_gravity_axis_by_about_90_degrees(self):
        for seed in range(6):
            subject = SubjectParams.random(np.random.default_rng(seed))
            standing = simulate_clip("standing", np.random.default_rng(seed), subject=subject, realism=False)
            lying = simulate_clip("lying", np.random.default_rng(seed), subject=subject, realism=False)
            standing_up = _gravity_direction(standing.imu["waist"].acc)
            assert 65.0 < _angle_deg(standing_up, _gravity_direction(lying.imu["waist"].acc)) < 115.0

    def test_sitting_tilts_the_pelvis_a_little_and_the_thigh_to_horizontal(self):
        for seed in range(6):
            subject = SubjectParams.random(np.random.default_rng(seed))
            kw = dict(subject=subject, realism=False, placements=("waist", "pocket"))
            standing = simulate_clip("standing", np.random.default_rng(seed), **kw).imu
            sitting = simulate_clip("sitting", np.random.default_rng(seed), **kw).imu
            pelvis = _angle_deg(_gravity_direction(standing["waist"].acc), _gravity_direction(sitting["waist"].acc))
            thigh = _angle_deg(_gravity_direction(standing["pocket"].acc), _gravity_direction(sitting["pocket"].acc))
            assert 2.0 < pelvis < 30.0 and 65.0 < thigh < 115.0

    def test_gait_cadence_and_stairs_signatures(self):
        """Walking: step rhythm 1.4-2.4 Hz in vertical waist acceleration. Upstairs is slower;
        downstairs lands harder (more vertical variance) than upstairs."""
        for seed in range(5):
            subject = SubjectParams.random(np.random.default_rng(seed))
            step_hz, vertical_std = {}, {}
            for activity in ("walking", "walking upstairs", "walking downstairs"):
                clip = simulate_clip(activity, np.random.default_rng(seed), duration_s=20.0, subject=subject)
                acc = clip.imu["waist"].acc
                vertical = acc @ _gravity_direction(acc)
                vertical -= vertical.mean()
                spectrum = np.abs(np.fft.rfft(vertical * np.hanning(len(vertical))))
                freqs = np.fft.rfftfreq(len(vertical), 1 / 50.0)
                band = (freqs > 0.8) & (freqs < 4.0)
                step_hz[activity] = freqs[band][np.argmax(spectrum[band])]
                vertical_std[activity] = vertical.std()
            assert 1.4 <= step_hz["walking"] <= 2.4
            assert step_hz["walking upstairs"] < step_hz["walking"]
            assert vertical_std["walking downstairs"] > vertical_std["walking upstairs"]

    def test_a_fall_ends_lying_after_an_impact(self):
        for seed in range(5):
            clip = simulate_clip("falling", np.random.default_rng(seed), realism=False)
            acc = clip.imu["waist"].acc
            before, after = acc[: int(clip.rate_hz)], acc[-int(1.5 * clip.rate_hz):]
            assert _angle_deg(_gravity_direction(before), _gravity_direction(after)) > 60.0
            assert np.linalg.norm(acc, axis=1).max() > 2.5 * GRAVITY

    def test_random_subjects_vary_in_plausible_ranges(self):
        rng = np.random.default_rng(8)
        subjects = [SubjectParams.random(rng) for _ in range(200)]
        heights = np.array([s.height_m for s in subjects])
        speeds = np.array([s.walk_speed_mps for s in subjects])
        assert 1.45 <= heights.min() and heights.max() <= 2.0 and heights.std() > 0.05
        assert 0.8 < speeds.min() and speeds.max() < 2.0
        assert {s.handedness for s in subjects} == {"left", "right"}


class TestAgainstRealRecordings:
    def test_waist_signals_match_uci_hapt(self):
        """Medians of what a classifier sees (|acc| spread, step rhythm, rotation rate) for the six
        HAPT activities, simulated vs the real waist recordings shipped with a dependency."""
        real = {name: windows for name, windows in load_hapt_windows().items() if name in HAPT}
        for activity, (measured, simulated) in compare(real, "waist", 50.0, clips_per_activity=8).items():
            ratio = 1.4 if activity.startswith("walking") else 2.5  # postures: sensor noise dominates
            for stat in ("acc_std", "gyro_mean"):
                assert measured[stat] / ratio < simulated[stat] < measured[stat] * ratio, (activity, stat)
            if activity.startswith("walking"):
                assert abs(simulated["rhythm_hz"] - measured["rhythm_hz"]) <= 0.25, activity
