"""Exercises and other activities found in public HAR datasets (PAMAP2, MHEALTH, USC-HAD, DSADS,
WISDM): repetitions of a movement, jumps with arm patterns, riding an elevator, phone calls.

A repetition is a 0 -> 1 -> 0 progress signal (`_repetitions`) that scales a pose change, so the
tempo wanders and people pause between sets like real subjects do.
"""

from __future__ import annotations

import numpy as np

from models.simulator.body import J, SubjectParams
from models.simulator.locomotion import Gait, ballistic_bounce, gait_motion
from models.simulator.motion import (
    DEG, Impact, Motion, add_liveliness, bump, clear_arm, cycle_phase, episodes, face, foot_strike_gains, hold,
    about_deg, local_gains, lying, min_jerk, random_heading, set_arm, set_leg, set_trunk, sitting, standing,
)  # fmt: skip


def _repetitions(t, rng, rate_hz: float, rest_chance: float = 0.3) -> np.ndarray:
    """(T,) progress 0 -> 1 -> 0 once per repetition; sometimes a short rest between sets."""
    progress = 0.5 * (1 - np.cos(cycle_phase(t, rng, rate_hz, 0.06)))
    if rng.random() < rest_chance:
        progress *= episodes(t, rng, on_s=(4.0, 9.0), off_s=(1.0, 2.5), ramp_s=0.5, start_on=True)
    return progress


def _standing(t, subject, rng, scale: float = 1.0) -> Motion:
    return add_liveliness(hold(t, standing(subject, rng)), rng, scale=scale)


def squats(t, subject: SubjectParams, rng) -> Motion:
    """Knees bending: hips back and down, trunk leaning over the feet, arms forward for balance."""
    motion = _standing(t, subject, rng)
    depth = _repetitions(t, rng, rng.uniform(0.3, 0.6)) * rng.uniform(0.6, 1.0)
    offsets = subject.rest_offsets()
    thigh, shank = -offsets[J["left_knee"], 2], -offsets[J["left_ankle"], 2]
    hip, knee, pelvis_pitch = 95 * DEG * depth, 110 * DEG * depth, 35 * DEG * depth
    for side in ("left", "right"):
        set_leg(motion.local_angles, side, hip_flex=hip, knee_flex=knee, ankle_plantar=-(knee - hip + pelvis_pitch))
        set_arm(motion.local_angles, side, flex=about_deg(rng, 80) * depth)
    set_trunk(motion.local_angles, lean=10 * DEG * depth)
    motion.root_angles[:, 1] += pelvis_pitch
    # The pelvis sits where the folded legs put it (thigh and shank angles from the vertical).
    thigh_angle = hip - pelvis_pitch
    drop = thigh * (1 - np.cos(thigh_angle)) + shank * (1 - np.cos(knee - thigh_angle))
    motion.root_pos[:, 2] -= drop
    motion.root_pos[:, 0] -= thigh * np.sin(thigh_angle) - shank * np.sin(knee - thigh_angle)
    return face(motion, random_heading(rng))


def _hops(t, subject: SubjectParams, rng, hops_hz: float, stance_fraction: float,
          impact: float) -> tuple[Motion, np.ndarray]:
    """Standing body bouncing on both feet: ballistic flights, knees giving at each landing.
    Returns the motion and the hop count (T,), integer at each landing."""
    motion = _standing(t, subject, rng, scale=0.5)
    hops = cycle_phase(t, rng, hops_hz, 0.03) / (2 * np.pi)
    landing = bump(2 * np.pi * hops, 0.1, 8.0)  # knees give just after touch-down
    for side in ("left", "right"):
        set_leg(motion.local_angles, side, hip_flex=15 * DEG * landing, knee_flex=30 * DEG * landing,
                ankle_plantar=-10 * DEG * landing)
    motion.root_pos[:, 2] += ballistic_bounce(hops, hops_hz, stance_fraction)
    for n in np.arange(np.ceil(hops[0]), np.floor(hops[-1]) + 1):
        when = float(np.interp(n, hops, t))
        for foot in ("left", "right"):
            motion.impacts.append(Impact(when, 0.5 * impact * rng.uniform(0.7, 1.3), 0.015, foot_strike_gains(foot)))
    return motion, hops


