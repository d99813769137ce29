"""Building blocks for procedural motion: a Motion, smooth signals, anatomical joint setters,
postures and keyframed transitions. Angles are radians; conventions are in `body.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.simulator.body import J, N_JOINTS, SubjectParams

DEG = np.pi / 180.0


@dataclass
class Impact:
    """A short jolt (heel strike, landing, clap) felt by the joints near where it happens.

    Modelled as a brief Gaussian dip of the joints' positions along `direction` (world): the
    second derivative of the dip is a spike of about `peak_acc` m/s^2 along `direction` with
    small negative side lobes, width `width_s`. `gains` (22,) spread it over the body.
    """

    time_s: float
    peak_acc: float
    width_s: float
    gains: np.ndarray
    direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))


@dataclass
class Motion:
    """Joint-angle trajectories of one activity, sampled at the times t (T,)."""

    t: np.ndarray
    local_angles: np.ndarray  # (T, 22, 3) roll, pitch, yaw per joint
    root_angles: np.ndarray  # (T, 3) pelvis orientation in the world
    root_pos: np.ndarray  # (T, 3) pelvis position in the world, m
    impacts: list[Impact] = field(default_factory=list)

    @classmethod
    def still(cls, t: np.ndarray) -> Motion:
        T = len(t)
        return cls(t, np.zeros((T, N_JOINTS, 3)), np.zeros((T, 3)), np.zeros((T, 3)))


def apply_impacts(positions: np.ndarray, t: np.ndarray, impacts: list[Impact]) -> np.ndarray:
    """Add impact dips to FK joint positions (T, 22, 3)."""
    out = positions.copy()
    for impact in impacts:
        near = np.abs(t - impact.time_s) < 5 * impact.width_s
        if not near.any():
            continue
        u = (t[near] - impact.time_s) / impact.width_s
        dip = -impact.peak_acc * impact.width_s**2 * np.exp(-0.5 * u * u)  # d'' peaks at +peak_acc
        out[near] += dip[:, None, None] * impact.gains[None, :, None] * impact.direction
    return out


# How strongly a jolt from the feet reaches each joint, relative to the pelvis.
_GAIT_GAINS = np.array([
    1.0, 1.1, 1.1, 0.9, 1.8, 1.8, 0.8, 3.0, 3.0, 0.7, 3.0, 3.0, 0.6, 0.65, 0.65, 0.55, 0.6, 0.6,
    0.5, 0.5, 0.45, 0.45,
])  # fmt: skip


def foot_strike_gains(side: str) -> np.ndarray:
    """Gains for a foot landing: the landing leg takes the full shock, the other leg little."""
    gains = _GAIT_GAINS.copy()
    other = "right" if side == "left" else "left"
    for joint in ("knee", "ankle", "foot"):
        gains[J[f"{other}_{joint}"]] = 0.8
    return gains


def local_gains(joints: dict[str, float]) -> np.ndarray:
    gains = np.zeros(N_JOINTS)
    for name, gain in joints.items():
        gains[J[name]] = gain
    return gains


def face(motion: Motion, heading: float) -> Motion:
    """Turn the whole scene about the vertical by `heading` (rad)."""
    c, s = np.cos(heading), np.sin(heading)
    x, y = motion.root_pos[:, 0].copy(), motion.root_pos[:, 1].copy()
    motion.root_pos[:, 0], motion.root_pos[:, 1] = c * x - s * y, s * x + c * y
    motion.root_angles[:, 2] += heading
    for impact in motion.impacts:
        d = impact.direction.copy()
        impact.direction = np.array([c * d[0] - s * d[1], s * d[0] + c * d[1], d[2]])
    return motion


def random_heading(rng: np.random.Generator) -> float:
    return float(rng.uniform(-np.pi, np.pi))


# Smooth signals -----------------------------------------------------------------------------


def min_jerk(s: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero velocity and acceleration at both ends (human point-to-point motion)."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10.0 - 15.0 * s + 6.0 * s * s)


def bump(phase: np.ndarray, center: float, kappa: float) -> np.ndarray:
    """Periodic bump in [0, 1] peaking at cycle fraction `center`; larger kappa = narrower."""
    return np.exp(kappa * (np.cos(phase - 2 * np.pi * center) - 1.0))


def smooth_noise(t: np.ndarray, rng: np.random.Generator, std: float, max_hz: float, n: int = 5) -> np.ndarray:
    """A random smooth signal with roughly `std` spread and content below max_hz."""
    freqs = rng.uniform(0.1 * max_hz, max_hz, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.normal(0, std * np.sqrt(2.0 / n), n)
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)


def cycle_phase(t: np.ndarray, rng: np.random.Generator, freq_hz: float, variability: float) -> np.ndarray:
    """Phase (rad) of a rhythm at freq_hz whose tempo wanders by `variability` (relative)."""
    freq = freq_hz * (1.0 + smooth_noise(t, rng, variability, 0.3))
    dt = np.diff(t, prepend=t[0])
    return 2 * np.pi * np.cumsum(freq * dt) + rng.uniform(0, 2 * np.pi)


def episodes(t: np.ndarray, rng: np.random.Generator, on_s: tuple[float, float], off_s: tuple[float, float],
             ramp_s: float, start_on: bool | None = None) -> np.ndarray:
    """Envelope (T,) in [0, 1]: random bouts of an action separated by pauses, smooth edges."""
    envelope = np.zeros_like(t)
    on = rng.random() < 0.5 if start_on is None else start_on
    edge = t[0] - (rng.uniform(*on_s) * rng.random() if on else 0.0)
    while edge < t[-1]:
        if on:
            length = rng.uniform(*on_s)
            rise = min_jerk((t - edge) / ramp_s)
            fall = 1.0 - min_jerk((t - (edge + length - ramp_s)) / ramp_s)
            envelope = np.maximum(envelope, np.minimum(rise, fall))
        else:
            length = rng.uniform(*off_s)
        edge += length
        on = not on
    return envelope


def keyframes(t: np.ndarray, times: list[float], values: list[np.ndarray]) -> np.ndarray:
    """Min-jerk interpolation through keyframe values (each of the same shape), held outside."""
    values_arr = np.asarray(values, dtype=float)
    out = np.broadcast_to(values_arr[0], t.shape + values_arr.shape[1:]).copy()
    for k in range(1, len(times)):
        s = min_jerk((t - times[k - 1]) / max(times[k] - times[k - 1], 1e-6))
        s = s.reshape(s.shape + (1,) * (values_arr.ndim - 1))
        out += s * (values_arr[k] - values_arr[k - 1])
    return out


# Anatomical joint setters (left-side conventions; right side mirrored) ------------------------


def _add(angles: np.ndarray, joint: str, side: str | None, roll=0.0, pitch=0.0, yaw=0.0) -> None:
    mirror = -1.0 if side == "right" else 1.0
    j = J[f"{side}_{joint}" if side else joint]
    angles[..., j, 0] += mirror * roll
    angles[..., j, 1] += pitch
    angles[..., j, 2] += mirror * yaw


def set_leg(angles, side, hip_flex=0.0, hip_abd=0.0, hip_rot=0.0, knee_flex=0.0, ankle_plantar=0.0) -> None:
    _add(angles, "hip", side, roll=hip_abd, pitch=-hip_flex, yaw=-hip_rot)
    _add(angles, "knee", side, pitch=knee_flex)
    _add(angles, "ankle", side, pitch=ankle_plantar)


def set_arm(angles, side, flex=0.0, abd=0.0, rot=0.0, elbow=0.0, pronation=0.0, elbow_lift=0.0) -> None:
    """Shoulder flexion/abduction/rotation, elbow flexion, forearm pronation (about its axis).

    `elbow_lift` turns the forearm up towards the body's side plane (a shoulder external
    rotation with the elbow bent, collapsed onto the elbow joint): needed for waving.
    """
    _add(angles, "shoulder", side, roll=abd, pitch=-flex, yaw=-rot)
    _add(angles, "elbow", side, roll=elbow_lift, pitch=-elbow)
    _add(angles, "wrist", side, yaw=-pronation)


def clear_arm(angles: np.ndarray, side: str) -> None:
    """Zero an arm's shoulder, elbow and wrist angles so an activity can set them outright."""
    for joint in ("shoulder", "elbow", "wrist"):
        angles[..., J[f"{side}_{joint}"], :] = 0.0


