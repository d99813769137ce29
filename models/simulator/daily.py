"""Daily-living, household and sports activities: a base posture plus arm and trunk movements.

Hand activities are built as bouts of a movement (the `episodes` envelope) between rests, with
the movement's own rhythm inside a bout (stirring ~1 Hz, brushing ~4 Hz, clapping ~3 Hz).
"""

from __future__ import annotations

import numpy as np

from models.simulator.body import J, N_JOINTS, SubjectParams
from models.simulator.locomotion import Gait, gait_motion
from models.simulator.motion import (
    DEG, Impact, Motion, add_liveliness, clear_arm, cycle_phase, episodes, face, hold, about_deg, keyframes,
    local_gains, min_jerk, random_heading, set_arm, set_leg, set_trunk, sitting, smooth_noise, standing,
)  # fmt: skip


def _settled(t, subject, rng, seated: bool, scale: float = 1.0) -> Motion:
    posture = sitting(subject, rng) if seated else standing(subject, rng)
    return add_liveliness(hold(t, posture), rng, scale=scale * rng.uniform(0.7, 1.3))


def _taps(t, rng, rate_hz: float, peak: tuple[float, float], joints: dict[str, float], direction) -> list[Impact]:
    """Random light impacts (key presses, knife on a board) at about rate_hz."""
    n = rng.poisson(rate_hz * (t[-1] - t[0]))
    return [Impact(float(when), rng.uniform(*peak), 0.01, local_gains(joints), np.asarray(direction, float))
            for when in rng.uniform(t[0], t[-1], n)]


def cycling(t, subject: SubjectParams, rng) -> Motion:
    """Seated on a bicycle: legs follow the pedals (two-link inverse kinematics), hands on the bars."""
    motion = Motion.still(t)
    crank = cycle_phase(t, rng, rng.uniform(0.9, 1.6), 0.04)
    offsets = subject.rest_offsets()
    thigh, shank = -offsets[J["left_knee"], 2], -offsets[J["left_ankle"], 2]
    leg = thigh + shank
    crank_r = 0.17
    # Bottom bracket ahead of and below the hip, set so the leg is nearly straight at the bottom.
    bb_x = rng.uniform(0.1, 0.25) * leg
    bb_z = -np.sqrt((rng.uniform(0.9, 0.97) * leg) ** 2 - (bb_x - 0.05) ** 2) + crank_r - 0.07
    lean = rng.uniform(15, 45) * DEG
    pelvis_pitch = 0.5 * lean
    for side, phase in (("left", crank), ("right", crank + np.pi)):
        ankle_x = bb_x + crank_r * np.sin(phase) - 0.05
        ankle_z = bb_z + crank_r * np.cos(phase) + 0.07
        reach = np.clip(np.hypot(ankle_x, ankle_z), 0.3 * leg, 0.999 * leg)
        knee = np.pi - np.arccos((thigh**2 + shank**2 - reach**2) / (2 * thigh * shank))
        thigh_fwd = np.arctan2(ankle_x, -ankle_z) + np.arccos((thigh**2 + reach**2 - shank**2) / (2 * thigh * reach))
        hip_flex = thigh_fwd + pelvis_pitch
        # Foot kept about level, with some ankling through the stroke.
        ankle = -(pelvis_pitch - hip_flex + knee) + 10 * DEG * np.sin(phase)
        set_leg(motion.local_angles, side, hip_flex=hip_flex, hip_abd=3 * DEG, knee_flex=knee, ankle_plantar=ankle)
        set_arm(motion.local_angles, side, flex=90 * DEG - 0.7 * lean, abd=8 * DEG, elbow=about_deg(rng, 25, 0.4),
                pronation=80 * DEG)
    set_trunk(motion.local_angles, lean=lean - pelvis_pitch, head_nod=-0.6 * lean + smooth_noise(t, rng, 3 * DEG, 0.4),
              head_turn=smooth_noise(t, rng, 8 * DEG, 0.3))
    heading = smooth_noise(t, rng, 0.2, 0.05)
    speed = rng.uniform(3.0, 7.0) * (1 + smooth_noise(t, rng, 0.05, 0.2))
    dt = np.gradient(t)
    motion.root_pos[:, 0] = np.cumsum(speed * np.cos(heading) * dt)
    motion.root_pos[:, 1] = np.cumsum(speed * np.sin(heading) * dt)
    # Saddle height plus road vibration.
    motion.root_pos[:, 2] = leg + 0.08 + smooth_noise(t, rng, rng.uniform(0.0001, 0.0004), 12.0, n=12)
    motion.root_angles[:, 0] = 2 * DEG * np.sin(crank) + smooth_noise(t, rng, 1.5 * DEG, 0.5)
    motion.root_angles[:, 1] = pelvis_pitch
    motion.root_angles[:, 2] = heading
    bumps = rng.poisson(rng.uniform(0.3, 1.5) * (t[-1] - t[0]))
    motion.impacts += [Impact(float(w), rng.uniform(2, 8), 0.02, np.ones(N_JOINTS), np.array([0.0, 0.0, 1.0]))
                       for w in rng.uniform(t[0], t[-1], bumps)]
    return face(motion, random_heading(rng))


