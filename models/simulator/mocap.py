"""Real motion capture driving the IMU simulator: pybullet's 20 named DeepMimic clips.

`pybullet==3.2.7` ships `pybullet_data/data/motions/humanoid3d_*.txt` and `walker/*.txt`: JSON
frames [dt, root position (3), root quaternion (w, x, y, z), then per joint a quaternion (spherical
joints) or an angle (knees, elbows)], on `pybullet_data/humanoid/humanoid.urdf` loaded with
globalScaling 0.25 (y up, x forward, z to the body's right, metres).

The clip is turned into the simulator's own body representation (`clip.BodyMotion`: the 22 joints of
`body.py`, z up, every joint frame world-aligned at rest: the DeepMimic rest pose also stands upright
with the arms hanging) by forward kinematics in numpy from the URDF's joint offsets, without running
the pybullet engine (only its data files are read). Joints DeepMimic does not have are placed on the
segments it does have (spine1-3 along the chest segment, the head on the neck link, the toe base on
the foot box). Looping clips repeat with the root carried forward by each cycle's displacement and
turn; the native 16-60 Hz frames are interpolated to the internal 200 Hz with C2 splines (positions:
cubic splines, rotations: scipy's RotationSpline), since the IMU needs second derivatives. Devices
are attached and read through the same `imu.attach_sensor`, `specific_force_and_rate` and
`sample_device` as every simulated clip. The clips are low-passed at 12 Hz (they hold seams, see
mocap_body) and carry no heel-strike transients at 16-60 Hz: foot_strikes adds the simulator's
impact jolts where a foot lands (impacts=False leaves them out).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import butter, sosfiltfilt
from scipy.spatial.transform import Rotation, RotationSpline

from models.simulator.activities import ACTIVITIES
from models.simulator.body import J, JOINTS, SubjectParams
from models.simulator.clip import _MARGIN_S, INTERNAL_RATE_HZ, BodyMotion, Clip, SensorTrace, sensor_pose
from models.simulator.imu import DeviceErrors, sample_device, specific_force_and_rate
from models.simulator.motion import Impact, apply_impacts, foot_strike_gains

# jolt at the pelvis per m/s of the foot's landing speed (set before measuring the clips: a landing at
# 1.1 m/s, a foot's speed late in swing, gets the procedural walking's middle jolt, 3.75 m/s^2)
IMPACT_PER_MPS = 3.5
SMOOTH_HZ = 12.0  # low-pass of the interpolated kinematics (see mocap_body); the foot check's marker band
SCALE = 0.25  # the URDF's globalScaling in pybullet's DeepMimic environment
# DeepMimic (x forward, y up, z right) -> simulator (x forward, y left, z up)
TO_SIM = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# joint offsets from the parent joint, URDF units (x SCALE = metres), DeepMimic axes
_OFFSETS = {
    "chest": (0.0, 0.944604, 0.0), "neck": (0.0, 0.895576, 0.0), "hip": (0.0, 0.0, 0.339548),
    "knee": (0.0, -1.686184, 0.0), "ankle": (0.0, -1.63948, 0.0), "shoulder": (-0.0962, 0.974, 0.73244),
    "elbow": (0.0, -1.099152, 0.0), "wrist": (0.0, -1.035788, 0.0),
}  # fmt: skip
# where the simulator's extra joints sit on DeepMimic's links (URDF units, the link's own axes)
_SPINE1_ON_ROOT, _SPINE3_ON_CHEST = (0.0, 0.47, 0.0), (0.0, 0.31, 0.0)
_HEAD_ON_NECK, _TOE_ON_FOOT = (0.0, 0.4, 0.0), (0.40, -0.2, 0.0)
# the skeleton's standing height: sole (the foot box's bottom, 0.27 below the ankle) to the head's top
# (the neck link's sphere, 0.7 + 0.41 above the neck joint)
HEIGHT_M = SCALE * (0.27 + 1.63948 + 1.686184 + 0.944604 + 0.895576 + 0.7 + 0.41)

# clip file stem -> (activity caption used as the label, paraphrases). Known simulator activities reuse
# their own descriptions, so a mocap clip and a procedural one of the same activity read alike.
CLIP_CAPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "walk": ("walking", ()), "0walk_forward": ("walking", ()), "run": ("running", ()), "jump": ("jumping", ()),
    "backflip": ("doing a backflip", ("a backward somersault", "flipping over backwards", "a back flip from standing")),
    "cartwheel": ("doing a cartwheel", ("turning a cartwheel", "wheeling sideways over the hands")),
    "crawl": ("crawling", ("crawling on hands and knees", "moving on all fours")),
    "dance_a": ("dancing", ("dancing to music", "a dance with turns and arm movements")),
    "dance_b": ("dancing", ("dancing on the spot", "swaying and stepping to a beat")),
    "getup_facedown": ("getting up from the floor", ("standing up after lying face down",
                                                     "pushing up off the floor from the front")),
    "getup_faceup": ("getting up from the floor", ("standing up after lying on the back",
                                                   "rising from the floor from lying face up")),
    "kick": ("kicking", ("a kick with one leg", "kicking forward")),
    "punch": ("punching", ("throwing a punch", "boxing punches with the arms")),
    "roll": ("rolling on the floor", ("a forward roll", "tumbling over on the ground")),
    "spin": ("spinning around", ("turning round on the spot", "a pirouette")),
    "spinkick": ("doing a spinning kick", ("a roundhouse kick with a turn", "spinning and kicking")),
    "turn_left0": ("walking and turning left", ("walking in a curve to the left",)),
    "turn_left1": ("walking and turning left", ("turning left while walking",)),
    "turn_right0": ("walking and turning right", ("walking in a curve to the right",)),
    "turn_right1": ("walking and turning right", ("turning right while walking",)),
}  # fmt: skip


class MocapUnavailable(RuntimeError):
    pass


def motions_dir() -> Path:
    spec = importlib.util.find_spec("pybullet_data")
    if spec is None or not spec.submodule_search_locations:
        raise MocapUnavailable("pybullet is not installed (pip install pybullet==3.2.7, in pyproject.toml)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "motions"


def clip_names() -> list[str]:
    """The named clips: humanoid3d_<name>.txt and walker/<name>.txt stems."""
    root = motions_dir()
    names = [p.stem.removeprefix("humanoid3d_") for p in sorted(root.glob("humanoid3d_*.txt"))]
    return names + [p.stem for p in sorted((root / "walker").glob("*.txt"))]


def caption(name: str) -> tuple[str, list[str]]:
    """(label, descriptions) for a clip: the simulator's own paraphrases when the activity is one of its own."""
    label, extra = CLIP_CAPTIONS[name]
    if label in ACTIVITIES:
        return label, list(ACTIVITIES[label].descriptions)
    return label, [label, *extra]


