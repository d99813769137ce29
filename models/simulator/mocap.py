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
`sample_device` as every simulated clip. The clips' seams (one-frame pose jumps) are faded out
(repair_seams), the kinematics low-passed at 12 Hz, and since the 16-60 Hz mocap has no heel-strike
transients, foot_strikes adds the simulator's impact jolts where a foot lands (impacts=False: none).
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
from models.simulator.clip import _MARGIN_S, INTERNAL_RATE_HZ, BodyMotion, Clip, record_devices
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
    """A clip as recorded: DeepMimic's pose parameters per frame (the dt column dropped)."""

    name: str
    t: np.ndarray  # (F,) s
    poses: np.ndarray  # (F, 43): root position (3), root quaternion (w, x, y, z), joints as in the file
    loop: bool


# pose columns (after the dt column is dropped): quaternions (root first) and revolute angles
_QUATS = (3, 7, 11, 15, 20, 24, 29, 34, 38)
_ANGLES = (19, 28, 33, 42)


def _quat(wxyz: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(wxyz[:, [1, 2, 3, 0]]).as_matrix()


def _rz(angle: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(np.outer(angle, [0.0, 0.0, 1.0])).as_matrix()


def _fk_deepmimic(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 43) DeepMimic poses -> world rotations (F, 22, 3, 3) and positions (F, 22, 3), simulator axes."""
    F = len(poses)
    R = np.empty((F, len(JOINTS), 3, 3))
    p = np.empty((F, len(JOINTS), 3))

    root_R, root_p = _quat(poses[:, 3:7]), poses[:, 0:3]
    chest_R = root_R @ _quat(poses[:, 7:11])
    chest_p = root_p + root_R @ (np.array(_OFFSETS["chest"]) * SCALE)
    neck_R = chest_R @ _quat(poses[:, 11:15])
    neck_p = chest_p + chest_R @ (np.array(_OFFSETS["neck"]) * SCALE)
    dm: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "pelvis": (root_R, root_p),
        "spine1": (root_R, root_p + root_R @ (np.array(_SPINE1_ON_ROOT) * SCALE)),
        "spine2": (chest_R, chest_p),
        "spine3": (chest_R, chest_p + chest_R @ (np.array(_SPINE3_ON_CHEST) * SCALE)),
        "neck": (neck_R, neck_p),
        "head": (neck_R, neck_p + neck_R @ (np.array(_HEAD_ON_NECK) * SCALE)),
    }
    columns = {"right": (15, 19, 20, 24, 28), "left": (29, 33, 34, 38, 42)}
    for side, (hip, knee, ankle, shoulder, elbow) in columns.items():
        mirror = np.array([1.0, 1.0, 1.0 if side == "right" else -1.0])  # DeepMimic's z points right
        hip_R = root_R @ _quat(poses[:, hip:hip + 4])
        hip_p = root_p + root_R @ (np.array(_OFFSETS["hip"]) * mirror * SCALE)
        knee_R = hip_R @ _rz(poses[:, knee])
        knee_p = hip_p + hip_R @ (np.array(_OFFSETS["knee"]) * SCALE)
        ankle_R = knee_R @ _quat(poses[:, ankle:ankle + 4])
        ankle_p = knee_p + knee_R @ (np.array(_OFFSETS["ankle"]) * SCALE)
        shoulder_R = chest_R @ _quat(poses[:, shoulder:shoulder + 4])
        shoulder_p = chest_p + chest_R @ (np.array(_OFFSETS["shoulder"]) * mirror * SCALE)
        elbow_R = shoulder_R @ _rz(poses[:, elbow])
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
    return MocapFrames(name, t, frames[:, 1:], data.get("Loop", "none") == "wrap")


def _yaw_dm(q_wxyz: np.ndarray) -> float:
    """Heading of a DeepMimic root quaternion: the turn of its forward (x) axis about the vertical (y)."""
    forward = _quat(q_wxyz[None])[0][:, 0]
    return float(np.arctan2(-forward[2], forward[0]))


def _span(frames: MocapFrames, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose frames covering [start_s, end_s]: looping clips repeat, each cycle's root moved on by the
    last frame's displacement and turn relative to the first (DeepMimic's own rule); others hold their
    first and last frames."""
    t, poses = frames.t, frames.poses
    period = t[-1]
    if not frames.loop:
        dt = float(np.median(np.diff(t)))
        before = np.arange(start_s, 0.0, dt) if start_s < 0 else np.array([])
        after = np.arange(t[-1] + dt, end_s + dt, dt) if end_s > t[-1] else np.array([])
        index = np.concatenate([np.zeros(len(before), int), np.arange(len(t)), np.full(len(after), len(t) - 1)])
        return np.concatenate([before, t, after]), poses[index]
    turn = Rotation.from_rotvec([0.0, _yaw_dm(poses[-1, 3:7]) - _yaw_dm(poses[0, 3:7]), 0.0])
    c0, c1 = poses[0, :3] * [1, 0, 1], poses[-1, :3] * [1, 0, 1]  # ground-plane positions (y up)
    times, out = [], []
    for k in range(int(np.floor(start_s / period)) - 1, int(np.ceil(end_s / period)) + 2):
        cycle = poses[:-1].copy()
        step_turn, step_shift = (turn, c1 - turn.apply(c0)) if k >= 0 else (turn.inv(), c0 - turn.inv().apply(c1))
        root = Rotation.from_quat(cycle[:, [4, 5, 6, 3]])
        for _ in range(abs(k)):
            cycle[:, :3] = step_turn.apply(cycle[:, :3]) + step_shift
            root = step_turn * root
        cycle[:, [4, 5, 6, 3]] = root.as_quat()
        times.append(t[:-1] + k * period), out.append(cycle)
    return np.concatenate(times), np.concatenate(out)


def repair_seams(poses: np.ndarray, dt: float, joins: Sequence[int] = (), ramp_s: float = 0.15
                 ) -> tuple[np.ndarray, list[int]]:
    """Spread one-frame jumps of the whole pose out; returns the poses and the seams' frame indices.

    DeepMimic's cycles are built from mirrored halves (and loops join end to start): at a seam the
    pelvis and several joints jump by up to 0.3 rad in one frame (a 9 rad/s blip of the wrist in the
    walk), which a double derivative turns into spikes no body makes. A transition is a seam when the
    root's or at least three joints' frame-to-frame turn is twice both neighbours' and 0.05 rad
    more; `joins` (where a loop's end meets its start) are seams whatever their size. Each channel's
    excess over the neighbours' mean step is then faded in smoothly (min-jerk), half before the seam and
    half after, over +-ramp_s, longer for a big jump (+0.5 s per rad of the largest joint jump, at most
    +-0.5 s), so the motion elsewhere is untouched.
    """
    poses = poses.copy()
    F = len(poses)

    def turns(q: int) -> np.ndarray:
        R = Rotation.from_quat(poses[:, [q + 1, q + 2, q + 3, q]])
        return (R[:-1].inv() * R[1:]).magnitude()

    steps = np.stack([turns(q) for q in _QUATS] + [np.abs(np.diff(poses[:, a])) for a in _ANGLES],
                     axis=1)  # (F-1, channels): root first
    seams = []
    for k in range(1, F - 2):
        neighbours = np.maximum(steps[k - 1], steps[k + 1])
        spike = (steps[k] > 2.0 * neighbours) & (steps[k] > neighbours + 0.05)
        if spike[0] or spike.sum() >= 3 or k in joins:
            seams.append(k)
    for k in seams:
        rot = slice(0, len(_QUATS))  # the rotation channels
        jump_rad = float(np.max(steps[k, rot] - 0.5 * (steps[k - 1, rot] + steps[k + 1, rot])))
        half = max(1, int(round(min(ramp_s + 0.5 * max(jump_rad, 0.0), 0.5) / dt)))
        m = np.arange(max(0, k - half), min(F, k + half + 1))  # the weight is 0 outside
        # share of the jump already applied at frame m: 0 well before, 0.5 at the seam, 1 well after
        share = np.clip((m - (k - half) + 0.5) / (2 * half + 1), 0.0, 1.0)
        share = share**3 * (10.0 - 15.0 * share + 6.0 * share * share)
        weight = np.where(m <= k, share, share - 1.0)  # frames after the seam take the jump back

        def excess(x):  # the jump beyond the mean of the neighbouring steps
            return (x[k + 1] - x[k]) - 0.5 * ((x[k] - x[k - 1]) + (x[k + 2] - x[k + 1]))

        poses[m, :3] += weight[:, None] * excess(poses[:, :3])
        for a in _ANGLES:
            poses[m, a] += weight * excess(poses[:, a])
        for q in _QUATS:
            cols = [q + 1, q + 2, q + 3, q]
            R = Rotation.from_quat(poses[k - 1:k + 3][:, cols])  # frames k-1 .. k+2
            before, after = (R[0].inv() * R[1]).as_rotvec(), (R[2].inv() * R[3]).as_rotvec()
            expected = R[1] * Rotation.from_rotvec(0.5 * (before + after))
            jump = (R[2] * expected.inv()).as_rotvec()  # in the parent's frame
            poses[np.ix_(m, cols)] = (Rotation.from_rotvec(weight[:, None] * jump)
                                      * Rotation.from_quat(poses[np.ix_(m, cols)])).as_quat()
    return poses, seams


@lru_cache(maxsize=64)
def _smooth_body(name: str, duration: float, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t, rotations, positions of a clip at fs, before impacts (cached read-only: clips repeat in training)."""
    frames = load_frames(name)
    t_native, poses = _span(frames, -_MARGIN_S - 0.3, duration + _MARGIN_S + 0.3)
    cycle = len(frames.t) - 1  # _span lays looping clips out cycle after cycle from a cycle start
    joins = [k for k in range(len(poses) - 1) if (k + 1) % cycle == 0] if frames.loop else []
    poses, _ = repair_seams(poses, float(np.median(np.diff(frames.t))), joins)
    R_native, p_native = _fk_deepmimic(poses)
    t = np.arange(-_MARGIN_S, duration + _MARGIN_S, 1.0 / fs)
    positions = CubicSpline(t_native, p_native, axis=0)(t)
    rotations = np.stack([RotationSpline(t_native, Rotation.from_matrix(R_native[:, j]))(t).as_matrix()
                          for j in range(len(JOINTS))], axis=1)  # fmt: skip
    # A zero-phase low-pass at the foot check's marker band: the clips' own noise would otherwise be
    # differentiated twice. Rotations are filtered element-wise and put back on SO(3).
    sos = butter(4, SMOOTH_HZ, fs=fs, output="sos")
    positions = sosfiltfilt(sos, positions, axis=0)
    U, _, Vt = np.linalg.svd(sosfiltfilt(sos, rotations, axis=0))
    rotations = U @ Vt  # the nearest rotation (a filtered rotation is close to one; no reflections arise)
    for array in (t, rotations, positions):
        array.setflags(write=False)
    return t, rotations, positions


def mocap_body(name: str, duration_s: float | None = None, fs: float = INTERNAL_RATE_HZ,
               subject: SubjectParams | None = None, impacts: bool = True,
               rng: np.random.Generator | None = None, phase: float = 0.0) -> BodyMotion:
    """The clip as the simulator's BodyMotion at fs, padded by _MARGIN_S both sides (t starts at -_MARGIN_S).

    duration_s: None = one cycle (the clip as recorded). impacts: add heel-strike jolts (foot_strikes).
    phase: where in its cycle a looping clip starts (fraction; ignored for clips that play once)."""
    frames = load_frames(name)
    duration = frames.t[-1] if duration_s is None else duration_s
    skip = int(round(phase * frames.t[-1] * fs)) if frames.loop else 0
    t, rotations, positions = _smooth_body(name, float(duration + (frames.t[-1] if frames.loop else 0.0)), float(fs))
    n = int(round((duration + 2 * _MARGIN_S) * fs))
    t, rotations, positions = t[:n], rotations[skip:skip + n], positions[skip:skip + n]
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
    random_phase: bool = True,
) -> Clip:
    """A DeepMimic clip seen by IMUs at `placements`, the same way simulate_clip records a procedural one.

    duration_s: None = the clip's own length (one cycle). random_phase: a looping clip starts anywhere
    in its cycle (one actor's clip repeats; where a window starts is what varies). The result is a
    `clip.Clip` whose activity is the clip's caption (e.g. "getting up from the floor") and whose
    descriptions paraphrase it.
    """
    body = mocap_body(name, duration_s, max(INTERNAL_RATE_HZ, 4.0 * rate_hz), impacts=impacts, rng=rng,
                      phase=float(rng.random()) if random_phase else 0.0)
    fs = 1.0 / (body.t[1] - body.t[0])
    duration = body.t[-1] + 1.0 / fs - _MARGIN_S  # body.t runs from -_MARGIN_S to duration + _MARGIN_S
    n_out = int(round(duration * rate_hz))
    t_out = np.arange(n_out) / rate_hz
    imu = record_devices(body, placements, fs, rate_hz, n_out, rng, rng, realism, random_mount)
    joints = np.stack([np.interp(t_out, body.t, body.positions[:, j, k]) for j in range(len(JOINTS))
                       for k in range(3)], axis=1).reshape(n_out, -1, 3)  # fmt: skip
    label, descriptions = caption(name)
    order = rng.permutation(len(descriptions) - 1) + 1
    return Clip(label, [descriptions[0], *[descriptions[i] for i in order[:4]]], rate_hz, t_out, imu,
                joints.astype(np.float32), body.subject)