def eating(t, subject: SubjectParams, rng) -> Motion:
    """Seated at a table: fork to mouth every few seconds, cutting and scooping in between."""
    motion = _settled(t, subject, rng, seated=True)
    dom, other = subject.limb("dominant"), subject.limb("other")
    for side in (dom, other):
        clear_arm(motion.local_angles, side)
    bite = episodes(t, rng, on_s=(1.6, 3.0), off_s=(1.5, 5.0), ramp_s=rng.uniform(0.6, 1.0))
    work = (1 - bite) * smooth_noise(t, rng, 1.0, 2.0, n=6)  # cutting/scooping at the plate
    a = motion.local_angles
    set_arm(a, dom, flex=about_deg(rng, 25) + bite * about_deg(rng, 15) + 2 * DEG * work,
            abd=about_deg(rng, 12) + bite * about_deg(rng, 10), rot=bite * about_deg(rng, 40),
            elbow=about_deg(rng, 75) + bite * about_deg(rng, 60) + 3 * DEG * work,
            pronation=about_deg(rng, 60) - bite * about_deg(rng, 40))
    set_arm(a, other, flex=about_deg(rng, 25) + 1.5 * DEG * work, abd=about_deg(rng, 10), elbow=about_deg(rng, 80),
            pronation=about_deg(rng, 70) + 3 * DEG * work)
    set_trunk(a, lean=bite * about_deg(rng, 6), head_nod=bite * about_deg(rng, 10)
              + 0.5 * DEG * np.sin(2 * np.pi * rng.uniform(1.2, 1.8) * t))  # chewing
    return face(motion, random_heading(rng))


def drinking(t, subject: SubjectParams, rng) -> Motion:
    """A cup lifted to the mouth, tipped while the head tilts back, put down again."""
    seated = rng.random() < 0.7
    motion = _settled(t, subject, rng, seated=seated)
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    lift = episodes(t, rng, on_s=(2.5, 5.0), off_s=(2.5, 7.0), ramp_s=rng.uniform(0.7, 1.1))
    tip = lift**4  # the cup tips only once it is at the lips
    a = motion.local_angles
    rest_flex, rest_elbow = about_deg(rng, 25 if seated else 5), about_deg(rng, 80 if seated else 15)
    set_arm(a, dom, flex=rest_flex + lift * (about_deg(rng, 40) - rest_flex) + tip * about_deg(rng, 15),
            abd=about_deg(rng, 10) + lift * about_deg(rng, 15), rot=lift * about_deg(rng, 15),
            elbow=rest_elbow + lift * (about_deg(rng, 130) - rest_elbow),
            pronation=about_deg(rng, 10, 1.0) - tip * about_deg(rng, 35))
    set_trunk(a, head_nod=-tip * about_deg(rng, 20, 0.4))
    return face(motion, random_heading(rng))


