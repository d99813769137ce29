"""Instruction data for the adapter, generated from labelled HAPT windows, split by subject.

Windows follow the UCI-HAR grid (128 samples at 50 Hz, hop 64). A window is an *activity* window when every
sample carries one basic label, a *transition* window when one postural transition (HAPT labels 7-12) covers
at least half of it. Question kinds (each a task token):
- activity: "what is the person doing?" in several wordings, answered with one of the six activities;
- yes_no: "is the person <activity>?" (half true, half a wrong activity);
- transition: which postural transition the window holds;
- caption: one short sentence describing the window (free generation);
- event: what happens in the window: a fall, a jump, one of four posture changes, or no event (models.events:
  HAPT's real transitions and activity windows, plus simulated people for falls and jumps, which HAPT lacks);
- dialog: a second turn after the activity question ("And is the person <activity>?"), answered yes or no,
  with the first turn's question and answer in the conversation.
Time-range questions ("how long", "how many times") are answered from storage, not from sensor tokens
(models/llm/grounding.py); the dialog check replays a device and compares with the episodes table.

Room questions (task token `room`, the env modality: 30-minute windows of simulated rooms, models/rooms):
how many people (the occupancy bins), what the room is used for (the room model's uses), how the air is.

Splits: the adapter is fitted on HAPT train subjects minus six validation subjects (the same six that chose
motion-v1-hapt's epoch); choices (step, prompt wording) use the validation subjects; the test subjects 2, 4,
9, 10, 12, 13, 18, 20, 24 are only read by `iotlm eval --setting llm-qa`. Rooms split by building exactly as
the room model did: fit on buildings 0..29 (rooms-v1's training buildings), choices on 200..205, test 500..511.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.hapt import HAPT_TEST_SUBJECTS, load_hapt
from models.datasets import HAPT_LABELS, HAPT_TRAIN_SUBJECTS

VALIDATION_SUBJECTS = (1, 6, 11, 16, 21, 26)
FIT_SUBJECTS = tuple(s for s in HAPT_TRAIN_SUBJECTS if s not in VALIDATION_SUBJECTS)
TEST_SUBJECTS = tuple(HAPT_TEST_SUBJECTS)
TRANSITIONS = ["sitting down", "standing up", "lying down from sitting", "sitting up from lying",
               "lying down from standing", "getting up from lying"]  # HAPT labels 7..12, in order
YES_NO = ["yes", "no"]
SYSTEM = "You are IoT-LM, reading a waist-worn motion sensor."  # short: every token costs in the adapted layers
ACTIVITY_QUESTIONS = ("What is the person doing?", "Which activity is this?", "What activity do the sensor readings show?",
                      "What is the wearer doing right now?")
TRANSITION_QUESTIONS = ("Which postural transition happens here?", "How does the person change posture?")
CAPTION_QUESTION = "Describe the sensor window in one short sentence."
EVENT_QUESTIONS = ("What happens in this window?", "Did anything happen, such as a fall or a jump?",
                   "Which event do the sensor readings show?")
ROOM_SYSTEM = "You are IoT-LM, reading a room's environment sensors."
ROOM_QUESTIONS = {  # kind -> wordings (the first is the one the eval and the ask path use)
    "occupancy": ("How many people are in the room?", "How full is the room right now?"),
    "use": ("What is the room being used for?", "What is going on in the room?"),
    "air": ("How is the air quality in the room?", "What is the air like in the room?"),
}
ROOM_FIT_BUILDINGS, ROOM_VALIDATION_BUILDINGS, ROOM_TEST_BUILDINGS = (0, 30), (200, 6), (500, 12)  # (first, n)


def room_answers() -> dict[str, list[str]]:
    from models.rooms.model import DEFAULT_USES
    from models.rooms.windows import AIR_QUALITY, OCCUPANCY_BINS

    return {"occupancy": list(OCCUPANCY_BINS), "use": list(DEFAULT_USES), "air": list(AIR_QUALITY)}


def room_windows(buildings: tuple[int, int], hop_min: int = 10, progress: bool = True):
    """Windows of every room of the (first, n) simulated buildings (cached beside the room model's)."""
    from models.rooms.train import building_windows, default_cache

    return building_windows(buildings[0], buildings[1], hop_min, cache=default_cache(), progress=progress)


@dataclass
class SensorWindows:
    acc: np.ndarray  # (N, 128, 3) m/s^2
    gyro: np.ndarray
    subjects: np.ndarray
    activity: np.ndarray  # index into HAPT_LABELS, -1 when not an activity window
    transition: np.ndarray  # index into TRANSITIONS, -1 when not a transition window
    rate_hz: float = 50.0

    def __len__(self) -> int:
        return len(self.subjects)


def sensor_windows(subjects, window: int = 128, hop: int = 64) -> SensorWindows:
    acc, gyro, subj, act, tra = [], [], [], [], []
    for rec in load_hapt(subjects):
        starts = np.arange(0, len(rec.labels) - window + 1, hop)
        idx = starts[:, None] + np.arange(window)
        lab = rec.labels[idx].astype(np.int64)
        pure = (lab == lab[:, :1]).all(1) & (lab[:, 0] >= 1) & (lab[:, 0] <= 6)
        share = np.stack([(lab == c).mean(1) for c in range(7, 13)], 1)  # (W, 6)
        is_transition = ~pure & (share.max(1) >= 0.5)
        keep = pure | is_transition
        acc.append(rec.acc[idx[keep]])
        gyro.append(rec.gyro[idx[keep]])
        subj.append(np.full(keep.sum(), rec.subject))
        act.append(np.where(pure[keep], lab[keep, 0] - 1, -1))
        tra.append(np.where(is_transition[keep], share[keep].argmax(1), -1))
    return SensorWindows(np.concatenate(acc), np.concatenate(gyro), np.concatenate(subj), np.concatenate(act),
                         np.concatenate(tra))


@dataclass
class Example:
    window: int  # row in the SensorWindows
    task: str
    question: str
    answer: str
    choices: list[str] | None = None  # None: free generation
    modality: str = "motion"  # which windows `window` indexes: motion (SensorWindows) or env (RoomWindows)
    history: tuple[dict, ...] = ()  # earlier turns of the conversation (chat messages), before `question`


def with_reading(question: str, reading: str | None) -> str:
    """The question with the encoder classifier's reading of the same window in front (what storage holds for
    it: the window's stored prediction), or as it is when there is none."""
    return question if reading is None else f"The motion classifier reads: {reading}. {question}"


def asked_activity(true: int, rng: np.random.Generator) -> int:
    """The activity a yes/no question asks about: the true one half the time, else another drawn at random."""
    return int(true) if rng.random() < 0.5 else int(rng.choice([c for c in range(len(HAPT_LABELS)) if c != true]))


def examples(windows: SensorWindows, seed: int = 0,
             kinds=("activity", "yes_no", "transition", "caption", "event", "dialog"),
             readings: np.ndarray | None = None, reading_share: float = 0.7, event_share: float = 0.1,
             dialog_share: float = 0.15) -> list[Example]:
    """Every window once per applicable kind (a random wording each), shuffled. `readings`: the classifier's
    label index per window; activity and yes/no questions carry it (`with_reading`) `reading_share` of the time,
    so the adapter answers with and without it. Event questions: every transition window, and `event_share` of
    the activity windows ("no event"); dialog: `dialog_share` of the activity windows."""
    from models.events import EVENTS, HAPT_TRANSITION_EVENTS

    rng = np.random.default_rng(seed)
    out: list[Example] = []

    def read(i: int) -> str | None:
        return HAPT_LABELS[int(readings[i])] if readings is not None and rng.random() < reading_share else None

    for i in range(len(windows)):
        a, t = int(windows.activity[i]), int(windows.transition[i])
        if a >= 0:
            label = HAPT_LABELS[a]
            if "activity" in kinds:
                out.append(Example(i, "activity", with_reading(str(rng.choice(ACTIVITY_QUESTIONS)), read(i)), label,
                                   list(HAPT_LABELS)))
            if "yes_no" in kinds:
                asked = HAPT_LABELS[asked_activity(a, rng)]
                out.append(Example(i, "yes_no", with_reading(f"Is the person {asked}?", read(i)),
                                   "yes" if asked == label else "no", YES_NO))
            if "caption" in kinds:
                out.append(Example(i, "caption", CAPTION_QUESTION, f"The person is {label}."))
            if "event" in kinds and rng.random() < event_share:
                out.append(Example(i, "event", str(rng.choice(EVENT_QUESTIONS)), "no event", list(EVENTS)))
            if "dialog" in kinds and rng.random() < dialog_share:
                asked = HAPT_LABELS[asked_activity(a, rng)]
                first = with_reading(str(rng.choice(ACTIVITY_QUESTIONS)), read(i))
                out.append(Example(i, "dialog", f"And is the person {asked}?", "yes" if asked == label else "no",
                                   YES_NO, history=({"role": "user", "content": first},
                                                    {"role": "assistant", "content": label})))
        if t >= 0:
            if "transition" in kinds:
                out.append(Example(i, "transition", str(rng.choice(TRANSITION_QUESTIONS)), TRANSITIONS[t],
                                   list(TRANSITIONS)))
            if "caption" in kinds:
                out.append(Example(i, "caption", CAPTION_QUESTION, f"The person is {TRANSITIONS[t]}."))
            if "event" in kinds:
                out.append(Example(i, "event", str(rng.choice(EVENT_QUESTIONS)), HAPT_TRANSITION_EVENTS[t],
                                   list(EVENTS)))
    order = rng.permutation(len(out))
    return [out[j] for j in order]


def event_examples(windows, seed: int = 0) -> list[Example]:
    """One event question per simulated event window (models.events.EventWindows), shuffled."""
    from models.events import EVENTS

    rng = np.random.default_rng(seed)
    out = [Example(i, "event", str(rng.choice(EVENT_QUESTIONS)), EVENTS[int(e)], list(EVENTS))
           for i, e in enumerate(windows.event)]
    return [out[j] for j in rng.permutation(len(out))]


def room_examples(rooms, n: int, seed: int = 0, balanced: bool = False) -> list[Example]:
    """`n` room questions, one kind each. Windows are drawn at random (the buildings' own mix of states, most
    of it empty rooms) or, `balanced`, with every answer of the kind equally often (the rare states, e.g.
    more than 10 people, otherwise come up a few times in a whole training run)."""
    rng = np.random.default_rng(seed)
    answers = room_answers()
    kinds = list(ROOM_QUESTIONS)
    picks = [] if balanced else list(rng.choice(len(rooms), size=min(n, len(rooms)), replace=False))
    out = []
    for j in range(n if balanced else len(picks)):
        kind = kinds[int(rng.integers(len(kinds)))]
        target = getattr(rooms, kind)
        if balanced:
            present = np.unique(target)
            i = int(rng.choice(np.flatnonzero(target == rng.choice(present))))
        else:
            i = int(picks[j])
        out.append(Example(i, "room", str(rng.choice(ROOM_QUESTIONS[kind])), answers[kind][int(target[i])],
                           answers[kind], modality="env"))
    return out


def prompt_ids(tokenizer, question: str, system: str = SYSTEM, history=()) -> list[int]:
    """The chat prompt up to the assistant's turn, as token ids (`history`: earlier turns, chat messages)."""
    ids = tokenizer.apply_chat_template([{"role": "system", "content": system}, *history,
                                         {"role": "user", "content": question}], add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    return [int(i) for i in ids]


def answer_ids(tokenizer, answer: str, end_id: int) -> list[int]:
    return [int(i) for i in tokenizer(answer, add_special_tokens=False)["input_ids"]] + [end_id]
