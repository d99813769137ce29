"""Batches of windows -> one result per window, with a model that can be swapped while running.

`WindowClassifier` is what the MicroBatcher calls (on its inference thread). A batch can mix devices
with and without a gyroscope and different placements; `predict_proba` takes one placement and one
gyro choice per call, so the batch is split into those groups (and into windows with and without a
device gravity reference, stream_workers.gravity) and the results put back in order.
Hot reload: `swap` replaces the model between two batches (one attribute assignment, read once per
batch), so every result names the version that produced it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from stream_workers.records import WindowResult
from stream_workers.windows import Window


class ActivityModel(Protocol):
    """What the worker needs from models.inference.MotionClassifier."""

    version: str
    rate_hz: float
    window_s: float

    def predict_proba(self, acc: np.ndarray, gyro: np.ndarray | None, rate_hz: float, labels: list[str],
                      placement: str = "unknown", up: np.ndarray | None = None) -> np.ndarray: ...


class WindowClassifier:
    """Classifies windows over the site's label set with the current model."""

    def __init__(self, model: ActivityModel, labels: Sequence[str],
                 labels_for: Callable[[str], Sequence[str] | None] | None = None):
        self.model = model
        self.labels = list(labels)
        self.labels_for = labels_for  # device id -> its site's label set (None: `labels`), read per batch

    @property
    def version(self) -> str:
        return self.model.version

    def swap(self, model: ActivityModel) -> None:
        self.model = model

    def _labels(self, device_id: str) -> tuple[str, ...]:
        chosen = self.labels_for(device_id) if self.labels_for is not None else None
        return tuple(chosen or self.labels)

    def __call__(self, windows: list[Window]) -> list[WindowResult]:
        model = self.model  # one model for the whole batch, even if a swap lands meanwhile
        groups: dict[tuple[bool, str, tuple[str, ...], bool], list[int]] = defaultdict(list)
        for i, w in enumerate(windows):
            groups[(w.gyro is not None, w.placement, self._labels(w.device_id), w.up is not None)].append(i)
        probs: list[np.ndarray | None] = [None] * len(windows)
        labels_of: list[tuple[str, ...]] = [()] * len(windows)
        for (has_gyro, placement, labels, has_up), rows in groups.items():
            acc = np.stack([windows[i].acc for i in rows])
            gyro = np.stack([windows[i].gyro for i in rows]) if has_gyro else None
            # the gravity reference only when there is one, so models without `up` keep working
            up = {"up": np.array([windows[i].up for i in rows])} if has_up else {}
            group_probs = model.predict_proba(acc, gyro, windows[rows[0]].rate_hz, list(labels), placement, **up)
            for i, p in zip(rows, group_probs):
                probs[i], labels_of[i] = p, labels
        decided_at = time.time()
        results = []
        for w, p, labels in zip(windows, probs, labels_of):
            top = int(np.argmax(p))
            results.append(WindowResult(
                device_id=w.device_id,
                window_start=w.start,
                window_end=w.end,
                model_version=model.version,
                activity=labels[top],
                probability=float(p[top]),
                distribution={label: round(float(x), 5) for label, x in zip(labels, p)},
                placement=w.placement,
                truth=w.truth,
                completed_at=w.completed_at,
                decided_at=decided_at,
            ))
        return results