def jumping_jacks(t, subject: SubjectParams, rng) -> Motion:
    """Star jumps: arms overhead and feet apart on one hop, back together on the next."""
    hops_hz = rng.uniform(1.0, 1.6)
    motion, hops = _hops(t, subject, rng, hops_hz, rng.uniform(0.45, 0.6), rng.uniform(8, 15))
    # Out on one hop, in on the next: arms swing overhead, legs apart.
    spread = 0.5 * (1 - np.cos(np.pi * hops))
    for side in ("left", "right"):
        set_leg(motion.local_angles, side, hip_abd=about_deg(rng, 18) * spread)
        set_arm(motion.local_angles, side, abd=about_deg(rng, 150, 0.1) * spread, elbow=about_deg(rng, 15))
    return face(motion, random_heading(rng))


def rope_jumping(t, subject: SubjectParams, rng) -> Motion:
    """Small quick hops; the hands turn the rope in small circles at the hop rate."""
    hops_hz = rng.uniform(1.8, 2.6)
    motion, hops = _hops(t, subject, rng, hops_hz, rng.uniform(0.5, 0.65), rng.uniform(8, 14))
    turn = 2 * np.pi * hops
    for side in ("left", "right"):
        set_arm(motion.local_angles, side, flex=about_deg(rng, 15) + 8 * DEG * np.sin(turn),
                abd=about_deg(rng, 20) + 8 * DEG * np.cos(turn), elbow=about_deg(rng, 80), pronation=about_deg(rng, 40))
    return face(motion, random_heading(rng))


def nordic_walking(t, subject: SubjectParams, rng) -> Motion:
    """Brisk walking with poles: long straight-arm swings, a pole plant jolting each hand."""
    cadence = subject.cadence_spm / 60.0 * rng.uniform(0.95, 1.1)
    motion = gait_motion(t, subject, rng, Gait(cadence, subject.walk_speed_mps * rng.uniform(1.05, 1.25),
                                               trunk_lean=about_deg(rng, 8, 0.4), arm_swing=about_deg(rng, 38),
                                               elbow_mean=about_deg(rng, 20), impact=rng.uniform(3.0, 5.5)))
    for strike in list(motion.impacts):  # the pole in the opposite hand lands with each heel
        hand = "right" if strike.gains[J["left_ankle"]] > strike.gains[J["right_ankle"]] else "left"
        motion.impacts.append(Impact(strike.time_s, rng.uniform(5, 12), 0.015, local_gains({f"{hand}_wrist": 1.0})))
    return motion


def _elevator(t, subject: SubjectParams, rng, up: bool) -> Motion:
    """Standing in a lift: ~1 m/s^2 to get going, a ride at 1-2.5 m/s, ~1 m/s^2 to stop."""
    motion = _standing(t, subject, rng, scale=0.6)
    speed, accel = rng.uniform(1.0, 2.5), rng.uniform(0.7, 1.3)
    ramp = speed / accel
    start = rng.uniform(t[0] + 1.0, t[0] + 3.0)
    stop = max(start + 2 * ramp, rng.uniform(t[-1] - 4.0, t[-1] - 1.0))
    velocity = speed * (min_jerk((t - start) / ramp) - min_jerk((t - stop) / ramp))
    motion.root_pos[:, 2] += (1 if up else -1) * np.cumsum(velocity * np.gradient(t))
    return face(motion, random_heading(rng))


def elevator_up(t, subject, rng) -> Motion:
    return _elevator(t, subject, rng, up=True)


def elevator_down(t, subject, rng) -> Motion:
    return _elevator(t, subject, rng, up=False)


def smoking(t, subject: SubjectParams, rng) -> Motion:
    """A cigarette held low with a bent elbow, brought to the lips every 8-20 s for 1-2 s."""
    motion = add_liveliness(hold(t, sitting(subject, rng) if rng.random() < 0.4 else standing(subject, rng)), rng)
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    puff = episodes(t, rng, on_s=(2.0, 3.5), off_s=(6.0, 18.0), ramp_s=rng.uniform(0.6, 0.9))
    set_arm(motion.local_angles, dom, flex=about_deg(rng, 15) + puff * about_deg(rng, 25),
            abd=about_deg(rng, 10) + puff * about_deg(rng, 15), rot=puff * about_deg(rng, 40),
            elbow=about_deg(rng, 75) + puff * about_deg(rng, 60), pronation=about_deg(rng, 20, 1.0))
    set_trunk(motion.local_angles, head_nod=-puff * about_deg(rng, 8, 0.5))
    return face(motion, random_heading(rng))