def typing(t, subject: SubjectParams, rng) -> Motion:
    """Hands on a keyboard, forearms level; key presses tap the wrists; now and then the mouse."""
    motion = _settled(t, subject, rng, seated=True, scale=0.7)
    a = motion.local_angles
    mouse = episodes(t, rng, on_s=(1.5, 3.0), off_s=(3.0, 8.0), ramp_s=0.6)
    for side in ("left", "right"):
        clear_arm(motion.local_angles, side)
        on_mouse = mouse if side == subject.handedness else 0.0
        # Fingers do the typing: the forearm only trembles a little and shifts now and then.
        set_arm(a, side, flex=about_deg(rng, 22) + smooth_noise(t, rng, 0.3 * DEG, 3.0, n=8),
                abd=about_deg(rng, 12) + on_mouse * about_deg(rng, 12),
                rot=about_deg(rng, 15) - on_mouse * about_deg(rng, 15),
                elbow=about_deg(rng, 90) + smooth_noise(t, rng, 0.4 * DEG, 4.0, n=8),
                pronation=about_deg(rng, 85, 0.08) + smooth_noise(t, rng, 0.5 * DEG, 4.0, n=8))
    set_trunk(a, lean=about_deg(rng, 8, 0.8), head_nod=about_deg(rng, 15, 0.5))
    motion.impacts += _taps(t, rng, rng.uniform(3, 7), (0.3, 1.5), {"left_wrist": 1.0, "right_wrist": 1.0},
                            (0.0, 0.0, 1.0))
    return face(motion, random_heading(rng))


def writing(t, subject: SubjectParams, rng) -> Motion:
    """Pen strokes (3-6 Hz, small) while the hand drifts along a line and jumps back."""
    motion = _settled(t, subject, rng, seated=True, scale=0.7)
    dom, other = subject.limb("dominant"), subject.limb("other")
    a = motion.local_angles
    line_s = rng.uniform(2.5, 5.0)
    along_line = np.mod(t / line_s, 1.0)
    line = along_line - min_jerk((along_line - 0.8) / 0.2)  # 0 -> 1 across, quick return
    strokes = smooth_noise(t, rng, 0.5 * DEG, 5.0, n=8)  # the fingers move the pen; the wrist follows a little
    for side in (dom, other):
        clear_arm(motion.local_angles, side)
    set_arm(a, dom, flex=about_deg(rng, 30) + strokes, abd=about_deg(rng, 15) + line * about_deg(rng, 8),
            rot=about_deg(rng, 20) - line * about_deg(rng, 20), elbow=about_deg(rng, 95) + 0.7 * strokes,
            pronation=about_deg(rng, 60) + smooth_noise(t, rng, 0.5 * DEG, 4.0))
    set_arm(a, other, flex=about_deg(rng, 25), abd=about_deg(rng, 15), rot=about_deg(rng, 30), elbow=about_deg(rng, 95),
            pronation=about_deg(rng, 80))
    set_trunk(a, lean=about_deg(rng, 18), head_nod=about_deg(rng, 25))
    return face(motion, random_heading(rng))


def washing_hands(t, subject: SubjectParams, rng) -> Motion:
    """Bent over a sink, hands rubbing against each other, now and then reaching for the tap."""
    motion = _settled(t, subject, rng, seated=False)
    a = motion.local_angles
    rub = cycle_phase(t, rng, rng.uniform(2.0, 3.5), 0.1)
    tap = episodes(t, rng, on_s=(1.2, 2.0), off_s=(3.0, 8.0), ramp_s=0.5)
    for side, ph in (("left", rub), ("right", rub + np.pi)):
        clear_arm(motion.local_angles, side)
        reach = tap if side == subject.handedness else 0.0
        set_arm(a, side, flex=about_deg(rng, 40) + 3 * DEG * np.sin(ph) + reach * about_deg(rng, 20),
                abd=about_deg(rng, 8), rot=about_deg(rng, 30), elbow=about_deg(rng, 80) - reach * about_deg(rng, 30),
                pronation=about_deg(rng, 30, 0.5) + about_deg(rng, 12, 0.3) * np.cos(ph))
    set_trunk(a, lean=about_deg(rng, 20, 0.4), head_nod=about_deg(rng, 20, 0.4))
    return face(motion, random_heading(rng))


def brushing_teeth(t, subject: SubjectParams, rng) -> Motion:
    """Hand at the mouth, fast short strokes; the brush moves round the mouth every few seconds."""
    motion = _settled(t, subject, rng, seated=False)
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    a = motion.local_angles
    stroke = np.sin(cycle_phase(t, rng, rng.uniform(3.0, 4.5), 0.05))
    # Which part of the mouth: a new region every 3-8 s.
    regions = rng.uniform(-1, 1, (9, 2))  # (flex, pronation) offsets, relative
    times, values = [t[0]], [regions[0]]
    for k, switch in enumerate(t[0] + np.cumsum(rng.uniform(3.0, 8.0, 8))):
        times += [switch, switch + 0.4]
        values += [regions[k], regions[k + 1]]
    region = keyframes(t, times, values)
    set_arm(a, dom, flex=about_deg(rng, 35) + 10 * DEG * region[:, 0], abd=about_deg(rng, 35), rot=about_deg(rng, 25)
            + about_deg(rng, 4, 0.3) * stroke, elbow=about_deg(rng, 130, 0.08) + 1.5 * DEG * stroke,
            pronation=40 * DEG * region[:, 1])
    set_trunk(a, lean=about_deg(rng, 8, 0.8), head_nod=about_deg(rng, 5, 1.0))
    return face(motion, random_heading(rng))


