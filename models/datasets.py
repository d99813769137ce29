"""Evaluation datasets as fixed windows: HAPT under the UCI-HAR protocol, and aeon's BasicMotions.

UCI-HAR protocol (so numbers compare with UniMTS and the HAR literature): 128-sample windows at 50 Hz
(2.56 s), 50 % overlap, kept only when every sample carries one of the six basic labels; the nine
test subjects below are never used for training or model selection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ingest.hapt import HAPT_SUBJECTS, HAPT_TEST_SUBJECTS, load_hapt

HAPT_TRAIN_SUBJECTS = tuple(s for s in HAPT_SUBJECTS if s not in HAPT_TEST_SUBJECTS)
# model selection holds out a few TRAIN subjects; test subjects stay unseen
HAPT_VALIDATION_SUBJECTS = (1, 11, 21)
HAPT_LABELS = ["walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying down"]
BASICMOTIONS_LABELS = ["standing", "walking", "running", "playing badminton"]


@dataclass
class WindowSet:
    """Windows of one dataset split; `y` indexes `labels`."""

    acc: np.ndarray  # (N, T, 3) m/s^2, gravity included
    gyro: np.ndarray | None  # (N, T, 3) rad/s
    y: np.ndarray  # (N,) int64
    subjects: np.ndarray  # (N,) int
    labels: list[str]
    rate_hz: float
    placement: str

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> WindowSet:
        return WindowSet(
            self.acc[index], None if self.gyro is None else self.gyro[index], self.y[index],
            self.subjects[index], self.labels, self.rate_hz, self.placement,
        )

    def limit(self, n: int | None, seed: int = 0) -> WindowSet:
        """A class-stratified random subset of about n windows (all when n is None)."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        per_class = max(1, n // len(self.labels))
        index = np.concatenate([
            rng.permutation(np.flatnonzero(self.y == c))[:per_class] for c in range(len(self.labels))
        ])
        return self.subset(np.sort(index))


def hapt_windows(subjects: Iterable[int], window: int = 128, hop: int = 64, basic_only: bool = True) -> WindowSet:
    """UCI-HAR windows of the given HAPT subjects; with basic_only=False unlabelled windows are kept
    too (y = -1 where labels are mixed or not basic), for self-supervised pretraining."""
    acc, gyro, y, subj = [], [], [], []
    for rec in load_hapt(subjects):
        starts = np.arange(0, len(rec.labels) - window + 1, hop)
        idx = starts[:, None] + np.arange(window)
        lab = rec.labels[idx]  # (W, window)
        pure = (lab == lab[:, :1]).all(1) & (lab[:, 0] >= 1) & (lab[:, 0] <= 6)
        keep = pure if basic_only else np.ones(len(starts), bool)
        acc.append(rec.acc[idx[keep]])
        gyro.append(rec.gyro[idx[keep]])
        y.append(np.where(pure[keep], lab[keep, 0].astype(np.int64) - 1, -1))
        subj.append(np.full(keep.sum(), rec.subject))
    return WindowSet(
        np.concatenate(acc), np.concatenate(gyro), np.concatenate(y), np.concatenate(subj),
        list(HAPT_LABELS), 50.0, "waist",
    )


def basicmotions_windows(split: str = "test") -> WindowSet:
    """aeon's BasicMotions: a smartwatch (wrist), 10 Hz, 10 s windows, acc and gyro.

    Units checked on the data: while standing the acc mean is ~0 and |acc| ~0.8, while running its
    std is ~11: m/s^2 with gravity REMOVED (linear acceleration), unlike HAPT; the gyro std is
    0.1-5 units, consistent with rad/s. We pass the data through unchanged, so this is a harder
    cross-device check for a model that reads posture from gravity."""
    from aeon.datasets import load_basic_motions

    X, y = load_basic_motions(split=split)  # X (N, 6, 100): acc xyz, gyro xyz
    X = np.asarray(X, dtype=np.float32).transpose(0, 2, 1)
    names = {"standing": "standing", "walking": "walking", "running": "running", "badminton": "playing badminton"}
    y_idx = np.array([BASICMOTIONS_LABELS.index(names[str(v).lower()]) for v in y], dtype=np.int64)
    return WindowSet(
        X[..., :3], X[..., 3:], y_idx, np.zeros(len(y_idx), int),
        list(BASICMOTIONS_LABELS), 10.0, "wrist",
    )