def phone_call(t, subject: SubjectParams, rng) -> Motion:
    """Phone at the ear; the free hand gestures now and then; some people pace while talking."""
    if rng.random() < 0.3:
        motion = gait_motion(t, subject, rng, Gait(subject.cadence_spm / 60.0 * 0.85, 0.6, arm_swing=8 * DEG,
                                                   impact=rng.uniform(2.0, 4.0), turn_chance=0.6))
    else:
        motion = add_liveliness(hold(t, sitting(subject, rng) if rng.random() < 0.4 else standing(subject, rng)), rng)
    dom, other = subject.limb("dominant"), subject.limb("other")
    clear_arm(motion.local_angles, dom)
    set_arm(motion.local_angles, dom, flex=about_deg(rng, 30), abd=about_deg(rng, 55), rot=about_deg(rng, 30),
            elbow=about_deg(rng, 140, 0.05), pronation=about_deg(rng, 30, 0.5))
    gesture = episodes(t, rng, on_s=(1.0, 3.0), off_s=(2.0, 6.0), ramp_s=0.4)
    set_arm(motion.local_angles, other, flex=gesture * about_deg(rng, 40), elbow=gesture * about_deg(rng, 60),
            pronation=gesture * about_deg(rng, 40))
    set_trunk(motion.local_angles, side_bend=about_deg(rng, 5, 0.8))
    return face(motion, random_heading(rng))


def sit_ups(t, subject: SubjectParams, rng) -> Motion:
    """On the back, knees bent, feet on the floor: the trunk curls up and lowers again."""
    motion = add_liveliness(hold(t, lying(subject, rng, how="back", surface_m=0.0)), rng, scale=0.5)
    motion.root_angles[:, 0] = 0.0
    curl = _repetitions(t, rng, rng.uniform(0.3, 0.6))
    for side in ("left", "right"):
        set_leg(motion.local_angles, side, hip_flex=about_deg(rng, 45) - 25 * DEG * curl, knee_flex=about_deg(rng, 90))
        set_arm(motion.local_angles, side, flex=about_deg(rng, 40, 0.5) * curl, elbow=about_deg(rng, 60, 0.5))
    motion.root_angles[:, 1] += 25 * DEG * curl  # the pelvis rolls up a little
    set_trunk(motion.local_angles, lean=about_deg(rng, 55, 0.2) * curl, head_nod=about_deg(rng, 20) * curl)
    return motion


def bending_forward(t, subject: SubjectParams, rng) -> Motion:
    """Waist bends: the trunk folds forward over straight legs and comes back up."""
    motion = _standing(t, subject, rng)
    bend = _repetitions(t, rng, rng.uniform(0.2, 0.4))
    pelvis = about_deg(rng, 40) * bend
    motion.root_angles[:, 1] += pelvis
    for side in ("left", "right"):
        set_leg(motion.local_angles, side, hip_flex=pelvis)  # thighs stay vertical
    set_trunk(motion.local_angles, lean=about_deg(rng, 40) * bend, head_nod=about_deg(rng, 10) * bend)
    return face(motion, random_heading(rng))


def arm_raises(t, subject: SubjectParams, rng) -> Motion:
    """Frontal elevation of both arms, straight, up to about overhead and down."""
    motion = _standing(t, subject, rng, scale=0.7)
    raise_ = _repetitions(t, rng, rng.uniform(0.25, 0.5))
    top = about_deg(rng, 150, 0.15)
    for side in ("left", "right"):
        clear_arm(motion.local_angles, side)
        set_arm(motion.local_angles, side, flex=top * raise_, abd=about_deg(rng, 8), elbow=about_deg(rng, 8))
    return face(motion, random_heading(rng))


