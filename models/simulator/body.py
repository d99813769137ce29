"""The articulated body: a 22-joint SMPL-like skeleton, subject parameters and forward kinematics.

World frame: x forward (initial heading), y left, z up, metres. Every joint frame at rest is
aligned with the world: the body stands upright, arms hanging at the sides, feet pointing +x.
A joint's local rotation is given as (roll about x, pitch about y, yaw about z) in radians,
composed R = Rz(yaw) @ Ry(pitch) @ Rx(roll). With that convention:

- pitch > 0 leans a bone that points up (spine, neck) forward and swings a bone that points down
  (thigh, shank, upper arm, forearm) backward; so hip flexion, shoulder flexion and elbow flexion
  are negative pitches, knee flexion is a positive pitch, and a positive pitch of the foot points
  the toes down (plantarflexion);
- roll > 0 swings a downward bone to the body's left (+y): left arm abduction is +roll, right arm
  abduction is -roll. Right-side angles are the left-side ones mirrored (roll and yaw negated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)  # fmt: skip
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
J = {name: i for i, name in enumerate(JOINTS)}
N_JOINTS = len(JOINTS)

# Offsets of each joint from its parent at rest, as fractions of body height (anthropometric
# segment lengths after Drillis & Contini). Rows follow JOINTS; the pelvis row is unused.
_REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0],          # pelvis (root)
    [0.0, 0.05, -0.03],       # left_hip
    [0.0, -0.05, -0.03],      # right_hip
    [-0.005, 0.0, 0.06],      # spine1
    [0.0, 0.0, -0.245],       # left_knee   (thigh)
    [0.0, 0.0, -0.245],       # right_knee
    [0.005, 0.0, 0.07],       # spine2
    [0.0, 0.0, -0.246],       # left_ankle  (shank)
    [0.0, 0.0, -0.246],       # right_ankle
    [0.0, 0.0, 0.04],         # spine3
    [0.085, 0.0, -0.03],      # left_foot   (toe base)
    [0.085, 0.0, -0.03],      # right_foot
    [0.0, 0.0, 0.11],         # neck
    [0.0, 0.02, 0.085],       # left_collar
    [0.0, -0.02, 0.085],      # right_collar
    [0.01, 0.0, 0.06],        # head (skull base)
    [0.0, 0.105, 0.0],        # left_shoulder
    [0.0, -0.105, 0.0],       # right_shoulder
    [0.0, 0.0, -0.186],       # left_elbow  (upper arm)
    [0.0, 0.0, -0.186],       # right_elbow
    [0.0, 0.0, -0.146],       # left_wrist  (forearm)
    [0.0, 0.0, -0.146],       # right_wrist
])  # fmt: skip
ANKLE_HEIGHT = 0.039  # ankle joint above the floor, fraction of height

_LEG = [J[n] for n in ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
                       "left_foot", "right_foot")]  # fmt: skip
_ARM = [J[n] for n in ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                       "right_wrist")]  # fmt: skip
_TRUNK = [J[n] for n in ("spine1", "spine2", "spine3", "neck", "left_collar", "right_collar", "head")]


@dataclass(frozen=True)
class SubjectParams:
    """One person: body size and proportions, preferred gait and movement style."""

    height_m: float = 1.72
    leg_scale: float = 1.0  # relative leg length (proportions, not size)
    arm_scale: float = 1.0
    trunk_scale: float = 1.0
    walk_speed_mps: float = 1.3
    cadence_spm: float = 108.0  # walking steps per minute
    amplitude: float = 1.0  # scales movement ranges (vigorous vs reserved mover)
    style_noise: float = 0.1  # irregularity of repeated movements, relative
    handedness: str = "right"

    @classmethod
    def random(cls, rng: np.random.Generator) -> SubjectParams:
        height = float(np.clip(rng.normal(1.70, 0.09), 1.45, 2.00))
        cadence = float(np.clip(rng.normal(108.0, 7.0), 90.0, 130.0))
        # Step length scales with stature (~0.41 H) and varies by person.
        step_length = 0.41 * height * rng.uniform(0.85, 1.12)
        return cls(
            height_m=height,
            leg_scale=float(rng.uniform(0.95, 1.05)),
            arm_scale=float(rng.uniform(0.95, 1.05)),
            trunk_scale=float(rng.uniform(0.95, 1.05)),
            walk_speed_mps=step_length * cadence / 60.0,
            cadence_spm=cadence,
            amplitude=float(rng.uniform(0.8, 1.25)),
            style_noise=float(rng.uniform(0.05, 0.2)),
            handedness="left" if rng.random() < 0.1 else "right",
        )

    def rest_offsets(self) -> np.ndarray:
        """(22, 3) joint offsets from parents in metres."""
        offsets = _REST_OFFSETS * self.height_m
        offsets[_LEG] *= self.leg_scale
        offsets[_ARM] *= self.arm_scale
        offsets[_TRUNK] *= self.trunk_scale
        return offsets

    def standing_pelvis_height(self) -> float:
        offsets = self.rest_offsets()
        leg = -(offsets[J["left_hip"], 2] + offsets[J["left_knee"], 2] + offsets[J["left_ankle"], 2])
        return float(leg + ANKLE_HEIGHT * self.height_m)

    def limb(self, side: str) -> str:
        """'dominant'/'other' -> 'left'/'right' by handedness."""
        if side == "dominant":
            return self.handedness
        return "left" if self.handedness == "right" else "right"


def _euler_axes_first(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(3, 3, ...) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll); element-wise, so fast along time."""
    cr, cp, cy = np.cos(roll), np.cos(pitch), np.cos(yaw)
    sr, sp, sy = np.sin(roll), np.sin(pitch), np.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])  # fmt: skip


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw -> (..., 3, 3) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    R = _euler_axes_first(angles[..., 0], angles[..., 1], angles[..., 2])
    return np.moveaxis(R, (0, 1), (-2, -1))


def _compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for rotation stacks laid out (3, 3, T): nine fused products beat batched matmul."""
    return np.array([[A[i, 0] * B[0, k] + A[i, 1] * B[1, k] + A[i, 2] * B[2, k] for k in range(3)] for i in range(3)])


def forward_kinematics(
    local_angles: np.ndarray, root_angles: np.ndarray, root_pos: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Joint world rotations (T, 22, 3, 3) and positions (T, 22, 3).

    local_angles (T, 22, 3) per-joint local rotations (the pelvis row is ignored: the root
    rotation is root_angles (T, 3)); root_pos (T, 3) pelvis position; offsets (22, 3).
    Computed with time as the last axis (vectorized over time) and returned as views.
    """
    angles = np.moveaxis(local_angles, 0, -1)  # (22, 3, T)
    local_R = _euler_axes_first(angles[:, 0], angles[:, 1], angles[:, 2])  # (3, 3, 22, T)
    rotations = np.empty((N_JOINTS, 3, 3, len(root_pos)))
    positions = np.empty((N_JOINTS, 3, len(root_pos)))
    rotations[0] = _euler_axes_first(root_angles[:, 0], root_angles[:, 1], root_angles[:, 2])
    positions[0] = root_pos.T
    for j in range(1, N_JOINTS):
        parent = rotations[PARENTS[j]]
        x, y, z = offsets[j]
        positions[j] = positions[PARENTS[j]] + parent[:, 0] * x + parent[:, 1] * y + parent[:, 2] * z
        rotations[j] = _compose(parent, local_R[:, :, j])
    return rotations.transpose(3, 0, 1, 2), positions.transpose(2, 0, 1)