def _slow_steps(t, subject, rng, push_hz: float, reach_m: float) -> Motion:
    """Shuffling back and forth (vacuuming, sweeping): a slow gait whose pelvis rocks along the floor."""
    motion = gait_motion(t, subject, rng, Gait(rng.uniform(1.2, 1.8), 0.15, arm_swing=0.0, bounce_m=0.006,
                                               impact=rng.uniform(1.0, 2.5), trunk_lean=about_deg(rng, 15)))
    motion.root_pos[:, 0] = motion.root_pos[:, 0] * 0.2 + reach_m * np.sin(2 * np.pi * push_hz * t)
    motion.root_pos[:, 1] *= 0.2
    motion.root_angles[:, 2] = motion.root_angles[:, 2] * 0.3 + smooth_noise(t, rng, 0.3, 0.1)
    return motion


def vacuuming(t, subject: SubjectParams, rng) -> Motion:
    push_hz = rng.uniform(0.4, 0.8)
    motion = _slow_steps(t, subject, rng, push_hz, rng.uniform(0.15, 0.35))
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    push = np.sin(2 * np.pi * push_hz * t)
    set_arm(motion.local_angles, dom, flex=about_deg(rng, 35) + about_deg(rng, 20) * push, abd=about_deg(rng, 10),
            elbow=about_deg(rng, 45) - about_deg(rng, 25) * push, pronation=about_deg(rng, 60))
    set_trunk(motion.local_angles, lean=about_deg(rng, 6) * push)
    return face(motion, random_heading(rng))


def sweeping(t, subject: SubjectParams, rng) -> Motion:
    """Broom strokes: a quick sweep across the body, a slower return; trunk and arms turn together."""
    sweep_hz = rng.uniform(0.7, 1.2)
    motion = _slow_steps(t, subject, rng, 0.15, rng.uniform(0.1, 0.3))
    phase = np.mod(sweep_hz * t + rng.random(), 1.0)
    stroke = 2 * (min_jerk(phase / 0.35) - min_jerk((phase - 0.35) / 0.65)) - 1  # -1 -> 1 fast, back slow
    dom, other = subject.limb("dominant"), subject.limb("other")
    a = motion.local_angles
    for side, flex, elbow in ((dom, 30, 40), (other, 50, 75)):
        clear_arm(motion.local_angles, side)
        set_arm(a, side, flex=about_deg(rng, flex) + 8 * DEG * stroke, abd=about_deg(rng, 10),
                rot=about_deg(rng, 25) + (15 * DEG if side == dom else -15 * DEG) * stroke, elbow=about_deg(rng, elbow))
    set_trunk(a, twist=about_deg(rng, 10) * stroke)
    return face(motion, random_heading(rng))


