"""Events in a motion window: falls, jumps and postural transitions, and windows with none.

Two sources, both labelled with the same answers (`EVENTS`):
- real HAPT windows: its six postural transitions (mapped onto four event words) and its activity windows
  ("no event"); split by subject like every HAPT use;
- simulated waist windows (models.simulator) for what HAPT does not have: falls and jumps, beside simulated
  transitions and plain activities. A simulated split is a set of simulated people drawn from its own seed
  (`SIM_SEEDS`); the test seed is only simulated by `iotlm eval --setting llm-qa`.

`free_fall_impact` is the stream's fall rule on the raw signal (stream_workers.alerts uses it), kept here so
the evaluation can score the same rule on the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.hapt import STANDARD_GRAVITY

EVENTS = ["a fall", "a jump", "sitting down", "standing up", "lying down", "getting up", "no event"]
NO_EVENT = EVENTS.index("no event")
FALL = EVENTS.index("a fall")
# HAPT's transitions (models.llm.data.TRANSITIONS order: labels 7..12) -> event
HAPT_TRANSITION_EVENTS = ["sitting down", "standing up", "lying down", "getting up", "lying down", "getting up"]
# simulator activity -> event; the plain activities are the ones a waist device sees every day
SIM_EVENTS = {"falling": "a fall", "jumping": "a jump", "stand-to-sit": "sitting down", "sit-to-stand": "standing up",
              "sit-to-lie": "lying down", "stand-to-lie": "lying down", "lie-to-sit": "getting up",
              "lie-to-stand": "getting up"}
SIM_PLAIN = ("walking", "running", "walking upstairs", "walking downstairs", "standing", "sitting", "lying",
             "bending forward", "typing", "eating")
SIM_SEEDS = {"fit": 1500, "validation": 1501, "test": 1502}
WINDOW, RATE_HZ = 128, 50.0
FREEFALL_MIN_S, IMPACT_WITHIN_S = 0.1, 1.0


def free_fall_impact(acc: np.ndarray, rate_hz: float, freefall_g: float, impact_g: float) -> tuple[int, float] | None:
    """(first sample of the free fall, impact in g) when |a| stays under `freefall_g` for FREEFALL_MIN_S and
    then, within IMPACT_WITHIN_S, exceeds `impact_g`; None otherwise. `acc`: (T, 3) m/s^2."""
    g = np.linalg.norm(acc, axis=1) / STANDARD_GRAVITY
    min_run = max(1, round(FREEFALL_MIN_S * rate_hz))
    run = 0
    for i, falling in enumerate(g < freefall_g):
        run = run + 1 if falling else 0
        if run == min_run:
            after = g[i + 1 : i + 1 + round(IMPACT_WITHIN_S * rate_hz)]
            if len(after) and after.max() > impact_g:
                return i + 1 - min_run, float(after.max())
    return None


@dataclass
class EventWindows:
    acc: np.ndarray  # (N, 128, 3) m/s^2
    gyro: np.ndarray
    event: np.ndarray  # index into EVENTS
    source: list[str]  # the simulator activity of each window
    rate_hz: float = RATE_HZ

    def __len__(self) -> int:
        return len(self.event)


def _busiest_start(acc: np.ndarray, rng: np.random.Generator) -> int:
    """Start of a window around the clip's most dynamic half second (|a| deviation), placed at a random point
    of the middle of the window, so the event is inside it but not always at the same place."""
    dev = np.abs(np.linalg.norm(acc, axis=1) - STANDARD_GRAVITY)
    half = int(RATE_HZ // 2)
    energy = np.convolve(dev, np.ones(half), mode="same")
    peak = int(energy.argmax())
    start = peak - int(rng.uniform(0.3, 0.7) * WINDOW)
    return int(np.clip(start, 0, len(acc) - WINDOW))


def simulated_event_windows(split: str, per_event: int = 60, progress: bool = True) -> EventWindows:
    """`per_event` windows of every event answer (falls, jumps, each transition word, and plain activities
    for "no event"), each from a new simulated person with a realistic waist device."""
    from tqdm import tqdm

    from models.simulator.clip import simulate_clip

    rng = np.random.default_rng(SIM_SEEDS[split])
    plan = []
    for event in EVENTS:
        names = [a for a, e in SIM_EVENTS.items() if e == event] if event != "no event" else list(SIM_PLAIN)
        plan += [str(names[i % len(names)]) for i in range(per_event)]
    acc, gyro, labels = [], [], []
    for activity in tqdm(plan, desc=f"simulated events ({split})", disable=not progress):
        clip = simulate_clip(activity, rng, duration_s=6.0, rate_hz=RATE_HZ, placements=("waist",))
        trace = clip.imu["waist"]
        start = _busiest_start(trace.acc, rng) if activity in SIM_EVENTS else int(rng.integers(0, len(trace.acc) - WINDOW))
        acc.append(trace.acc[start : start + WINDOW])
        gyro.append(trace.gyro[start : start + WINDOW])
        labels.append(EVENTS.index(SIM_EVENTS.get(activity, "no event")))
    return EventWindows(np.stack(acc).astype(np.float32), np.stack(gyro).astype(np.float32), np.array(labels), plan)


def hapt_event_labels(activity: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """Event per HAPT window (models.llm.data.SensorWindows' activity / transition columns)."""
    out = np.full(len(activity), NO_EVENT)
    is_t = transition >= 0
    out[is_t] = [EVENTS.index(HAPT_TRANSITION_EVENTS[t]) for t in transition[is_t]]
    return out
