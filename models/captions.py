"""Compositional captions for motion-v2 training: body part + motion + tempo + posture + context.

motion-v1 saw the simulator's ~280 hand-written sentences (43 activities); an unseen name then maps
to its nearest neighbour among them. Here each activity's sentences (the simulator's paraphrases)
are combined with what the body does (which part moves), how fast, in which posture and where, in
several sentence shapes, giving about ten times as many distinct captions. The attributes are
grouped per activity so a caption never contradicts its motion (no "seated" sprint).

    captions = activity_captions("walking", per_activity=120, seed=0)   # list[str]

The evaluation's unseen wordings (models/conditions.py) were written before these captions and are
checked against them (`training_vocabulary` includes every word here).
"""

from __future__ import annotations

import numpy as np

# activity -> (body part, posture, motion kind); kinds pick the tempo words
_GAIT = ("legs and whole body", "upright", "dynamic")
_STILL = ("whole body", "upright", "static")
_SEATED_HANDS = ("hands and forearms", "seated", "light")
_STANDING_ARMS = ("arms", "upright", "light")
_TRANSITION = ("trunk and legs", "changing posture", "transition")
ATTRIBUTES: dict[str, tuple[str, str, str]] = {
    "walking": _GAIT, "running": _GAIT, "walking upstairs": _GAIT, "walking downstairs": _GAIT,
    "nordic walking": _GAIT, "standing": _STILL, "elevator up": _STILL, "elevator down": _STILL,
    "sitting": ("whole body", "seated", "static"), "lying": ("whole body", "lying", "static"),
    "sit-to-stand": _TRANSITION, "stand-to-sit": _TRANSITION, "sit-to-lie": _TRANSITION,
    "lie-to-sit": _TRANSITION, "stand-to-lie": _TRANSITION, "lie-to-stand": _TRANSITION,
    "jumping": _GAIT, "falling": ("whole body", "changing posture", "sudden"),
    "cycling": ("legs", "seated", "dynamic"), "eating": _SEATED_HANDS, "drinking": _SEATED_HANDS,
    "typing": _SEATED_HANDS, "writing": _SEATED_HANDS, "washing hands": _STANDING_ARMS,
    "brushing teeth": _STANDING_ARMS, "vacuuming": _STANDING_ARMS, "cooking": _STANDING_ARMS,
    "waving": _STANDING_ARMS, "clapping": _STANDING_ARMS, "playing badminton": ("arms and legs", "upright", "dynamic"),
    "sweeping": _STANDING_ARMS, "push-ups": ("arms and trunk", "prone", "dynamic"),
    "squats": ("legs", "upright", "dynamic"), "jumping jacks": ("arms and legs", "upright", "dynamic"),
    "rope jumping": ("legs and whole body", "upright", "dynamic"), "smoking": _STANDING_ARMS,
    "talking on the phone": _STANDING_ARMS, "sit-ups": ("trunk", "lying", "dynamic"),
    "bending forward": ("trunk", "upright", "light"), "arm raises": ("arms", "upright", "light"),
    "ironing": _STANDING_ARMS, "rowing": ("arms, trunk and legs", "seated", "dynamic"),
    "dribbling a basketball": ("arm and legs", "upright", "dynamic"),
}
TEMPO = {
    "dynamic": ("slowly", "at a moderate pace", "quickly", "at a steady rhythm", "energetically", "at an easy tempo"),
    "static": ("without moving", "calmly", "for a while", "quietly, barely moving", "at rest"),
    "light": ("gently", "with small movements", "at a relaxed tempo", "steadily", "busily"),
    "transition": ("slowly", "in one smooth movement", "quickly", "carefully"),
    "sudden": ("suddenly", "without warning", "abruptly"),
}
POSTURE = {
    "upright": ("on their feet", "in an upright posture", "with the body vertical"),
    "seated": ("in a seated posture", "on a seat", "with the hips bent, seated"),
    "lying": ("horizontal", "in a lying posture", "with the body flat"),
    "prone": ("face down", "with the body horizontal, face down"),
    "changing posture": ("changing posture", "moving from one posture to another"),
}
CONTEXT = ("at home", "in an office", "outdoors", "in a gym", "in the morning", "in the evening",
           "at work", "in a school", "in a hospital ward", "on a weekend", "during a break", "in a shop")
SHAPES = (
    "{motion}",
    "{motion}, {tempo}",
    "{motion} {context}",
    "{motion}, {tempo}, {context}",
    "{body} moving: {motion}",
    "{motion}, {posture}",
    "{posture}: {motion}, {tempo}",
    "a wearable sensor records {motion} {context}",
    "movement of the {body}: {motion}, {tempo}",
    "{motion}; the person is {posture}",
)


def activity_captions(activity: str, per_activity: int = 120, seed: int = 0) -> list[str]:
    """`per_activity` distinct captions of one simulator activity (its paraphrases x attributes)."""
    from models.simulator import ACTIVITIES

    body, posture, kind = ATTRIBUTES[activity]
    motions = ACTIVITIES[activity].descriptions
    rng = np.random.default_rng([seed, len(activity), sum(map(ord, activity))])
    out: dict[str, None] = dict.fromkeys(motions)  # the plain sentences always stay
    for _ in range(per_activity * 20):
        if len(out) >= per_activity:
            break
        shape = SHAPES[rng.integers(len(SHAPES))]
        out[shape.format(motion=motions[rng.integers(len(motions))], tempo=TEMPO[kind][rng.integers(len(TEMPO[kind]))],
                         posture=POSTURE[posture][rng.integers(len(POSTURE[posture]))],
                         context=CONTEXT[rng.integers(len(CONTEXT))], body=body)] = None
    return list(out)


def caption_words() -> list[str]:
    """Every attribute phrase (for the unseen-wording check)."""
    words = [b for b, _, _ in ATTRIBUTES.values()] + [t for ts in TEMPO.values() for t in ts]
    words += [p for ps in POSTURE.values() for p in ps] + list(CONTEXT) + [s.format(motion="", tempo="", context="", body="", posture="") for s in SHAPES]
    return words