def cooking(t, subject: SubjectParams, rng) -> Motion:
    """At the stove/counter: stirring, chopping, reaching for things, turning between places."""
    motion = _settled(t, subject, rng, seated=False)
    dom, other = subject.limb("dominant"), subject.limb("other")
    a = motion.local_angles
    for side in (dom, other):
        clear_arm(motion.local_angles, side)
    stir = episodes(t, rng, on_s=(2.0, 5.0), off_s=(1.0, 4.0), ramp_s=0.6)
    chop = episodes(t, rng, on_s=(1.5, 4.0), off_s=(2.0, 6.0), ramp_s=0.6) * (1 - stir)
    reach = episodes(t, rng, on_s=(1.2, 2.0), off_s=(3.0, 8.0), ramp_s=0.6, start_on=False) * (1 - stir) * (1 - chop)
    circle = cycle_phase(t, rng, rng.uniform(0.8, 1.5), 0.1)
    chop_ph = np.sin(cycle_phase(t, rng, rng.uniform(3.0, 5.0), 0.1))
    set_arm(a, dom, flex=about_deg(rng, 35) + stir * 6 * DEG * np.cos(circle) + reach * about_deg(rng, 40),
            abd=about_deg(rng, 12), rot=about_deg(rng, 20) + stir * 10 * DEG * np.sin(circle),
            elbow=about_deg(rng, 90) + chop * 5 * DEG * chop_ph - reach * about_deg(rng, 50),
            pronation=about_deg(rng, 50) + chop * 10 * DEG)
    set_arm(a, other, flex=about_deg(rng, 30), abd=about_deg(rng, 10), rot=about_deg(rng, 30), elbow=about_deg(rng, 85),
            pronation=about_deg(rng, 70))
    set_trunk(a, lean=about_deg(rng, 15, 0.5) + reach * about_deg(rng, 10), twist=smooth_noise(t, rng, 10 * DEG, 0.2))
    motion.root_angles[:, 2] += smooth_noise(t, rng, 0.4, 0.1)  # turning between stove, counter, sink
    motion.impacts += [Impact(float(w), rng.uniform(1.0, 4.0), 0.01, local_gains({f"{dom}_wrist": 1.0}))
                       for w in t[np.flatnonzero((chop > 0.5) & (np.diff(np.sign(chop_ph), prepend=0) < 0))]]
    return face(motion, random_heading(rng))


def waving(t, subject: SubjectParams, rng) -> Motion:
    """Hand raised beside the head, forearm swinging side to side at 1.5-3 Hz, in a few bouts."""
    motion = _settled(t, subject, rng, seated=rng.random() < 0.2)
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    raised = episodes(t, rng, on_s=(2.5, 6.0), off_s=(1.0, 3.0), ramp_s=rng.uniform(0.6, 1.0), start_on=True)
    wave = np.sin(cycle_phase(t, rng, rng.uniform(1.5, 3.0), 0.04))
    set_arm(motion.local_angles, dom, flex=raised * about_deg(rng, 25, 0.5),
            abd=about_deg(rng, 5) + raised * about_deg(rng, 95), elbow=about_deg(rng, 10) + raised * about_deg(rng, 40),
            elbow_lift=raised * (about_deg(rng, 60) + about_deg(rng, 12, 0.3) * wave),
            pronation=raised * 10 * DEG * wave)
    return face(motion, random_heading(rng))


def clapping(t, subject: SubjectParams, rng) -> Motion:
    """Hands meeting in front of the chest at 1.5-3.5 Hz; each clap jolts both wrists sideways."""
    motion = _settled(t, subject, rng, seated=rng.random() < 0.4)
    a = motion.local_angles
    clap_hz = rng.uniform(1.5, 3.5)
    clap = cycle_phase(t, rng, clap_hz, 0.05)
    closing = 0.5 * (1 + np.cos(clap))  # 1 = hands together
    bout = episodes(t, rng, on_s=(3.0, 8.0), off_s=(1.0, 2.5), ramp_s=0.7, start_on=True)
    flex, elbow, rot = about_deg(rng, 50), about_deg(rng, 75), about_deg(rng, 25)
    for side in ("left", "right"):
        clear_arm(motion.local_angles, side)
        set_arm(a, side, flex=bout * flex, abd=about_deg(rng, 10), rot=bout * (rot + about_deg(rng, 14) * closing),
                elbow=about_deg(rng, 10) + bout * elbow, pronation=bout * about_deg(rng, 10, 1.0))
    contacts = np.flatnonzero(np.diff(np.mod(clap, 2 * np.pi)) < 0)  # cos(clap) = 1: hands meet
    for k in contacts:
        if bout[k] < 0.8:
            continue
        peak = rng.uniform(10, 30)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            motion.impacts.append(Impact(float(t[k]), peak, 0.008, local_gains({f"{side}_wrist": 1.0,
                                                                                f"{side}_elbow": 0.3}),
                                         np.array([0.0, sign, 0.0])))
    return face(motion, random_heading(rng))