def about_deg(rng: np.random.Generator, value_deg: float, spread: float = 0.15) -> float:
    """value_deg, in radians, varied by +-spread (relative) from person to person."""
    return value_deg * DEG * rng.uniform(1 - spread, 1 + spread)


def set_trunk(angles, lean=0.0, side_bend=0.0, twist=0.0, head_nod=0.0, head_turn=0.0) -> None:
    """Spread trunk lean/bend/twist over the three spine joints; the head nods on the neck."""
    for joint, share in (("spine1", 0.3), ("spine2", 0.35), ("spine3", 0.35)):
        _add(angles, joint, None, roll=-side_bend * share, pitch=lean * share, yaw=twist * share)
    _add(angles, "neck", None, pitch=0.5 * head_nod, yaw=0.5 * head_turn)
    _add(angles, "head", None, pitch=0.5 * head_nod, yaw=0.5 * head_turn)


# Postures -----------------------------------------------------------------------------------


@dataclass
class Posture:
    """A static body configuration: joint angles (22, 3), pelvis orientation and position."""

    angles: np.ndarray
    root_angles: np.ndarray
    root_pos: np.ndarray

    def stacked(self) -> np.ndarray:
        """Flattened (22*3 + 6,) vector, for interpolation between postures."""
        return np.concatenate([self.angles.ravel(), self.root_angles, self.root_pos])


