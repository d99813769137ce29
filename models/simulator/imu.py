"""IMU physics: sensors strapped to body segments, specific force and angular rate, device errors.

An accelerometer measures specific force, not acceleration: f = R^T (a_world - g_world) with
g_world = (0, 0, -9.81), so a sensor at rest reads +9.81 m/s^2 along world up, whatever its
orientation. A gyroscope measures the angular velocity in its own frame: R^T dR/dt = [w]x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt
from scipy.spatial.transform import Rotation

from models.simulator.body import J

GRAVITY = 9.81
G_WORLD = np.array([0.0, 0.0, -GRAVITY])


@dataclass(frozen=True)
class Placement:
    """Where a device sits: it rides on `frame` joint's segment, between `start` and `end`."""

    joint: str  # the skeleton joint nearest the device ("{side}" filled in per recording)
    frame: str  # joint whose world rotation the device shares
    start: str
    end: str
    along: tuple[float, float]  # fraction of the way start -> end (placement jitter)
    surface: tuple[float, float, float]  # offset from the bone to the skin/clothing, frame axes, m
    long_axis: tuple[float, float, float]  # device's long axis, nominal, in frame axes
    normal: tuple[float, float, float]  # device's screen/face normal, nominal, in frame axes
    tilt_jitter_deg: float


