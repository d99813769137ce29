"""The classic feature baseline (models/baselines.py), on HAPT training subjects only."""

from __future__ import annotations

import numpy as np

from models.baselines import window_features


def test_features_are_finite_and_tell_posture_by_the_gravity_angles():
    from models.datasets import hapt_windows

    windows = hapt_windows([1])
    x = window_features(windows.acc, windows.gyro, windows.rate_hz)
    assert x.shape[0] == len(windows) and np.isfinite(x).all()
    without_gyro = window_features(windows.acc, None, windows.rate_hz)
    assert without_gyro.shape[1] < x.shape[1]  # a device without gyroscope still gets features
    # the angle between gravity and the device's x axis (last 9 columns: 3 angles, 3 stds, 3 correlations)
    angle_x = x[:, -9]
    lying, standing = windows.labels.index("lying down"), windows.labels.index("standing")
    assert abs(np.median(angle_x[windows.y == lying]) - np.median(angle_x[windows.y == standing])) > 0.5  # radians


def test_the_svm_picks_c_on_validation_subjects_and_generalizes_to_another_subject():
    from models.baselines import C_GRID, fit_feature_svm
    from models.datasets import hapt_windows
    from models.metrics import classification_metrics

    fit, validation, other = hapt_windows([3, 5, 6]), hapt_windows([7]), hapt_windows([8])
    baseline = fit_feature_svm(fit, validation)
    assert set(baseline.validation_macro_f1) == set(C_GRID)
    assert baseline.c == max(baseline.validation_macro_f1, key=baseline.validation_macro_f1.get)
    metrics = classification_metrics(other.y, baseline.predict(other), other.labels)
    assert metrics["accuracy"] > 0.8 and metrics["macro_f1"] > 0.75  # chance: 1/6