def standing(subject: SubjectParams, rng: np.random.Generator) -> Posture:
    a = np.zeros((N_JOINTS, 3))
    for side in ("left", "right"):
        set_leg(a, side, hip_flex=rng.normal(0, 2) * DEG, hip_abd=rng.uniform(1, 5) * DEG,
                knee_flex=rng.uniform(0, 6) * DEG)
        set_arm(a, side, flex=rng.normal(3, 4) * DEG, abd=rng.uniform(3, 10) * DEG, elbow=rng.uniform(5, 20) * DEG)
    set_trunk(a, lean=rng.normal(2, 3) * DEG, head_nod=rng.normal(5, 5) * DEG)
    root = np.array([0.0, rng.normal(4, 3) * DEG, 0.0])  # a slight anterior pelvic tilt
    height = subject.standing_pelvis_height() * np.cos(rng.uniform(0, 6) * DEG)
    return Posture(a, root, np.array([0.0, 0.0, height]))


def sitting(subject: SubjectParams, rng: np.random.Generator, seat_m: float | None = None) -> Posture:
    """On a chair: pelvis rolled back, thighs about horizontal, shins about vertical, hands on lap."""
    a = np.zeros((N_JOINTS, 3))
    tilt_back = rng.uniform(8, 25) * DEG
    thigh_slope = rng.normal(0, 5) * DEG  # knees a little above/below the hips
    for side in ("left", "right"):
        hip_flex = 90 * DEG - tilt_back + thigh_slope
        set_leg(a, side, hip_flex=hip_flex, hip_abd=rng.uniform(2, 12) * DEG, hip_rot=rng.normal(0, 5) * DEG,
                knee_flex=90 * DEG + thigh_slope + rng.normal(0, 12) * DEG, ankle_plantar=rng.normal(0, 6) * DEG)
        set_arm(a, side, flex=rng.uniform(10, 35) * DEG, abd=rng.uniform(3, 12) * DEG,
                elbow=rng.uniform(45, 80) * DEG, pronation=rng.uniform(40, 90) * DEG)
    slump = rng.normal(0, 8) * DEG  # upright vs slouched vs leaning in
    set_trunk(a, lean=tilt_back + slump, head_nod=rng.normal(8, 6) * DEG)
    seat = seat_m if seat_m is not None else subject.height_m * rng.uniform(0.25, 0.29)
    root = np.array([0.0, -tilt_back, 0.0])
    return Posture(a, root, np.array([0.0, 0.0, seat + 0.07 * subject.height_m]))


