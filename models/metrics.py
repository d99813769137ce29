"""Classification metrics and window predictions, shared by training, evaluation, baselines and the
fine-tuning loop (one module both `models.train` and `models.evaluate` use, so neither imports the other)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predictions."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """accuracy and macro-F1 as fractions, per-class F1 by label name, confusion as nested lists."""
    m = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(m).astype(float)
    precision = tp / np.maximum(m.sum(0), 1)
    recall = tp / np.maximum(m.sum(1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {
        "accuracy": float(tp.sum() / max(m.sum(), 1)),
        "macro_f1": float(f1.mean()),
        "per_class_f1": {label: float(v) for label, v in zip(labels, f1)},
        "confusion": m.tolist(),
        "labels": list(labels),
    }


def predict_windows(classifier, windows) -> np.ndarray:
    """Predicted label index per window, scoring against the window set's own label words."""
    probabilities = classifier.predict_proba(windows.acc, windows.gyro, windows.rate_hz, windows.labels, windows.placement)
    return probabilities.argmax(1)
