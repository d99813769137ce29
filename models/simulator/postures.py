"""Static postures with a living body's small motion, posture transitions, and falls."""

from __future__ import annotations

import numpy as np

from models.simulator.body import JOINTS, SubjectParams
from models.simulator.motion import (
    DEG, Impact, Motion, Posture, add_liveliness, face, hold, local_gains, lying, min_jerk, random_heading, set_arm,
    set_leg, set_trunk, sitting, smooth_noise, standing, through_postures,
)  # fmt: skip


def standing_still(t, subject: SubjectParams, rng) -> Motion:
    motion = add_liveliness(hold(t, standing(subject, rng)), rng, scale=rng.uniform(1.0, 2.5))
    return face(motion, random_heading(rng))


def sitting_still(t, subject: SubjectParams, rng) -> Motion:
    return face(add_liveliness(hold(t, sitting(subject, rng)), rng, scale=rng.uniform(0.8, 2.0)), random_heading(rng))


def lying_still(t, subject: SubjectParams, rng) -> Motion:
    return add_liveliness(hold(t, lying(subject, rng)), rng, scale=rng.uniform(0.6, 1.8))


# Transitions ---------------------------------------------------------------------------------


def _leaning_forward(subject: SubjectParams, rng, seated: Posture) -> Posture:
    """Seat-off: trunk and pelvis pitched forward over the feet, weight about to leave the chair."""
    lean = Posture(seated.angles.copy(), seated.root_angles.copy(), seated.root_pos.copy())
    lean.root_angles[1] = rng.uniform(10, 25) * DEG
    set_trunk(lean.angles, lean=rng.uniform(8, 15) * DEG)
    for side in ("left", "right"):
        set_leg(lean.angles, side, hip_flex=lean.root_angles[1] - seated.root_angles[1])
    lean.root_pos = seated.root_pos + np.array([0.06, 0.0, 0.01]) * subject.height_m
    return lean


def _reclined(seated: Posture, lying_pose: Posture) -> Posture:
    """Halfway between sitting on a bed edge and lying: leaning back, legs coming up."""
    mid = Posture(0.5 * (seated.angles + lying_pose.angles), 0.5 * (seated.root_angles + lying_pose.root_angles),
                  0.5 * (seated.root_pos + lying_pose.root_pos))
    mid.root_pos[2] = seated.root_pos[2] + 0.02
    return mid


def _sit_stand_chain(subject: SubjectParams, rng) -> list[Posture]:
    """sitting -> leaning forward -> standing, with the pelvis ending over the feet."""
    seated = sitting(subject, rng)
    upright = standing(subject, rng)
    upright.root_pos[0] = seated.root_pos[0] + rng.uniform(0.1, 0.16) * subject.height_m
    return [seated, _leaning_forward(subject, rng, seated), upright]


def _sit_lie_chain(subject: SubjectParams, rng) -> list[Posture]:
    """sitting on a bed edge -> reclining while swinging the legs up -> lying on the bed."""
    bed = rng.uniform(0.42, 0.6)
    seated = sitting(subject, rng, seat_m=bed)
    lying_pose = lying(subject, rng, how=str(rng.choice(["back", "back", "left side", "right side"])), surface_m=bed)
    # Swing round a quarter turn onto the bed; the pelvis slides back onto the mattress.
    lying_pose.root_angles[2] = rng.choice([-1.0, 1.0]) * rng.uniform(70, 100) * DEG
    lying_pose.root_pos[:2] = rng.normal(0, 0.05, 2) - np.array([0.15, 0.0])
    return [seated, _reclined(seated, lying_pose), lying_pose]


def _transition(t, subject: SubjectParams, rng, chain: list[Posture]) -> Motion:
    """Hold the first posture, move through the chain (0.5-1.2 s per leg), hold the last.

    Real transitions are not clean: the trunk wobbles, hands push on knees and armrests, and
    the body lands on the seat or mattress with a jolt.
    """
    legs = rng.uniform(0.5, 1.2, len(chain) - 1) / np.sqrt(subject.amplitude)
    # Keep the whole transition in view: t runs a second past the clip at both ends.
    start = rng.uniform(t[0] + 1.2, max(t[0] + 1.3, t[-1] - legs.sum() - 1.2))
    times = list(start + np.concatenate([[0.0], np.cumsum(legs)]))
    motion = through_postures(t, times, chain)

    effort = min_jerk((t - start + 0.2) / 0.3) * (1 - min_jerk((t - times[-1]) / 0.3))
    set_trunk(motion.local_angles, lean=effort * smooth_noise(t, rng, 4 * DEG, 2.5),
              side_bend=effort * smooth_noise(t, rng, 3 * DEG, 2.5), twist=effort * smooth_noise(t, rng, 5 * DEG, 2.0))
    for side in ("left", "right"):
        set_arm(motion.local_angles, side, flex=effort * smooth_noise(t, rng, 6 * DEG, 1.5),
                abd=effort * smooth_noise(t, rng, 4 * DEG, 1.5), elbow=effort * smooth_noise(t, rng, 6 * DEG, 1.5))
    for axis in range(3):
        motion.root_angles[:, axis] += effort * smooth_noise(t, rng, 2 * DEG, 2.0)
    for k in range(1, len(chain)):
        if chain[k].root_pos[2] < chain[k - 1].root_pos[2] - 0.05:  # sat or lay down: contact jolt
            motion.impacts.append(Impact(times[k] - rng.uniform(0.1, 0.3) * legs[k - 1], rng.uniform(3, 10), 0.03,
                                         local_gains({name: 1.0 for name in JOINTS})))
    return face(add_liveliness(motion, rng, scale=rng.uniform(0.7, 1.5)), random_heading(rng))