def lying(subject: SubjectParams, rng: np.random.Generator, how: str | None = None,
          surface_m: float | None = None) -> Posture:
    """On the back, on either side or face down, on a bed or the floor."""
    how = how or str(rng.choice(["back", "left side", "right side", "front"], p=[0.5, 0.2, 0.2, 0.1]))
    a = np.zeros((N_JOINTS, 3))
    surface = surface_m if surface_m is not None else (0.0 if rng.random() < 0.3 else rng.uniform(0.4, 0.6))
    heading = rng.uniform(-np.pi, np.pi)
    if how == "back" or how == "front":
        for side in ("left", "right"):
            knee = rng.uniform(0, 25) * DEG
            set_leg(a, side, hip_flex=0.5 * knee, hip_abd=rng.uniform(2, 10) * DEG, knee_flex=knee,
                    ankle_plantar=rng.uniform(10, 40) * DEG)
            set_arm(a, side, flex=rng.uniform(-5, 30) * DEG, abd=rng.uniform(5, 30) * DEG,
                    elbow=rng.uniform(0, 70) * DEG)
        pitch = -90 * DEG if how == "back" else 90 * DEG
        root = np.array([rng.normal(0, 6) * DEG, pitch + rng.normal(0, 6) * DEG, heading])
        thickness = 0.11
    else:
        for side in ("left", "right"):
            flex = rng.uniform(10, 60) * DEG  # curled up to a varying degree
            set_leg(a, side, hip_flex=flex, knee_flex=1.3 * flex, ankle_plantar=rng.uniform(10, 30) * DEG)
            set_arm(a, side, flex=rng.uniform(20, 80) * DEG, elbow=rng.uniform(20, 100) * DEG)
        # Left side down = the body's left axis points at the floor: roll -90 deg.
        roll = -90 * DEG if how == "left side" else 90 * DEG
        root = np.array([roll + rng.normal(0, 8) * DEG, rng.normal(0, 6) * DEG, heading])
        thickness = 0.17
    set_trunk(a, lean=rng.normal(0, 4) * DEG, head_nod=rng.normal(0, 10) * DEG)
    return Posture(a, root, np.array([0.0, 0.0, surface + thickness * subject.height_m / 1.72]))


def hold(t: np.ndarray, posture: Posture) -> Motion:
    motion = Motion.still(t)
    motion.local_angles[:] = posture.angles
    motion.root_angles[:] = posture.root_angles
    motion.root_pos[:] = posture.root_pos
    return motion


def through_postures(t: np.ndarray, times: list[float], postures: list[Posture]) -> Motion:
    """Move through postures (one per keyframe time) along min-jerk paths."""
    track = keyframes(t, times, [p.stacked() for p in postures])
    n = N_JOINTS * 3
    return Motion(t, track[:, :n].reshape(-1, N_JOINTS, 3), track[:, n:n + 3], track[:, n + 3:])


def add_liveliness(motion: Motion, rng: np.random.Generator, scale: float = 1.0, breathing: bool = True) -> Motion:
    """The small movement of a living body: postural sway, breathing, head and hand drift."""
    t = motion.t
    a = motion.local_angles
    sway = scale * DEG
    set_trunk(a, lean=smooth_noise(t, rng, 0.7 * sway, 0.5), side_bend=smooth_noise(t, rng, 0.5 * sway, 0.5),
              twist=smooth_noise(t, rng, 0.8 * sway, 0.4), head_nod=smooth_noise(t, rng, 2 * sway, 0.6),
              head_turn=smooth_noise(t, rng, 3 * sway, 0.4))
    for side in ("left", "right"):
        set_arm(a, side, flex=smooth_noise(t, rng, 1.5 * sway, 0.6), elbow=smooth_noise(t, rng, 2 * sway, 0.6),
                pronation=smooth_noise(t, rng, 3 * sway, 0.6))
    if breathing:
        rate_hz = rng.uniform(0.2, 0.35)
        breath = np.sin(2 * np.pi * rate_hz * t + rng.uniform(0, 2 * np.pi))
        _add(a, "spine3", None, pitch=-0.8 * DEG * breath)
    # Now and then a fidget: shifting weight, scratching, adjusting clothes.
    fidget = episodes(t, rng, on_s=(0.6, 1.5), off_s=(2.0, 8.0), ramp_s=0.25)
    set_trunk(a, lean=fidget * smooth_noise(t, rng, 2 * sway, 2.0), twist=fidget * smooth_noise(t, rng, 2 * sway, 2.0))
    for axis in range(3):
        motion.root_pos[:, axis] += smooth_noise(t, rng, 0.004 * scale, 0.4)
        motion.root_pos[:, axis] += fidget * smooth_noise(t, rng, 0.0015, 1.5)
        motion.root_angles[:, axis] += smooth_noise(t, rng, 0.4 * sway, 0.5)
        motion.root_angles[:, axis] += fidget * smooth_noise(t, rng, 0.5 * sway, 2.0)
    return motion
