"""The classic baseline beside the deep model: hand-made time and frequency features with an RBF-SVM.

What the UCI-HAR authors did (561 features, SVM), smaller: per window, the gravity estimate (a 0.3 Hz
low-pass of the accelerometer) and the body motion (the rest) as separate channels, plus gyroscope
and magnitudes; per channel statistics, spectral band energies, dominant frequency and spectral
entropy; axis correlations; the angles between gravity and the device axes (posture). Standardised,
then an RBF-SVM (scikit-learn) whose C is chosen on the validation subjects only.

    features = window_features(windows.acc, windows.gyro, windows.rate_hz)      # (N, F)
    baseline = fit_feature_svm(fit, validation)                                  # FeatureBaseline
    baseline.predict(test) -> (N,) label indices
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt

C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
BANDS_HZ = ((0.0, 1.0), (1.0, 3.0), (3.0, 6.0), (6.0, 12.0))
GRAVITY_CUTOFF_HZ = 0.3


def _channel_stats(x: np.ndarray) -> list[np.ndarray]:
    """x (N, T): location, spread, shape and extremes."""
    q25, q50, q75 = np.percentile(x, [25, 50, 75], axis=1)
    mean, std = x.mean(1), x.std(1)
    centered = (x - mean[:, None]) / np.maximum(std[:, None], 1e-6)
    return [mean, std, x.min(1), x.max(1), q50, q75 - q25, (x ** 2).mean(1),
            (centered ** 3).mean(1), (centered ** 4).mean(1),
            np.abs(np.diff(x, axis=1)).mean(1)]  # mean absolute jerk


def _spectral(x: np.ndarray, rate_hz: float) -> list[np.ndarray]:
    """x (N, T) -> band energies (log), dominant frequency, spectral entropy."""
    spectrum = np.abs(np.fft.rfft(x - x.mean(1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1.0 / rate_hz)
    total = spectrum.sum(1) + 1e-12
    out = [np.log1p(spectrum[:, (freqs >= lo) & (freqs < hi)].sum(1)) for lo, hi in BANDS_HZ]
    out.append(freqs[spectrum.argmax(1)])
    p = spectrum / total[:, None]
    out.append(-(p * np.log(p + 1e-12)).sum(1))
    return out


def window_features(acc: np.ndarray, gyro: np.ndarray | None, rate_hz: float) -> np.ndarray:
    """(N, T, 3) accelerometer (m/s^2, gravity included) and optional gyroscope -> (N, F) features."""
    acc = np.asarray(acc, dtype=np.float64)
    sos = butter(3, GRAVITY_CUTOFF_HZ, btype="low", fs=rate_hz, output="sos")
    gravity = sosfiltfilt(sos, acc, axis=1) if acc.shape[1] > 12 else np.repeat(acc.mean(1, keepdims=True), acc.shape[1], 1)
    body = acc - gravity
    channels = [body[..., i] for i in range(3)] + [np.linalg.norm(body, axis=-1), np.linalg.norm(acc, axis=-1)]
    if gyro is not None:
        gyro = np.asarray(gyro, dtype=np.float64)
        channels += [gyro[..., i] for i in range(3)] + [np.linalg.norm(gyro, axis=-1)]
    columns: list[np.ndarray] = []
    for channel in channels:
        columns += _channel_stats(channel) + _spectral(channel, rate_hz)
    # posture: the mean gravity direction in the device frame, and how much it moved
    g = gravity.mean(1)
    g_unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    columns += [np.arccos(np.clip(g_unit[:, i], -1, 1)) for i in range(3)]
    columns += [gravity[..., i].std(1) for i in range(3)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        columns.append(_correlation(body[..., a], body[..., b]))
    return np.nan_to_num(np.stack(columns, axis=1).astype(np.float32))


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.maximum(np.sqrt((a ** 2).sum(1) * (b ** 2).sum(1)), 1e-9)


@dataclass
class FeatureBaseline:
    pipeline: object  # scikit-learn Pipeline(StandardScaler, SVC)
    c: float
    validation_macro_f1: dict[float, float]
    n_features: int

    def predict(self, windows) -> np.ndarray:
        return self.pipeline.predict(window_features(windows.acc, windows.gyro, windows.rate_hz))


def svm_pipeline(c: float, seed: int = 0, probability: bool = False):
    """StandardScaler + RBF SVC: the baseline's model (probability=True: Platt-scaled, for models/fusion.py)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale", probability=probability,
                                               random_state=seed))


def fit_feature_svm(fit, validation, seed: int = 0) -> FeatureBaseline:
    """C chosen by macro-F1 on `validation`, then refit on fit + validation (both training subjects)."""
    from models.metrics import classification_metrics

    x_fit = window_features(fit.acc, fit.gyro, fit.rate_hz)
    x_val = window_features(validation.acc, validation.gyro, validation.rate_hz)

    def model(c: float):
        return svm_pipeline(c, seed)

    scores = {}
    for c in C_GRID:
        predicted = model(c).fit(x_fit, fit.y).predict(x_val)
        scores[c] = classification_metrics(validation.y, predicted, fit.labels)["macro_f1"]
    best = max(scores, key=scores.get)
    final = model(best).fit(np.concatenate([x_fit, x_val]), np.concatenate([fit.y, validation.y]))
    return FeatureBaseline(final, best, scores, x_fit.shape[1])
