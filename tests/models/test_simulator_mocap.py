"""DeepMimic mocap clips (pybullet's data files) driving the IMU simulator (models/simulator/mocap.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.simulator import PLACEMENTS
from models.simulator.body import J
from models.simulator.mocap import (
    CLIP_CAPTIONS, HEIGHT_M, _fk_deepmimic, _span, caption, clip_names, load_frames, mocap_body, mocap_clip,
    repair_seams,
)  # fmt: skip
from models.simulator.validate import mocap_vs_hapt_walking


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))


def test_the_twenty_named_clips_have_captions():
    names = clip_names()
    assert len(names) == 20 and set(names) == set(CLIP_CAPTIONS)
    assert caption("walk")[0] == "walking" and caption("getup_faceup")[0] == "getting up from the floor"
    assert all(len(caption(name)[1]) >= 2 for name in names)


def test_rest_pose_stands_upright_in_the_simulators_axes():
    """All rotations identity: every joint frame world-aligned, the left hip on +y, feet under the
    hips, head on top, arms hanging, standing height about 1.64 m."""
    pose = np.zeros((1, 43))
    pose[0, 1] = 0.9  # root 0.9 m up (DeepMimic's y)
    for q in (3, 7, 11, 15, 20, 24, 29, 34, 38):
        pose[0, q] = 1.0  # w of each quaternion
    R, p = _fk_deepmimic(pose)
    assert np.allclose(R[0], np.eye(3))
    p = p[0]
    assert p[J["pelvis"], 2] == pytest.approx(0.9)
    assert p[J["left_hip"], 1] > 0.05 and p[J["right_hip"], 1] < -0.05
    assert p[J["left_ankle"], 2] < p[J["left_knee"], 2] < p[J["left_hip"], 2]
    assert p[J["left_foot"], 0] > p[J["left_ankle"], 0]  # toes point forward (+x)
    assert p[J["head"], 2] > p[J["neck"], 2] > p[J["spine3"], 2] > p[J["pelvis"], 2]
    assert p[J["left_wrist"], 2] < p[J["left_elbow"], 2] < p[J["left_shoulder"], 2]
    assert 1.55 < HEIGHT_M < 1.75


@pytest.mark.parametrize("name", ["walk", "run", "getup_faceup", "cartwheel", "kick"])
def test_clips_give_finite_imu_at_every_placement(name):
    clip = mocap_clip(name, np.random.default_rng(0), duration_s=4.0, rate_hz=50.0, placements=tuple(PLACEMENTS))
    for trace in clip.imu.values():
        assert trace.acc.shape == (200, 3) and trace.gyro.shape == (200, 3)
        assert np.isfinite(trace.acc).all() and np.isfinite(trace.gyro).all()
    assert clip.activity == caption(name)[0] and clip.descriptions[0] == clip.activity


def test_looping_walk_travels_on_the_floor():
    body = mocap_body("walk", duration_s=10.0)
    pelvis = body.positions[:, J["pelvis"]]
    assert np.linalg.norm(pelvis[-1, :2] - pelvis[0, :2]) > 8.0  # ~1 m/s for 12 s, heading drifting
    feet = np.minimum(body.positions[:, J["left_foot"], 2], body.positions[:, J["right_foot"], 2])
    assert abs(np.percentile(feet, 2)) < 0.03  # a foot is on the floor
    assert np.allclose(np.einsum("nij,nik->njk", body.rotations[:, 0], body.rotations[:, 0]), np.eye(3), atol=1e-9)


def test_seams_are_repaired():
    """The walk cycle is two mirrored halves: one seam per half-cycle, and after the repair no one-frame
    blips remain (the waist turns at under 2 rad/s, the wrist accelerates under 4 g)."""
    frames = load_frames("walk")
    _, poses = _span(frames, 0.0, 5.0)
    repaired, seams = repair_seams(poses, float(np.median(np.diff(frames.t))))
    assert len(seams) >= 6 and np.diff(seams).min() >= 15  # 19 frames per half-cycle at 30 Hz
    assert not np.allclose(repaired, poses)
    clip = mocap_clip("walk", np.random.default_rng(0), duration_s=6.0, rate_hz=50.0,
                      placements=("waist", "wrist"), realism=False)
    assert np.linalg.norm(clip.imu["waist"].gyro, axis=1).max() < 2.0
    assert np.linalg.norm(clip.imu["wrist"].acc, axis=1).max() < 4 * 9.81


def test_getting_up_turns_the_waist_from_lying_to_upright():
    clip = mocap_clip("getup_faceup", np.random.default_rng(0), duration_s=None, rate_hz=50.0,
                      placements=("waist",), realism=False)
    trace = clip.imu["waist"]
    start, end = trace.acc[:10].mean(axis=0), trace.acc[-10:].mean(axis=0)
    assert _angle_deg(start, end) > 60
    assert _angle_deg(end, trace.rest_up) < 30  # standing at the end


def test_walk_and_run_against_hapt_train_walking():
    """Bands chosen after the first numbers were seen (docs/simulator.md gives them): the walks' step
    rhythm inside HAPT train walking's 5-95 %, their |acc| spread and gyro rate within x0.5-1.5 of
    HAPT's median (one actor vs 21 people with belt phones); the run faster and harder than any walk."""
    report = mocap_vs_hapt_walking(devices=5)
    hapt = report["hapt_walking_train_p5_p50_p95"]
    for name in ("walk", "0walk_forward"):
        stats = report["clips"][name]
        assert stats["in_range"]["rhythm_hz"], (name, stats)
        for key in ("acc_std", "gyro_mean"):
            assert 0.5 * hapt[key][1] <= stats[key] <= 1.5 * hapt[key][1], (name, key, stats[key])
    run = report["clips"]["run"]
    assert run["rhythm_hz"] > hapt["rhythm_hz"][2] and run["acc_std"] > hapt["acc_std"][2]


def test_zero_shot_data_can_mix_in_mocap(tmp_path):
    from models.simulator import ACTIVITIES
    from models.train import build_synthetic_dataset

    data = build_synthetic_dataset(10, 0, tmp_path / "mix.npz", duration_s=4.0, mocap_share=0.6)
    activities = [str(a) for a in data["activities"]]
    assert activities[:len(ACTIVITIES)] == list(ACTIVITIES)  # the simulator's indices stay
    assert "getting up from the floor" in activities and "doing a cartwheel" in activities
    labels = {activities[int(a)] for a in data["activity"]}
    assert labels - set(ACTIVITIES)  # some rows came from mocap clips with captions of their own
    assert data["acc"].shape == data["gyro"].shape and data["acc"].shape[1:] == (200, 3)
    assert np.isfinite(data["acc"]).all() and len(data["rest_up"]) == len(data["acc"])