@dataclass
class MocapFrames:
    name: str
    t: np.ndarray  # (F,) s
    rotations: np.ndarray  # (F, 22, 3, 3) joint frames -> world, simulator axes
    positions: np.ndarray  # (F, 22, 3) m
    loop: bool


def _quat(wxyz: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(wxyz[:, [1, 2, 3, 0]]).as_matrix()


def _rz(angle: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(np.outer(angle, [0.0, 0.0, 1.0])).as_matrix()


def _fk_deepmimic(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 44) DeepMimic frames -> world rotations (F, 22, 3, 3) and positions (F, 22, 3), simulator axes."""
    F = len(frames)
    R = np.empty((F, len(JOINTS), 3, 3))
    p = np.empty((F, len(JOINTS), 3))

    root_R, root_p = _quat(frames[:, 4:8]), frames[:, 1:4]
    chest_R = root_R @ _quat(frames[:, 8:12])
    chest_p = root_p + root_R @ (np.array(_OFFSETS["chest"]) * SCALE)
    neck_R = chest_R @ _quat(frames[:, 12:16])
    neck_p = chest_p + chest_R @ (np.array(_OFFSETS["neck"]) * SCALE)
    dm: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "pelvis": (root_R, root_p),
        "spine1": (root_R, root_p + root_R @ (np.array(_SPINE1_ON_ROOT) * SCALE)),
        "spine2": (chest_R, chest_p),
        "spine3": (chest_R, chest_p + chest_R @ (np.array(_SPINE3_ON_CHEST) * SCALE)),
        "neck": (neck_R, neck_p),
        "head": (neck_R, neck_p + neck_R @ (np.array(_HEAD_ON_NECK) * SCALE)),
    }
    columns = {"right": (16, 20, 21, 25, 29), "left": (30, 34, 35, 39, 43)}
    for side, (hip, knee, ankle, shoulder, elbow) in columns.items():
        mirror = np.array([1.0, 1.0, 1.0 if side == "right" else -1.0])  # DeepMimic's z points right
        hip_R = root_R @ _quat(frames[:, hip:hip + 4])
        hip_p = root_p + root_R @ (np.array(_OFFSETS["hip"]) * mirror * SCALE)
        knee_R = hip_R @ _rz(frames[:, knee])
        knee_p = hip_p + hip_R @ (np.array(_OFFSETS["knee"]) * SCALE)
        ankle_R = knee_R @ _quat(frames[:, ankle:ankle + 4])
        ankle_p = knee_p + knee_R @ (np.array(_OFFSETS["ankle"]) * SCALE)
        shoulder_R = chest_R @ _quat(frames[:, shoulder:shoulder + 4])
        shoulder_p = chest_p + chest_R @ (np.array(_OFFSETS["shoulder"]) * mirror * SCALE)
        elbow_R = shoulder_R @ _rz(frames[:, elbow])
        elbow_p = shoulder_p + shoulder_R @ (np.array(_OFFSETS["elbow"]) * SCALE)
        wrist_p = elbow_p + elbow_R @ (np.array(_OFFSETS["wrist"]) * SCALE)
        collar_p = chest_p + chest_R @ (np.array(_OFFSETS["shoulder"]) * mirror * np.array([1.0, 0.9, 0.3]) * SCALE)
        dm.update({
            f"{side}_hip": (hip_R, hip_p), f"{side}_knee": (knee_R, knee_p), f"{side}_ankle": (ankle_R, ankle_p),
            f"{side}_foot": (ankle_R, ankle_p + ankle_R @ (np.array(_TOE_ON_FOOT) * SCALE)),
            f"{side}_collar": (chest_R, collar_p), f"{side}_shoulder": (shoulder_R, shoulder_p),
            f"{side}_elbow": (elbow_R, elbow_p), f"{side}_wrist": (elbow_R, wrist_p),  # no wrist joint in DeepMimic
        })  # fmt: skip
    for name, (rot, pos) in dm.items():
        R[:, J[name]] = TO_SIM @ rot @ TO_SIM.T
        p[:, J[name]] = pos @ TO_SIM.T
    return R, p


@lru_cache(maxsize=None)
def load_frames(name: str) -> MocapFrames:
    root = motions_dir()
    path = root / f"humanoid3d_{name}.txt"
    if not path.exists():
        path = root / "walker" / f"{name}.txt"
    if not path.exists():
        raise MocapUnavailable(f"no DeepMimic clip named {name!r} (known: {', '.join(clip_names())})")
    data = json.loads(path.read_text())
    frames = np.asarray(data["Frames"], dtype=float)
    t = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    R, p = _fk_deepmimic(frames)
    return MocapFrames(name, t, R, p, data.get("Loop", "none") == "wrap")


def _heading(R: np.ndarray) -> float:
    return float(np.arctan2(R[1, 0], R[0, 0]))


def _span(frames: MocapFrames, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames covering [start_s, end_s]: looping clips repeat (each cycle moved on by the last frame's
    displacement and turn relative to the first), others hold their first and last frames."""
    t, R, p = frames.t, frames.rotations, frames.positions
    period = t[-1]
    if not frames.loop:
        dt = float(np.median(np.diff(t)))
        before = np.arange(start_s, 0.0, dt) if start_s < 0 else np.array([])
        after = np.arange(t[-1] + dt, end_s + dt, dt) if end_s > t[-1] else np.array([])
        times = np.concatenate([before, t, after])
        index = np.concatenate([np.zeros(len(before), int), np.arange(len(t)), np.full(len(after), len(t) - 1)])
        return times, R[index], p[index]
    turn = Rotation.from_euler("z", _heading(R[-1, J["pelvis"]]) - _heading(R[0, J["pelvis"]])).as_matrix()
    c0, c1 = p[0, J["pelvis"]] * [1, 1, 0], p[-1, J["pelvis"]] * [1, 1, 0]
    cycles_R, cycles_p, cycles_t = [], [], []
    k_first, k_last = int(np.floor(start_s / period)) - 1, int(np.ceil(end_s / period)) + 1
    # cycle k: apply the one-cycle transform k times (k < 0: its inverse)
    for k in range(k_first, k_last + 1):
        Rk, pk = R[:-1], p[:-1]
        step_R, step_p = (turn, c1 - turn @ c0) if k >= 0 else (turn.T, c0 - turn.T @ c1)
        for _ in range(abs(k)):
            Rk = step_R @ Rk
            pk = pk @ step_R.T + step_p
        cycles_R.append(Rk), cycles_p.append(pk), cycles_t.append(t[:-1] + k * period)
    return np.concatenate(cycles_t), np.concatenate(cycles_R), np.concatenate(cycles_p)


def mocap_body(name: str, duration_s: float | None = None, fs: float = INTERNAL_RATE_HZ,
               subject: SubjectParams | None = None, impacts: bool = True,
               rng: np.random.Generator | None = None) -> BodyMotion:
    """The clip as the simulator's BodyMotion at fs, padded by _MARGIN_S both sides (t starts at -_MARGIN_S).

    duration_s: None = one cycle (the clip as recorded). impacts: add heel-strike jolts (foot_strikes)."""
    frames = load_frames(name)
    duration = frames.t[-1] if duration_s is None else duration_s
    t_native, R_native, p_native = _span(frames, -_MARGIN_S - 0.2, duration + _MARGIN_S + 0.2)
    t = np.arange(-_MARGIN_S, duration + _MARGIN_S, 1.0 / fs)
    positions = CubicSpline(t_native, p_native, axis=0)(t)
    rotations = np.stack([RotationSpline(t_native, Rotation.from_matrix(R_native[:, j]))(t).as_matrix()
                          for j in range(len(JOINTS))], axis=1)  # fmt: skip
    # The clips hold seams (the walk and run cycles are two mirrored halves joined with a jump of the
    # pelvis' orientation, 3.8 and 5.7 rad/s for one frame): a zero-phase low-pass spreads them as a
    # marker filter would; rotations are filtered element-wise and put back on SO(3).
    sos = butter(4, SMOOTH_HZ, fs=fs, output="sos")
    positions = sosfiltfilt(sos, positions, axis=0)
    U, _, Vt = np.linalg.svd(sosfiltfilt(sos, rotations, axis=0))
    rotations = U @ Vt  # the nearest rotation (a filtered rotation is close to one; no reflections arise)
    subject = subject or SubjectParams(height_m=HEIGHT_M)
    if impacts:
        positions = apply_impacts(positions, t, foot_strikes(t, rotations, positions, rng or np.random.default_rng(0)))
    return BodyMotion(t, rotations, positions, subject)


def foot_strikes(t: np.ndarray, rotations: np.ndarray, positions: np.ndarray, rng: np.random.Generator) -> list[Impact]:
    """Heel-strike jolts where a foot lands: the 30-60 Hz mocap has none of its own.

    A foot is on the ground while its lowest point (ankle or toe base) is within 2 cm of the clip's
    floor; each landing that lasts 60 ms gets a jolt like the procedural gaits' (up and backwards,
    spread by foot_strike_gains), as strong as the foot's fastest downward speed in the 0.2 s before.
    """
    fs = 1.0 / (t[1] - t[0])
    out = []
    heading = np.arctan2(rotations[:, J["pelvis"], 1, 0], rotations[:, J["pelvis"], 0, 0])
    for side in ("left", "right"):
        ankle = positions[:, J[f"{side}_ankle"], 2]
        low = np.minimum(ankle, positions[:, J[f"{side}_foot"], 2])
        floor = np.percentile(np.minimum(positions[:, J["left_foot"], 2], positions[:, J["right_foot"], 2]), 2)
        down = low < floor + 0.02
        fall_speed = -np.gradient(ankle, t)
        hold = int(0.06 * fs)
        for k in np.flatnonzero(down[1:] & ~down[:-1]) + 1:
            if k + hold > len(t) or not down[k:k + hold].all():
                continue
            speed = float(fall_speed[max(0, k - int(0.2 * fs)):k + 1].max())
            if speed <= 0.1:
                continue  # a foot set down, not a landing
            facing = heading[k]
            jolt = np.array([-0.35 * np.cos(facing), -0.35 * np.sin(facing), 1.0])
            out.append(Impact(float(t[k]), IMPACT_PER_MPS * speed * rng.uniform(0.7, 1.3), 0.016,
                              foot_strike_gains(side), jolt / np.linalg.norm(jolt)))
    return out


def mocap_clip(
    name: str,
    rng: np.random.Generator,
    duration_s: float | None = 10.0,
    rate_hz: float = 50.0,
    placements: Sequence[str] = ("waist",),
    realism: bool = True,
    random_mount: bool = False,
    impacts: bool = True,
) -> Clip:
    """A DeepMimic clip seen by IMUs at `placements`, the same way simulate_clip records a procedural one.

    duration_s: None = the clip's own length (one cycle). The result is a `clip.Clip` whose activity
    is the clip's caption (e.g. "getting up from the floor") and whose descriptions paraphrase it.
    """
    body = mocap_body(name, duration_s, max(INTERNAL_RATE_HZ, 4.0 * rate_hz), impacts=impacts, rng=rng)
    fs = 1.0 / (body.t[1] - body.t[0])
    duration = body.t[-1] + 1.0 / fs - 2 * _MARGIN_S
    n_out = int(round(duration * rate_hz))
    t_out = np.arange(n_out) / rate_hz
    imu: dict[str, SensorTrace] = {}
    for placement in placements:
        pose = sensor_pose(body, placement, rng, random_mount, nominal=not realism)
        acc, gyro = specific_force_and_rate(pose.rotation, pose.position, fs)
        errors = DeviceErrors.random(rng) if realism else DeviceErrors.ideal()
        acc, gyro = sample_device(acc, gyro, fs, rate_hz, n_out, _MARGIN_S, errors, rng)
        imu[placement] = SensorTrace(acc, gyro, pose.joint, pose.rest_up)
    joints = np.stack([np.interp(t_out, body.t, body.positions[:, j, k]) for j in range(len(JOINTS))
                       for k in range(3)], axis=1).reshape(n_out, -1, 3)  # fmt: skip
    label, descriptions = caption(name)
    order = rng.permutation(len(descriptions) - 1) + 1
    return Clip(label, [descriptions[0], *[descriptions[i] for i in order[:4]]], rate_hz, t_out, imu,
                joints.astype(np.float32), body.subject)