def sit_to_stand(t, subject, rng) -> Motion:
    return _transition(t, subject, rng, _sit_stand_chain(subject, rng))


def stand_to_sit(t, subject, rng) -> Motion:
    return _transition(t, subject, rng, _sit_stand_chain(subject, rng)[::-1])


def sit_to_lie(t, subject, rng) -> Motion:
    return _transition(t, subject, rng, _sit_lie_chain(subject, rng))


def lie_to_sit(t, subject, rng) -> Motion:
    return _transition(t, subject, rng, _sit_lie_chain(subject, rng)[::-1])


def stand_to_lie(t, subject, rng) -> Motion:
    sit_lie = _sit_lie_chain(subject, rng)
    stand_sit = _sit_stand_chain(subject, rng)[::-1]
    stand_sit[-1] = sit_lie[0]  # sit down on the bed itself
    stand_sit[0].root_pos[0] = sit_lie[0].root_pos[0] + 0.13 * subject.height_m
    stand_sit[1] = _leaning_forward(subject, rng, sit_lie[0])
    return _transition(t, subject, rng, stand_sit + sit_lie[1:])


def lie_to_stand(t, subject, rng) -> Motion:
    sit_lie = _sit_lie_chain(subject, rng)
    stand_sit = _sit_stand_chain(subject, rng)[::-1]
    stand_sit[0].root_pos[0] = sit_lie[0].root_pos[0] + 0.13 * subject.height_m
    stand_sit[1] = _leaning_forward(subject, rng, sit_lie[0])
    return _transition(t, subject, rng, (stand_sit[:2] + sit_lie)[::-1])


# Falls ---------------------------------------------------------------------------------------


def fall_progress(t: np.ndarray, start: float, fall_s: float, stop_s: float) -> np.ndarray:
    """0 -> 1: accelerating topple (velocity grows linearly, like a falling stick's start), then a
    short hard stop at the ground over stop_s."""
    tau = t - start
    velocity = np.where(tau < fall_s, np.clip(tau / fall_s, 0, None), 0.0)
    stopping = (tau >= fall_s) & (tau < fall_s + stop_s)
    velocity = np.where(stopping, 0.5 * (1 + np.cos(np.pi * (tau - fall_s) / stop_s)), velocity)
    progress = np.cumsum(velocity * np.gradient(t))
    return progress / progress[-1]


def falling(t, subject: SubjectParams, rng) -> Motion:
    """Standing (or stepping), losing balance, toppling to the floor in under a second, lying there."""
    direction = str(rng.choice(["forward", "backward", "left", "right"]))
    how = {"forward": "front", "backward": "back", "left": "left side", "right": "right side"}[direction]
    upright = standing(subject, rng)
    down = lying(subject, rng, how=how, surface_m=0.0)
    down.root_angles[2] = rng.normal(0, 20) * DEG  # land roughly in the direction of the fall
    reach = subject.height_m * rng.uniform(0.2, 0.4)
    down.root_pos[:2] = {"forward": (reach, 0.0), "backward": (-reach, 0.0), "left": (0.0, reach),
                         "right": (0.0, -reach)}[direction]
    # Arms fling out to break the fall.
    for side in ("left", "right"):
        set_arm(down.angles, side, flex=rng.uniform(30, 120) * DEG, abd=rng.uniform(10, 60) * DEG,
                elbow=rng.uniform(10, 60) * DEG)

    fall_s, stop_s = rng.uniform(0.45, 0.8), rng.uniform(0.05, 0.09)
    start = rng.uniform(t[0] + 1.2, max(t[0] + 1.3, 0.5 * (t[0] + t[-1])))
    u = fall_progress(t, start, fall_s, stop_s)
    a0, a1 = upright.stacked(), down.stacked()
    limbs = min_jerk((t - start) / (fall_s + 0.3))[:, None]  # limbs move on their own (reflex) timing
    track = a0 + u[:, None] * (a1 - a0)
    n = len(JOINTS) * 3
    track[:, :n] = a0[:n] + limbs * (a1[:n] - a0[:n])
    motion = Motion(t, track[:, :n].reshape(len(t), -1, 3), track[:, n:n + 3], track[:, n + 3:])
    motion.impacts.append(Impact(start + fall_s + 0.5 * stop_s, rng.uniform(15, 35), 0.02,
                                 local_gains({name: 1.0 for name in JOINTS}),
                                 direction=np.array([0.0, 0.0, 1.0])))
    # Stunned, then small movements on the floor.
    add_liveliness(motion, rng, scale=rng.uniform(0.3, 0.8))
    return face(motion, random_heading(rng))