PLACEMENTS: dict[str, Placement] = {
    # A watch on the back of the forearm; the wrist joint carries the forearm's twist.
    "wrist": Placement("{side}_wrist", "{side}_wrist", "{side}_elbow", "{side}_wrist", (0.88, 1.0), (0.0, 0.03, 0.0),
                       (0.0, 0.0, -1.0), (0.0, 1.0, 0.0), 8.0),
    # A phone clipped to the belt, somewhere from the front to the side of the waist.
    "waist": Placement("pelvis", "pelvis", "pelvis", "pelvis", (0.0, 0.0), (0.10, 0.0, 0.0),
                       (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), 12.0),
    # A phone in a front trouser pocket: long axis along the thigh.
    "pocket": Placement("{side}_hip", "{side}_hip", "{side}_hip", "{side}_knee", (0.2, 0.45), (0.07, 0.02, 0.0),
                        (0.0, 0.0, -1.0), (1.0, 0.0, 0.0), 15.0),
    "chest": Placement("spine3", "spine3", "spine3", "neck", (0.0, 0.4), (0.11, 0.0, 0.0),
                       (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), 10.0),
    "ankle": Placement("{side}_ankle", "{side}_knee", "{side}_knee", "{side}_ankle", (0.8, 0.95), (0.0, 0.045, 0.0),
                       (0.0, 0.0, -1.0), (0.0, 1.0, 0.0), 10.0),
    # Glasses, a headband or an earbud: roughly level with the eyes.
    "head": Placement("head", "head", "head", "head", (0.0, 0.0), (0.08, 0.0, 0.06),
                      (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 10.0),
    # A phone in an armband on the upper arm (runners).
    "upper arm": Placement("{side}_shoulder", "{side}_shoulder", "{side}_shoulder", "{side}_elbow", (0.35, 0.6),
                           (0.0, 0.045, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0), 12.0),
    # A research IMU strapped over the sacrum.
    "lower back": Placement("pelvis", "pelvis", "pelvis", "pelvis", (0.0, 0.0), (-0.09, 0.0, 0.05),
                            (0.0, 0.0, 1.0), (-1.0, 0.0, 0.0), 8.0),
    # A sensor on the shoe, over the instep; the ankle joint turns the foot.
    "foot": Placement("{side}_foot", "{side}_ankle", "{side}_ankle", "{side}_foot", (0.2, 0.6), (0.0, 0.0, 0.04),
                      (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 10.0),
    # A phone held in the hand (reading, texting): just beyond the wrist, along the hand.
    "hand": Placement("{side}_wrist", "{side}_wrist", "{side}_elbow", "{side}_wrist", (1.15, 1.35), (0.0, 0.0, 0.0),
                      (0.0, 0.0, -1.0), (0.0, -1.0, 0.0), 20.0),
}  # fmt: skip
# placement -> the joints a device there is reported at (left/right where the body has two).
PLACEMENT_JOINTS: dict[str, tuple[str, ...]] = {
    name: tuple(dict.fromkeys(p.joint.format(side=side) for side in ("left", "right")))
    for name, p in PLACEMENTS.items()
}


@dataclass
class SensorPose:
    """A device's world trajectory at the internal rate."""

    placement: str
    joint: str  # the skeleton joint nearest the device
    rotation: np.ndarray  # (N, 3, 3) device axes -> world
    position: np.ndarray  # (N, 3) m
    # world "up" in the device frame while the wearer stands upright (every joint frame at rest is
    # aligned with the world): the exact gravity reference models/gravity.py estimates from gait
    rest_up: np.ndarray | None = None


def _mirror(v: tuple[float, float, float], side: str) -> np.ndarray:
    v = np.array(v, dtype=float)
    if side == "right":
        v[1] = -v[1]
    return v


def _nominal_mount(placement: Placement, side: str) -> np.ndarray:
    """Portrait, long axis (device y) and screen normal (device z) as the placement declares."""
    long_axis, normal = _mirror(placement.long_axis, side), _mirror(placement.normal, side)
    return np.stack([np.cross(long_axis, normal), long_axis, normal], axis=1)


def _device_mount(placement: Placement, side: str, rng: np.random.Generator) -> np.ndarray:
    """(3, 3) device axes expressed in the segment frame: nominal mounting plus how people vary.

    Phones and watches are put on either way round: the long axis may point either way, the
    screen may face in or out, a phone may sit in portrait (long axis = device y) or landscape
    (long axis = device x); then a few degrees of tilt.
    """
    long_axis = _mirror(placement.long_axis, side) * rng.choice([-1.0, 1.0])
    normal = _mirror(placement.normal, side) * rng.choice([-1.0, 1.0])
    across = np.cross(long_axis, normal)
    if rng.random() < 0.7:
        mount = np.stack([across, long_axis, normal], axis=1)  # portrait: device y = long axis
    else:
        mount = np.stack([long_axis, -across, normal], axis=1)  # landscape: device x = long axis
    tilt = Rotation.from_rotvec(rng.normal(0.0, np.deg2rad(placement.tilt_jitter_deg) / np.sqrt(3), 3))
    return tilt.as_matrix() @ mount


def attach_sensor(
    placement_name: str,
    rotations: np.ndarray,
    positions: np.ndarray,
    height_m: float,
    handedness: str,
    rng: np.random.Generator,
    random_mount: bool = False,
    nominal: bool = False,
) -> SensorPose:
    """Strap a device to the body. rotations (N, 22, 3, 3), positions (N, 22, 3) from FK.

    placement_name: a PLACEMENTS key, "unknown" (one at random), or a side and a key
    ("right wrist", "left pocket") to fix the side.
    nominal=True: the textbook mounting (no flips, tilt or offset jitter; watch on the
    non-dominant wrist, left pocket/ankle, phone at the front of the belt).
    """
    side, name = "", placement_name
    for fixed_side in ("left", "right"):
        if placement_name.startswith(fixed_side + " "):
            side, name = fixed_side, placement_name[len(fixed_side) + 1:]
    if name == "unknown":
        name = str(rng.choice(list(PLACEMENTS)))
    placement = PLACEMENTS[name]
    # Watches: either wrist, so hand activities are seen from both the working and the idle
    # hand (most people wear one on the non-dominant wrist). Pockets and ankles: either side.
    non_dominant = "left" if handedness == "right" else "right"
    if not side and name in ("wrist", "hand"):
        side = non_dominant if nominal or rng.random() < 0.5 else handedness
    elif not side:
        side = "left" if nominal or rng.random() < 0.5 else "right"
    frame = placement.frame.format(side=side)
    start, end = (J[placement.start.format(side=side)], J[placement.end.format(side=side)])
    R_frame = rotations[:, J[frame]]

    surface = _mirror(placement.surface, side) * height_m / 1.72
    mount = _nominal_mount(placement, side) if nominal else _device_mount(placement, side, rng)
    if name == "waist" and not nominal:
        # Belt clip anywhere from the navel round to the hip: the device faces outward there.
        yaw = Rotation.from_euler("z", rng.uniform(-1.7, 1.7)).as_matrix()
        surface = yaw @ surface * np.array([1.0, 1.5, 1.0])
        mount = yaw @ mount
    if random_mount:
        mount = Rotation.random(random_state=rng).as_matrix()

    along = np.mean(placement.along) if nominal else rng.uniform(*placement.along)
    position = positions[:, start] + along * (positions[:, end] - positions[:, start]) + R_frame @ surface
    return SensorPose(name, placement.joint.format(side=side), R_frame @ mount, position, mount.T @ np.array([0.0, 0.0, 1.0]))


def _log_map(R: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations by less than pi -> (N, 3) rotation vectors (axis * angle)."""
    vee = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], axis=1)  # 2 sin(a) axis
    two_sin = np.linalg.norm(vee, axis=1)
    angle = np.arctan2(0.5 * two_sin, 0.5 * (R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2] - 1.0))
    scale = np.where(two_sin > 1e-12, angle / np.maximum(two_sin, 1e-12), 0.5)
    return vee * scale[:, None]


def specific_force_and_rate(rotation: np.ndarray, position: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Ideal accelerometer (N, 3) m/s^2 and gyroscope (N, 3) rad/s readings in the device frame.

    rotation (N, 3, 3) device -> world, position (N, 3) m, sampled at fs Hz. Central differences,
    second-order accurate; the first and last samples repeat their neighbours.
    """
    accel_world = np.empty_like(position)
    accel_world[1:-1] = (position[2:] - 2.0 * position[1:-1] + position[:-2]) * fs * fs
    accel_world[0], accel_world[-1] = accel_world[1], accel_world[-2]
    acc = np.einsum("nji,nj->ni", rotation, accel_world - G_WORLD)  # R^T (a - g)

    # R(t-dt)^T R(t+dt) = exp(2 dt [w]x) with w in the body frame.
    delta = np.matmul(rotation[:-2].transpose(0, 2, 1), rotation[2:])
    gyro = np.empty_like(position)
    gyro[1:-1] = _log_map(delta) * (fs / 2.0)
    gyro[0], gyro[-1] = gyro[1], gyro[-2]
    return acc, gyro


@dataclass
class DeviceErrors:
    """A MEMS device's imperfections, drawn once per recording."""

    acc_bias: np.ndarray  # (3,) m/s^2
    gyro_bias: np.ndarray  # (3,) rad/s
    acc_gain: np.ndarray  # (3, 3) scale error and axis misalignment
    gyro_gain: np.ndarray
    acc_noise: float  # white noise std per sample, m/s^2
    gyro_noise: float  # rad/s
    acc_range: float  # saturation, m/s^2 (inf: none)
    gyro_range: float
    clock_drift: float  # relative sample-rate error
    timing_jitter: float  # per-sample timestamp jitter, fraction of the period

    @classmethod
    def random(cls, rng: np.random.Generator) -> DeviceErrors:
        def gain(scale_std: float, misalign_deg: float) -> np.ndarray:
            return np.diag(1.0 + rng.normal(0, scale_std, 3)) + np.deg2rad(misalign_deg) * rng.normal(0, 1, (3, 3)) * (
                1 - np.eye(3)
            )

        return cls(
            acc_bias=rng.normal(0.0, 0.15, 3),
            gyro_bias=rng.normal(0.0, 0.015, 3),
            acc_gain=gain(0.02, 0.5),
            gyro_gain=gain(0.02, 0.5),
            acc_noise=float(rng.uniform(0.01, 0.08)),
            gyro_noise=float(rng.uniform(0.005, 0.03)),
            acc_range=float(rng.choice([4.0, 8.0, 16.0, np.inf], p=[0.1, 0.3, 0.3, 0.3]) * GRAVITY),
            gyro_range=float(np.deg2rad(rng.choice([500.0, 1000.0, 2000.0]))),
            clock_drift=float(rng.normal(0.0, 0.003)),
            timing_jitter=float(rng.uniform(0.0, 0.1)),
        )

    @classmethod
    def ideal(cls) -> DeviceErrors:
        return cls(np.zeros(3), np.zeros(3), np.eye(3), np.eye(3), 0.0, 0.0, np.inf, np.inf, 0.0, 0.0)


def sample_device(
    acc: np.ndarray,
    gyro: np.ndarray,
    fs: float,
    rate_hz: float,
    n_out: int,
    t0: float,
    errors: DeviceErrors,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Band-limit ideal readings at fs, sample them at the device's (imperfect) clock, add errors.

    Returns acc, gyro (n_out, 3) float32 at nominal times t0 + k / rate_hz.
    """
    cutoff = 0.4 * rate_hz  # a device's digital low-pass sits below its Nyquist frequency
    if cutoff < 0.45 * fs:
        sos = butter(4, cutoff, fs=fs, output="sos")
        acc, gyro = sosfiltfilt(sos, acc, axis=0), sosfiltfilt(sos, gyro, axis=0)
    k = np.arange(n_out)
    t_true = t0 + k / rate_hz * (1.0 + errors.clock_drift) + rng.normal(0, errors.timing_jitter / rate_hz, n_out)
    t_internal = np.arange(len(acc)) / fs
    acc_out = np.stack([np.interp(t_true, t_internal, acc[:, i]) for i in range(3)], axis=1)
    gyro_out = np.stack([np.interp(t_true, t_internal, gyro[:, i]) for i in range(3)], axis=1)

    acc_out = acc_out @ errors.acc_gain.T + errors.acc_bias + rng.normal(0, errors.acc_noise, acc_out.shape)
    gyro_out = gyro_out @ errors.gyro_gain.T + errors.gyro_bias + rng.normal(0, errors.gyro_noise, gyro_out.shape)
    acc_out = np.clip(acc_out, -errors.acc_range, errors.acc_range)
    gyro_out = np.clip(gyro_out, -errors.gyro_range, errors.gyro_range)
    return acc_out.astype(np.float32), gyro_out.astype(np.float32)