def ironing(t, subject: SubjectParams, rng) -> Motion:
    """Standing at the board: the iron slides back and forth, the free hand smooths the cloth."""
    motion = _standing(t, subject, rng)
    dom, other = subject.limb("dominant"), subject.limb("other")
    for side in (dom, other):
        clear_arm(motion.local_angles, side)
    stroke = np.sin(cycle_phase(t, rng, rng.uniform(0.5, 1.0), 0.1))
    ironing_on = episodes(t, rng, on_s=(4.0, 9.0), off_s=(1.0, 2.5), ramp_s=0.6, start_on=True)
    set_arm(motion.local_angles, dom, flex=about_deg(rng, 40) + ironing_on * about_deg(rng, 12) * stroke,
            abd=about_deg(rng, 12), rot=about_deg(rng, 15),
            elbow=about_deg(rng, 80) - ironing_on * about_deg(rng, 20) * stroke,
            pronation=about_deg(rng, 85, 0.05))
    set_arm(motion.local_angles, other, flex=about_deg(rng, 35), abd=about_deg(rng, 10), rot=about_deg(rng, 30),
            elbow=about_deg(rng, 80), pronation=about_deg(rng, 85, 0.05))
    set_trunk(motion.local_angles, lean=about_deg(rng, 15, 0.4) + 3 * DEG * ironing_on * stroke,
              head_nod=about_deg(rng, 25, 0.3))
    return face(motion, random_heading(rng))


def rowing(t, subject: SubjectParams, rng) -> Motion:
    """On a rowing machine: a quick drive (legs, then back, then arms) and a slower recovery."""
    motion = Motion.still(t)
    phase = np.mod(cycle_phase(t, rng, rng.uniform(0.4, 0.6), 0.05) / (2 * np.pi), 1.0)
    drive = 0.45
    # 0 at the catch (folded), 1 at the finish (legs straight, leaning back, hands at the chest).
    stroke = np.where(phase < drive, min_jerk(phase / drive), 1 - min_jerk((phase - drive) / (1 - drive)))
    legs, back, arms = min_jerk(stroke / 0.7), min_jerk((stroke - 0.2) / 0.6), min_jerk((stroke - 0.5) / 0.5)
    for side in ("left", "right"):
        set_leg(motion.local_angles, side, hip_flex=(110 - 100 * legs) * DEG, knee_flex=(130 - 125 * legs) * DEG,
                ankle_plantar=-(30 - 35 * legs) * DEG)
        set_arm(motion.local_angles, side, flex=(80 - 70 * arms) * DEG, abd=10 * DEG, elbow=110 * DEG * arms,
                pronation=80 * DEG)
    motion.root_angles[:, 1] = (25 - 45 * back) * DEG  # leaning forward at the catch, back at the finish
    offsets = subject.rest_offsets()
    leg = -(offsets[J["left_knee"], 2] + offsets[J["left_ankle"], 2])
    motion.root_pos[:, 0] = 0.6 * leg * stroke  # the seat slides along the rail
    motion.root_pos[:, 2] = 0.35 + 0.08 * subject.height_m
    return face(motion, random_heading(rng))


def dribbling(t, subject: SubjectParams, rng) -> Motion:
    """Bouncing a basketball: the hand pushes down and meets the ball coming back, knees bent."""
    if rng.random() < 0.5:
        motion = gait_motion(t, subject, rng, Gait(subject.cadence_spm / 60.0, 0.8, arm_swing=10 * DEG,
                                                   impact=rng.uniform(2.5, 5.0), knee_loading=25 * DEG))
    else:
        motion = _standing(t, subject, rng)
        for side in ("left", "right"):
            set_leg(motion.local_angles, side, hip_flex=about_deg(rng, 20), knee_flex=about_deg(rng, 30))
        motion.root_pos[:, 2] -= 0.05 * subject.height_m
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    bounce = cycle_phase(t, rng, rng.uniform(1.5, 2.5), 0.05)
    push = 0.5 * (1 + np.sin(bounce))
    set_arm(motion.local_angles, dom, flex=about_deg(rng, 30) + 10 * DEG * push, abd=about_deg(rng, 20),
            elbow=about_deg(rng, 70) - 30 * DEG * push, pronation=about_deg(rng, 80, 0.1))
    catches = np.flatnonzero(np.diff(np.floor((bounce - np.pi / 2) / (2 * np.pi))) > 0)
    motion.impacts += [Impact(float(t[k]), rng.uniform(5, 12), 0.012, local_gains({f"{dom}_wrist": 1.0}),
                              np.array([0.0, 0.0, 1.0])) for k in catches]  # the ball pushes the hand up
    return face(motion, random_heading(rng))

