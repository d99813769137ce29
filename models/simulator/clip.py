"""Clips: one activity performed by one simulated person, seen by IMUs at chosen body places."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.simulator.activities import ACTIVITIES
from models.simulator.body import SubjectParams, forward_kinematics
from models.simulator.imu import (
    DeviceErrors, SensorPose, attach_sensor, sample_device, specific_force_and_rate,
)  # fmt: skip
from models.simulator.motion import apply_impacts

INTERNAL_RATE_HZ = 200.0  # kinematics are differentiated here, then band-limited to the device rate
_MARGIN_S = 1.0  # simulated either side of the clip so filters and differences settle


@dataclass
class SensorTrace:
    acc: np.ndarray  # (T, 3) float32 m/s^2, specific force in the device frame (reads +9.81 up at rest)
    gyro: np.ndarray  # (T, 3) float32 rad/s, device frame
    joint: str  # skeleton joint the device sits at
    rest_up: np.ndarray | None = None  # (3,) world up in the device frame when standing upright


@dataclass
class Clip:
    activity: str
    descriptions: list[str]
    rate_hz: float
    t: np.ndarray  # (T,) s, nominal sample times
    imu: dict[str, SensorTrace]  # placement -> trace
    joints: np.ndarray  # (T, 22, 3) world joint positions, m
    subject: SubjectParams


@dataclass
class BodyMotion:
    """A simulated body at the internal rate: FK of one activity for one subject."""

    t: np.ndarray  # (N,)
    rotations: np.ndarray  # (N, 22, 3, 3) joint frames -> world
    positions: np.ndarray  # (N, 22, 3) m, impacts included
    subject: SubjectParams


def simulate_body(
    activity: str, rng: np.random.Generator, duration_s: float, subject: SubjectParams, fs: float = INTERNAL_RATE_HZ
) -> BodyMotion:
    """Generate the activity's motion, padded by _MARGIN_S on both sides (t starts at -_MARGIN_S)."""
    t = np.arange(-_MARGIN_S, duration_s + _MARGIN_S, 1.0 / fs)
    motion = ACTIVITIES[activity].generate(t, subject, rng)
    rotations, positions = forward_kinematics(motion.local_angles, motion.root_angles, motion.root_pos,
                                              subject.rest_offsets())
    return BodyMotion(t, rotations, apply_impacts(positions, t, motion.impacts), subject)


def sensor_pose(
    body: BodyMotion, placement: str, rng: np.random.Generator, random_mount: bool = False, nominal: bool = False
) -> SensorPose:
    return attach_sensor(placement, body.rotations, body.positions, body.subject.height_m, body.subject.handedness,
                         rng, random_mount, nominal)


def record_devices(body: BodyMotion, placements: Sequence[str], fs: float, rate_hz: float, n_out: int,
                   wearing: np.random.Generator, rng: np.random.Generator, realism: bool,
                   random_mount: bool) -> dict[str, SensorTrace]:
    """One IMU per placement on `body` (sampled at `fs`): how it is worn and its errors drawn from `wearing`,
    its sampling noise from `rng`; `n_out` samples at rate_hz."""
    imu: dict[str, SensorTrace] = {}
    for placement in placements:
        pose = sensor_pose(body, placement, wearing, random_mount, nominal=not realism)
        acc, gyro = specific_force_and_rate(pose.rotation, pose.position, fs)
        errors = DeviceErrors.random(wearing) if realism else DeviceErrors.ideal()
        acc, gyro = sample_device(acc, gyro, fs, rate_hz, n_out, _MARGIN_S, errors, rng)
        imu[placement] = SensorTrace(acc, gyro, pose.joint, pose.rest_up)
    return imu


def simulate_clip(
    activity: str,
    rng: np.random.Generator,
    duration_s: float = 10.0,
    rate_hz: float = 50.0,
    placements: Sequence[str] = ("waist",),
    subject: SubjectParams | None = None,
    realism: bool = True,
    random_mount: bool = False,
    device_seed: int | None = None,
) -> Clip:
    """Simulate `activity` for duration_s and record it with one IMU per placement at rate_hz.

    realism=False gives ideal devices mounted in their nominal orientation on exact sample
    times (no noise, bias, gain error, clock error or saturation); the anti-alias filter stays.
    device_seed: the same seed gives the same devices worn the same way (side, mounting,
    offsets, biases, gains), so consecutive clips of one person can be stitched into a stream.
    """
    spec = ACTIVITIES[activity]
    subject = subject or SubjectParams.random(rng)
    fs = max(INTERNAL_RATE_HZ, 4.0 * rate_hz)
    body = simulate_body(activity, rng, duration_s, subject, fs)
    n_out = int(round(duration_s * rate_hz))
    t_out = np.arange(n_out) / rate_hz

    wearing = rng if device_seed is None else np.random.default_rng(device_seed)
    imu = record_devices(body, placements, fs, rate_hz, n_out, wearing, rng, realism, random_mount)

    joints = np.stack([np.interp(t_out, body.t, body.positions[:, j, k]) for j in range(body.positions.shape[1])
                       for k in range(3)], axis=1).reshape(n_out, -1, 3)
    return Clip(activity, spec.sample_descriptions(rng), rate_hz, t_out, imu, joints.astype(np.float32), subject)


def simulate_batch(n: int, rng: np.random.Generator, activities: Sequence[str] | None = None, **kw) -> list[Clip]:
    """n clips, activities drawn uniformly from `activities` (default: all), each a new person."""
    names = list(activities) if activities is not None else list(ACTIVITIES)
    return [simulate_clip(str(rng.choice(names)), rng, **kw) for _ in range(n)]