def badminton(t, subject: SubjectParams, rng) -> Motion:
    """Ready stance and footwork; overhead clears and drives: wind-up, fast hit, follow-through."""
    motion = hold(t, standing(subject, rng))
    a = motion.local_angles
    crouch = about_deg(rng, 20, 0.4)
    for side in ("left", "right"):
        set_leg(a, side, hip_flex=crouch, knee_flex=1.6 * crouch, ankle_plantar=-0.6 * crouch)
    motion.root_pos[:, 2] -= subject.height_m * 0.03 * crouch / (20 * DEG)
    # Footwork: moving about the court with small split-step bounces.
    for axis in (0, 1):
        motion.root_pos[:, axis] += smooth_noise(t, rng, rng.uniform(0.2, 0.6), 0.6)
    bouncing = episodes(t, rng, on_s=(1.0, 3.0), off_s=(0.5, 2.0), ramp_s=0.3)
    motion.root_pos[:, 2] += 0.015 * bouncing * (1 - np.cos(cycle_phase(t, rng, rng.uniform(2.0, 3.0), 0.1)))
    motion.root_angles[:, 2] += smooth_noise(t, rng, 0.5, 0.3)
    dom = subject.limb("dominant")
    clear_arm(motion.local_angles, dom)
    # Arm poses (flex, abd, rot, elbow, pronation) deg: ready, wind-up, contact, follow-through.
    overhead = [(40, 30, 0, 90, 30), (150, 60, -60, 110, -20), (170, 30, 30, 10, 60), (50, 10, 60, 40, 60)]
    drive = [(40, 30, 0, 90, 30), (60, 80, -70, 80, -30), (80, 40, 40, 10, 60), (40, 10, 70, 40, 60)]
    times, poses = [t[0]], [np.array(overhead[0], float)]
    clock = t[0] + rng.uniform(0.3, 1.5)
    while clock < t[-1]:
        stroke = overhead if rng.random() < 0.4 else drive
        durations = (rng.uniform(0.3, 0.5), rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.5))
        for pose, step in zip(stroke[1:] + stroke[:1], durations):
            clock += step
            times.append(clock)
            poses.append(np.array(pose, float) * rng.uniform(0.9, 1.1))
        clock += rng.uniform(0.2, 1.0)  # a rally: the next shot comes quickly
    arm = keyframes(t, times, poses) * DEG  # (T, 5)
    set_arm(a, dom, flex=arm[:, 0], abd=arm[:, 1], rot=arm[:, 2], elbow=arm[:, 3], pronation=arm[:, 4])
    # The free arm counterbalances: raised for overheads, swung across for drives.
    set_arm(a, subject.limb("other"), flex=about_deg(rng, 30) + 0.6 * arm[:, 0],
            abd=about_deg(rng, 20) + 0.3 * arm[:, 1],
            elbow=about_deg(rng, 40) + 0.3 * arm[:, 3])
    set_trunk(a, lean=about_deg(rng, 10, 0.5), twist=0.3 * arm[:, 2] * (1 if dom == "left" else -1),
              head_nod=-0.1 * arm[:, 0])
    motion.impacts += [Impact(float(w), rng.uniform(3, 8), 0.015, np.ones(N_JOINTS))
                       for w in rng.uniform(t[0], t[-1], rng.poisson(1.0 * (t[-1] - t[0])))]
    return face(add_liveliness(motion, rng, 0.5), random_heading(rng))


def push_ups(t, subject: SubjectParams, rng) -> Motion:
    """Prone plank, arms bending and straightening at 0.4-0.9 Hz, short pauses now and then."""
    motion = Motion.still(t)
    a = motion.local_angles
    rate = rng.uniform(0.4, 0.9)
    down = 0.5 * (1 - np.cos(cycle_phase(t, rng, rate, 0.08)))  # 0 top, 1 bottom
    down *= episodes(t, rng, on_s=(4.0, 10.0), off_s=(0.5, 1.5), ramp_s=0.4, start_on=True)
    arm_len = -(subject.rest_offsets()[J["left_elbow"], 2] + subject.rest_offsets()[J["left_wrist"], 2])
    for side in ("left", "right"):
        set_leg(a, side, hip_abd=3 * DEG, ankle_plantar=-about_deg(rng, 20))
        set_arm(a, side, flex=90 * DEG - down * about_deg(rng, 45), abd=about_deg(rng, 20),
                elbow=down * about_deg(rng, 90),
                pronation=90 * DEG)
    set_trunk(a, head_nod=-about_deg(rng, 20, 0.5))
    incline = np.arctan2(arm_len * (1 - 0.6 * down), 1.3 * subject.height_m * 0.6)  # shoulders above the feet
    motion.root_angles[:, 1] = 90 * DEG - incline
    motion.root_pos[:, 2] = 0.1 + 0.5 * arm_len * (1 - 0.6 * down)
    return face(motion, random_heading(rng))
