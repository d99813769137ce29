"""The evaluation report that `iotlm eval` prints (metrics: models/metrics.py)."""

from __future__ import annotations

import numpy as np

from models.metrics import classification_metrics, predict_windows

# UniMTS (seed 001, Table 1/2), UCI-HAR, same 6 classes and test subjects; percentages
UNIMTS_UCI_HAR = {
    "zero-shot": {"accuracy": 35.2, "macro_f1": 22.0},
    "full": {"accuracy": 92.1, "macro_f1": 92.2},
}


def splits(dataset: str, limit: int | None, seed: int, validation_subjects: tuple[int, ...] | None = None):
    """(fit, validation, test) window sets. HAPT: fit = train subjects minus the validation subjects
    (default models.datasets.HAPT_VALIDATION_SUBJECTS); BasicMotions (no subject ids): validation = a
    stratified quarter of its train split."""
    from models.datasets import (
        HAPT_TEST_SUBJECTS, HAPT_TRAIN_SUBJECTS, HAPT_VALIDATION_SUBJECTS, basicmotions_windows, hapt_windows,
    )  # fmt: skip

    if dataset == "hapt":
        validation_subjects = validation_subjects or HAPT_VALIDATION_SUBJECTS
        fit = hapt_windows([s for s in HAPT_TRAIN_SUBJECTS if s not in validation_subjects])
        val = hapt_windows(validation_subjects)
        test = hapt_windows(HAPT_TEST_SUBJECTS)
    elif dataset == "basicmotions":
        train = basicmotions_windows("train")
        rng = np.random.default_rng(seed)
        val_index = np.concatenate([rng.permutation(np.flatnonzero(train.y == c))[:3] for c in range(len(train.labels))])
        is_val = np.isin(np.arange(len(train)), val_index)
        fit, val, test = train.subset(np.flatnonzero(~is_val)), train.subset(val_index), basicmotions_windows("test")
    else:
        raise ValueError(f"unknown dataset {dataset!r}: hapt or basicmotions")
    return fit.limit(limit, seed), val.limit(limit, seed), test.limit(limit, seed)


def _feature_baseline(fit, val, test, seed: int, baseline=None) -> dict:
    """The classic baseline (models/baselines.py) on the given split: C chosen on `val` only (`baseline`: already
    fitted on that split)."""
    from models.baselines import fit_feature_svm

    baseline = baseline or fit_feature_svm(fit, val, seed)
    metrics = classification_metrics(test.y, baseline.predict(test), test.labels)
    return {"name": f"RBF-SVM on {baseline.n_features} time/frequency features (models/baselines.py)",
            "c": baseline.c, "validation_macro_f1": baseline.validation_macro_f1, **metrics}


def run_evaluation(
    dataset: str = "hapt",
    setting: str = "zero-shot",
    shots: int = 10,
    model: str | None = None,
    limit: int | None = None,
    epochs: int = 15,
    seed: int = 0,
    checkpoint_dir=None,
) -> dict:
    """Evaluate a checkpoint on held-out test windows; few-shot / full first fine-tune it on the
    training split (seeded, selection on the validation split), never touching test subjects."""
    import time

    import torch

    from models.inference import MotionClassifier
    from models.train import FINETUNE_VALIDATION_SUBJECTS, few_shot_subset, finetune, finetune_full_shot

    torch.manual_seed(seed)
    start = time.time()
    # full fine-tuning selects as `iotlm train finetune` does: six validation subjects, once per epoch;
    # the feature baseline uses the same split (alone with setting "baseline", beside the model with "full")
    full = setting in ("full", "baseline")
    if setting not in ("zero-shot", "few-shot", "full", "baseline"):
        raise ValueError(f"unknown setting {setting!r}: zero-shot, few-shot, full or baseline")
    fit, val, test = splits(dataset, limit, seed, FINETUNE_VALIDATION_SUBJECTS if full else None)
    version, n_fit, baseline = None, 0, None
    if setting == "baseline":
        report, n_fit = _feature_baseline(fit, val, test, seed), len(fit)
    else:
        classifier = MotionClassifier.load(model, device="cpu", checkpoint_dir=checkpoint_dir)
        version = classifier.version
        if setting == "few-shot":
            fit = few_shot_subset(fit, shots, seed)
            label_vectors = classifier.label_vectors(fit.labels).cpu().numpy()
            classifier.model, _ = finetune(classifier.model, fit, val, label_vectors, epochs=epochs, seed=seed)
        elif setting == "full":  # HAPT: what `iotlm train finetune` ships, without saving it
            from models.baselines import fit_feature_svm

            baseline = fit_feature_svm(fit, val, seed)
            hapt = dataset == "hapt"  # BasicMotions: 10 Hz, gravity removed, no reference or SVM to fuse
            finetune_full_shot(classifier, fit, val, seed, epochs, reference=hapt, features=hapt, c=baseline.c)
        n_fit = len(fit) if setting != "zero-shot" else 0
        report = classification_metrics(test.y, predict_windows(classifier, test), test.labels)  # single window
        if setting == "full" and dataset == "hapt":
            from models.gravity import device_references

            up = device_references(test.acc, test.subjects)  # each test subject's label-free reference
            p = classifier.predict_proba(test.acc, test.gyro, test.rate_hz, test.labels, test.placement, up=up)
            m = classification_metrics(test.y, p.argmax(1), test.labels)
            report["per_device"] = {k: m[k] for k in ("accuracy", "macro_f1", "per_class_f1")}
        if setting == "full":
            report["baseline"] = _feature_baseline(fit, val, test, seed, baseline)
    test_subjects = sorted({int(s) for s in test.subjects}) if dataset == "hapt" else []
    reference = {"source": "UniMTS (seed 001), UCI-HAR, 6 classes", **UNIMTS_UCI_HAR.get(setting, {})} if dataset == "hapt" else None
    report.update({
        "dataset": dataset, "setting": setting, "shots": shots if setting == "few-shot" else None,
        "n_windows": {"fit": n_fit, "validation": len(val) if n_fit else 0, "test": len(test)},
        "test_subjects": test_subjects, "model_version": version, "reference": reference,
        "seconds": round(time.time() - start, 1),
    })
    return report


def zero_shot_validation(model: str | None = None, checkpoint_dir=None) -> dict:
    """Zero-shot on the HAPT validation subjects (train subjects 1, 11, 21), placement told and unknown:
    how zero-shot training runs are compared before any of them meets the test subjects. The score is
    the mean macro-F1 of the two (fixed before the first comparison, 2026-12-07)."""
    from dataclasses import replace

    from models.datasets import HAPT_VALIDATION_SUBJECTS, hapt_windows
    from models.inference import MotionClassifier

    windows = hapt_windows(HAPT_VALIDATION_SUBJECTS)
    classifier = MotionClassifier.load(model, device="cpu", checkpoint_dir=checkpoint_dir)
    rows = {}
    for placement in (windows.placement, "unknown"):
        predicted = predict_windows(classifier, replace(windows, placement=placement))
        rows[placement] = classification_metrics(windows.y, predicted, windows.labels)
    return {"dataset": "hapt", "setting": "zero-shot-validation", "model_version": classifier.version,
            "subjects": list(HAPT_VALIDATION_SUBJECTS), "n_windows": len(windows),
            "score": float(np.mean([m["macro_f1"] for m in rows.values()])),
            "told": rows[windows.placement], "unknown": rows["unknown"]}
