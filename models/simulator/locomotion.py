"""Phase-based gait: walking, running, stairs, jumping. One stride = left heel strike to the next.

Joint curves follow the shape of normal gait data (hip flexion peaks at heel strike; the knee
bends a little in loading response and a lot in swing; the ankle plantarflexes at push-off);
the pelvis bobs twice per stride (lowest in double support), sways over the stance leg, tilts
and rotates; arms swing against the legs. Stairs add a per-step rise or fall of the pelvis with
a velocity profile of their own; running adds a flight phase (ballistic pelvis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.simulator.body import J, N_JOINTS, SubjectParams, euler_to_matrix
from models.simulator.imu import GRAVITY
from models.simulator.motion import (
    DEG, Impact, Motion, bump, cycle_phase, foot_strike_gains, min_jerk, set_arm, set_leg, set_trunk, smooth_noise,
)  # fmt: skip


@dataclass
class Gait:
    cadence_hz: float  # steps per second
    speed_mps: float
    hip_mean: float = 10 * DEG
    knee_loading: float = 15 * DEG  # knee bend just after heel strike
    knee_loading_kappa: float = 3.5  # narrowness of that bend
    knee_swing: float = 55 * DEG
    knee_swing_center: float = 0.68  # cycle fraction of peak swing flexion
    knee_swing_kappa: float = 2.5  # narrowness of the swing flexion bump
    ankle_scale: float = 1.0
    trunk_lean: float = 3 * DEG
    arm_swing: float = 15 * DEG
    elbow_mean: float = 15 * DEG
    speed_swing: float = 0.15  # in-stride speed modulation, relative
    sway_m: float = 0.03  # side-to-side pelvis shift over the stance leg
    pelvis_scale: float = 1.0  # pelvis tilt, obliquity and rotation ranges, relative
    bounce_m: float = 0.022  # half the vertical excursion of the pelvis (walking)
    climb_m: float = 0.0  # rise per step: > 0 up stairs, < 0 down stairs
    stance_fraction: float | None = None  # running: share of a step on the ground
    impact: float = 4.0  # m/s^2 at the pelvis per foot strike
    impact_width_s: float = 0.018
    in_place: bool = False  # both feet together (jumping)
    turn_chance: float = 0.0  # probability of one U-turn in the clip


def _harmonics(phase: np.ndarray, rng: np.random.Generator, strength: float = 0.35) -> np.ndarray:
    """2nd and 3rd harmonics of a rhythm with random amplitudes and phases (a personal signature)."""
    amps = rng.uniform(0, strength, 2)
    phases = rng.uniform(0, 2 * np.pi, 2)
    return amps[0] * np.sin(2 * phase + phases[0]) + amps[1] * np.sin(3 * phase + phases[1])


def ballistic_bounce(step_phase: np.ndarray, step_hz: float, stance_fraction: float) -> np.ndarray:
    """Pelvis height (m, relative) for running/hopping: a spring-like dip in stance, a parabola in flight.

    step_phase counts steps (0 = touch-down). C1-continuous: the landing velocity of the flight
    equals the velocity the stance dip starts with.
    """
    s = np.mod(step_phase, 1.0)
    stance_s, flight_s = stance_fraction / step_hz, (1 - stance_fraction) / step_hz
    v0 = GRAVITY * flight_s / 2.0  # take-off speed for this flight time
    depth = v0 * stance_s / np.pi
    in_stance = s < stance_fraction
    tau = np.where(in_stance, s, s - stance_fraction) / step_hz
    return np.where(in_stance, -depth * np.sin(np.pi * tau / stance_s), v0 * tau - 0.5 * GRAVITY * tau**2)


def _plant_feet(t, legs: dict, root: np.ndarray, root_angles: np.ndarray, heading: np.ndarray, steps: np.ndarray,
                stance_s: float, offsets: np.ndarray) -> dict:
    """Re-solve each stance leg by two-link inverse kinematics so the foot stays where it landed.

    The phase-based joint curves place the foot at heel strike; from then until toe-off the hip
    and knee follow the pelvis over that fixed point (sagittal plane of the heading) with the foot
    flat, then hand back to the curves for swing. Without this the stance foot would slide.
    """
    thigh, shank = -offsets[J["left_knee"], 2], -offsets[J["left_ankle"], 2]
    pitch = root_angles[:, 1]
    forward = np.stack([np.cos(heading), np.sin(heading)], axis=1)  # (T, 2)
    root_R = euler_to_matrix(root_angles)  # (T, 3, 3)
    planted = {}
    for side, parity in (("left", 0), ("right", 1)):
        hip, knee, ankle = legs[side]
        hip_joint = root + root_R @ offsets[J[f"{side}_hip"]]  # (T, 3)
        thigh_angle, shank_angle = hip - pitch, knee - (hip - pitch)  # from the vertical, forward +
        foot = hip_joint.copy()  # where the curves put the ankle
        foot[:, :2] += forward * (thigh * np.sin(thigh_angle) - shank * np.sin(shank_angle))[:, None]
        foot[:, 2] -= thigh * np.cos(thigh_angle) + shank * np.cos(shank_angle)

        target, weight = foot.copy(), np.zeros(len(t))
        for n in np.arange(np.ceil(steps[0]), np.floor(steps[-1]) + 1):
            if int(n) % 2 != parity:
                continue
            strike = int(np.searchsorted(t, np.interp(n, steps, t)))
            stance = (t >= t[strike]) & (t < t[strike] + stance_s)
            target[stance] = foot[strike]
            ramp = min_jerk((t - t[strike]) / 0.12) * (1 - min_jerk((t - (t[strike] + stance_s - 0.3)) / 0.3))
            weight = np.maximum(weight, np.where(stance, ramp, 0.0))

        reach = target - hip_joint
        ahead, down = (reach[:, :2] * forward).sum(axis=1), -reach[:, 2]
        span = np.clip(np.hypot(ahead, down), 0.3 * (thigh + shank), 0.999 * (thigh + shank))
        knee_ik = np.pi - np.arccos(np.clip((thigh**2 + shank**2 - span**2) / (2 * thigh * shank), -1, 1))
        thigh_ik = np.arctan2(ahead, down) + np.arccos(
            np.clip((thigh**2 + span**2 - shank**2) / (2 * thigh * span), -1, 1))
        hip_ik = thigh_ik + pitch
        flat = hip_ik - knee_ik - pitch  # ankle angle that keeps the sole on the ground
        planted[side] = tuple(weight * ik + (1 - weight) * curve
                              for ik, curve in ((hip_ik, hip), (knee_ik, knee), (flat, ankle)))
    return planted


def gait_motion(t: np.ndarray, subject: SubjectParams, rng: np.random.Generator, gait: Gait) -> Motion:
    T = len(t)
    amp = subject.amplitude * rng.uniform(0.9, 1.1)
    noise = subject.style_noise
    stride = cycle_phase(t, rng, gait.cadence_hz / 2.0, 0.03 * noise)  # rad, left heel strike at 0 mod 2 pi
    a = np.zeros((T, N_JOINTS, 3))

    # Hip range set by step length, so the feet roughly keep pace with the pelvis.
    offsets = subject.rest_offsets()
    thigh, shank = -offsets[J["left_knee"], 2], -offsets[J["left_ankle"], 2]
    step_len = gait.speed_mps / gait.cadence_hz
    hip_amp = np.arcsin(np.clip(step_len / (2 * (thigh + shank) * np.cos(gait.hip_mean)), 0, 0.9))
    # In running part of the step is flight, so the legs sweep less than the step length suggests.
    widest = 35 * DEG if gait.stance_fraction is None else 25 * DEG
    hip_amp = 0.0 if gait.in_place else float(np.clip(hip_amp, 8 * DEG, widest))
    knee_jitter = 1.0 + smooth_noise(t, rng, 0.05 * noise, 0.5)
    # Each person's pelvis moves with their own mix of harmonics (sharper drops, asymmetries).
    pelvis_roll = gait.pelvis_scale * 5 * DEG * amp * (np.sin(stride) + _harmonics(stride, rng))
    pelvis_yaw = np.zeros(T) if gait.in_place else (
        -gait.pelvis_scale * 6 * DEG * amp * (np.cos(stride) + _harmonics(stride, rng)))
    pelvis_pitch = (4 * DEG + 0.3 * gait.trunk_lean
                    + gait.pelvis_scale * 2.5 * DEG * (np.cos(2 * stride) + _harmonics(2 * stride, rng)))
    legs = {}  # side -> (hip flexion, knee flexion, ankle plantarflexion), each (T,)
    for side, ph in (("left", stride), ("right", stride + (0.0 if gait.in_place else np.pi))):
        hip = gait.hip_mean + hip_amp * np.cos(ph + 0.25)  # peaks in late swing, the foot slowing to land
        knee = (3 * DEG + gait.knee_loading * bump(ph, 0.15, gait.knee_loading_kappa)
                + gait.knee_swing * bump(ph, gait.knee_swing_center, gait.knee_swing_kappa)) * knee_jitter
        ankle = gait.ankle_scale * DEG * (5 * bump(ph, 0.07, 12) - 10 * bump(ph, 0.42, 6) + 18 * bump(ph, 0.62, 10))
        legs[side] = (hip, knee, ankle)
        set_leg(a, side, hip_abd=3 * DEG + 2 * DEG * np.sin(ph))
        arm_ph = ph if gait.in_place else ph + np.pi  # arms swing against the legs
        swing = gait.arm_swing * amp * np.cos(arm_ph)
        set_arm(a, side, flex=3 * DEG + swing, abd=6 * DEG, elbow=gait.elbow_mean + 0.5 * np.abs(swing) + 0.3 * swing)

    # Trunk: the thorax counter-rotates; the spine cancels the pelvis roll; the head keeps the gaze level.
    set_trunk(a, lean=gait.trunk_lean - pelvis_pitch + smooth_noise(t, rng, 1.5 * DEG, 0.5),
              side_bend=pelvis_roll, twist=-pelvis_yaw + 3 * DEG * amp * np.cos(stride),
              head_nod=-0.4 * gait.trunk_lean + smooth_noise(t, rng, 3 * DEG, 0.5),
              head_turn=smooth_noise(t, rng, 8 * DEG, 0.3))

    # Root path: heading drifts slowly; speed surges in double support, slows over the stance leg
    # (kinetic and potential energy trade, as in an inverted pendulum).
    heading = rng.uniform(-np.pi, np.pi) + smooth_noise(t, rng, 0.25, 0.08)
    if rng.random() < gait.turn_chance:  # the end of a corridor, a stair landing: turn around
        turn_at, turn_s = rng.uniform(t[0], t[-1]), rng.uniform(2.0, 3.5)
        heading = heading + rng.choice([-1.0, 1.0]) * np.pi * min_jerk((t - turn_at) / turn_s)
    speed = gait.speed_mps * (1.0 + gait.speed_swing * np.cos(2 * stride))
    dt = np.gradient(t)
    root = np.zeros((T, 3))
    root[:, 0] = np.cumsum(speed * np.cos(heading) * dt)
    root[:, 1] = np.cumsum(speed * np.sin(heading) * dt)
    # Side to side over the stance leg.
    sway = np.zeros(T) if gait.in_place else gait.sway_m * amp * (np.sin(stride) + _harmonics(stride, rng))
    root[:, 0] += -np.sin(heading) * sway
    root[:, 1] += np.cos(heading) * sway

    steps = stride / (2 * np.pi) * (1 if gait.in_place else 2)  # steps (hops) taken; integer = landing
    whole, frac = np.floor(steps), np.mod(steps, 1.0)
    if gait.stance_fraction is not None:
        bounce = ballistic_bounce(steps, gait.cadence_hz / (2 if gait.in_place else 1), gait.stance_fraction)
    else:  # lowest in double support, highest over the stance leg
        bounce = -gait.bounce_m * amp * np.cos(2 * np.pi * frac)
    if gait.climb_m > 0:  # up: the body is lifted mostly in mid-step
        climb = gait.climb_m * (whole + frac - np.sin(2 * np.pi * frac) / (2 * np.pi))
    elif gait.climb_m < 0:  # down: lowered, then a late drop onto the lower step stopped at foot contact
        climb = gait.climb_m * (whole + 0.5 * min_jerk(frac) + 0.5 * (5 * frac**4 - 4 * frac**5))
    else:
        climb = 0.0
    root[:, 2] = subject.standing_pelvis_height() * np.cos(gait.hip_mean) + bounce + climb

    root_angles = np.stack([pelvis_roll, pelvis_pitch, heading + pelvis_yaw], axis=1)
    if not gait.in_place:
        stance_s = (0.62 * 2 if gait.stance_fraction is None else gait.stance_fraction) / gait.cadence_hz
        legs = _plant_feet(t, legs, root, root_angles, heading, steps, stance_s, offsets)
    for side, (hip, knee, ankle) in legs.items():
        set_leg(a, side, hip_flex=hip, knee_flex=knee, ankle_plantar=ankle)
    motion = Motion(t, a, root_angles, root)
    for n in np.arange(np.ceil(steps[0]), np.floor(steps[-1]) + 1):
        when = float(np.interp(n, steps, t))
        strength = gait.impact * rng.uniform(0.7, 1.3) * amp
        if gait.in_place:
            for foot in ("left", "right"):
                motion.impacts.append(Impact(when, 0.5 * strength, gait.impact_width_s, foot_strike_gains(foot)))
        else:
            # A heel strike pushes up and brakes the body: the jolt points up and backwards.
            facing = float(np.interp(when, t, heading))
            jolt = np.array([-0.35 * np.cos(facing), -0.35 * np.sin(facing), 1.0])
            side = "left" if int(n) % 2 == 0 else "right"
            motion.impacts.append(Impact(when, strength, gait.impact_width_s, foot_strike_gains(side),
                                         jolt / np.linalg.norm(jolt)))
    return motion


def walking(t, subject: SubjectParams, rng) -> Motion:
    cadence = subject.cadence_spm / 60.0 * rng.uniform(0.95, 1.05)
    speed = subject.walk_speed_mps * rng.uniform(0.9, 1.1)
    # Some walk with hands in pockets, or carry a phone or a cup: the arms barely swing.
    if rng.random() < 0.8:
        arm_swing, elbow = rng.uniform(8, 22) * DEG, rng.uniform(10, 40) * DEG
    else:
        arm_swing, elbow = rng.uniform(0, 4) * DEG, rng.uniform(20, 95) * DEG
    return gait_motion(t, subject, rng, Gait(
        cadence, speed, trunk_lean=rng.uniform(0, 6) * DEG, arm_swing=arm_swing, elbow_mean=elbow,
        impact=rng.uniform(2.5, 5.0), turn_chance=0.3))


def walking_upstairs(t, subject: SubjectParams, rng) -> Motion:
    """Slower cadence, more forward lean, knees high, the pelvis lifted every step."""
    cadence = subject.cadence_spm / 60.0 * rng.uniform(0.78, 0.92)
    return gait_motion(t, subject, rng, Gait(
        cadence, rng.uniform(0.25, 0.32) * cadence, hip_mean=35 * DEG, knee_loading=45 * DEG,
        knee_swing=75 * DEG, knee_swing_center=0.68, ankle_scale=0.6, trunk_lean=rng.uniform(8, 18) * DEG,
        arm_swing=rng.uniform(4, 12) * DEG, elbow_mean=20 * DEG, bounce_m=0.022, speed_swing=0.6, sway_m=0.045,
        pelvis_scale=1.3, climb_m=rng.uniform(0.15, 0.19), impact=rng.uniform(2.5, 5.0), impact_width_s=0.02,
        turn_chance=0.1))


def walking_downstairs(t, subject: SubjectParams, rng) -> Motion:
    """Quicker steps, upright trunk, a drop onto each lower step with a sharp landing."""
    cadence = subject.cadence_spm / 60.0 * rng.uniform(0.98, 1.12)
    return gait_motion(t, subject, rng, Gait(
        cadence, rng.uniform(0.25, 0.32) * cadence, hip_mean=20 * DEG, knee_loading=40 * DEG,
        knee_swing=70 * DEG, knee_swing_center=0.7, ankle_scale=1.2, trunk_lean=rng.uniform(-3, 5) * DEG,
        arm_swing=rng.uniform(6, 16) * DEG, elbow_mean=20 * DEG, bounce_m=0.01, speed_swing=0.25, sway_m=0.03,
        pelvis_scale=1.1, climb_m=-rng.uniform(0.15, 0.19), impact=rng.uniform(4.0, 7.0), impact_width_s=0.012,
        turn_chance=0.1))


def running(t, subject: SubjectParams, rng) -> Motion:
    cadence = rng.uniform(2.5, 3.0)
    return gait_motion(t, subject, rng, Gait(
        cadence, rng.uniform(2.3, 4.0) * subject.height_m / 1.72, hip_mean=20 * DEG, knee_loading=25 * DEG,
        knee_swing=85 * DEG, knee_swing_center=0.65, knee_swing_kappa=1.5, ankle_scale=1.4,
        trunk_lean=rng.uniform(5, 12) * DEG,
        arm_swing=rng.uniform(30, 45) * DEG, elbow_mean=rng.uniform(75, 95) * DEG,
        stance_fraction=rng.uniform(0.33, 0.42), impact=rng.uniform(8.0, 14.0), impact_width_s=0.014, turn_chance=0.2))


def jumping(t, subject: SubjectParams, rng) -> Motion:
    """Hopping on the spot with both feet, arms swinging up in flight."""
    hops_hz = rng.uniform(1.5, 2.2)
    return gait_motion(t, subject, rng, Gait(
        2 * hops_hz, 0.0, hip_mean=15 * DEG, knee_loading=25 * DEG, knee_loading_kappa=1.5, knee_swing=10 * DEG,
        ankle_scale=1.5,
        trunk_lean=rng.uniform(0, 10) * DEG, arm_swing=rng.uniform(10, 25) * DEG, elbow_mean=30 * DEG,
        stance_fraction=rng.uniform(0.4, 0.55), impact=rng.uniform(10.0, 18.0), impact_width_s=0.015,
        in_place=True))
