"""Full-shot on HAPT over several seeds: the product's recipe (models.train.finetune_full_shot) per seed, the
feature baseline of the same run, and the seed ensemble; mean and standard deviation over seeds.

Every seed runs what `iotlm train finetune` ships (motion-v1-hapt 1.2.0): the encoder fine-tuned on windows
turned by each subject's label-free gravity reference, with gyroscope dropout, fused with the feature SVM;
checkpoint, SVM C and fusion weight are chosen on the validation subjects (train subjects 1, 6, 11, 16, 21,
26). Each is scored on the test subjects once at the end, in two settings reported apart: single window (no
reference) and per device (each test subject's reference from its own unlabelled windows), each with and
without the fused SVM, and per device without the gyroscope. Nothing is chosen on the test subjects.
"""

from __future__ import annotations

import sys
import time

import numpy as np

VARIANTS = ("single_window", "per_device", "single_window_deep", "per_device_deep", "per_device_no_gyro")


def run_full_shot(model: str | None = None, seeds=(0, 1, 2), epochs: int = 15, gyro_dropout: float = 0.2,
                  checkpoint_dir=None, limit: int | None = None, reference: bool = True) -> dict:
    """Per-seed fine-tunes with the product's recipe, the baseline, the seed ensemble; mean and std over seeds.
    reference=False: the deep model fits and selects on raw windows (as the earlier single-window runs did)."""
    import torch

    from models.baselines import fit_feature_svm
    from models.evaluate import splits
    from models.inference import MotionClassifier
    from models.metrics import classification_metrics
    from models.train import FINETUNE_VALIDATION_SUBJECTS, finetune_full_shot, full_shot_test_metrics

    start = time.time()
    fit, val, test = splits("hapt", limit, 0, FINETUNE_VALIDATION_SUBJECTS)

    def metrics(p) -> dict:
        m = classification_metrics(test.y, p.argmax(1), test.labels)
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class_f1": m["per_class_f1"]}

    baseline = fit_feature_svm(fit, val, 0)  # C on validation, refit on fit + validation
    runs, probabilities, version = [], {v: [] for v in VARIANTS}, None
    for seed in seeds:
        torch.manual_seed(seed)
        classifier = MotionClassifier.load(model, device="cpu", checkpoint_dir=checkpoint_dir)
        version = classifier.version
        chosen = finetune_full_shot(classifier, fit, val, seed, epochs, gyro_dropout, reference, features=True,
                                    c=baseline.c)
        report = full_shot_test_metrics(classifier, test)
        for variant in VARIANTS:
            probabilities[variant].append(report[variant].pop("probabilities"))
        by_weight = {str(w): v for w, v in chosen["validation_macro_f1_by_weight"].items()}
        runs.append({"seed": seed, "c": chosen["c"], "fusion_weight": chosen["fusion_weight"],
                     "validation_macro_f1_by_weight": by_weight, **report})
        print(f"seed {seed}: single window {report['single_window']['accuracy']:.3f} (deep "
              f"{report['single_window_deep']['accuracy']:.3f}), per device {report['per_device']['accuracy']:.3f} "
              f"(deep {report['per_device_deep']['accuracy']:.3f}), fusion weight {chosen['fusion_weight']}  "
              f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)

    def spread(variant: str) -> dict:
        out = {}
        for metric in ("accuracy", "macro_f1"):
            values = np.array([r[variant][metric] for r in runs])
            out[metric] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           "values": values.tolist()}
        return out

    return {
        "dataset": "hapt", "setting": "full (seeds)", "model_version": version, "seeds": list(seeds),
        "recipe": {"gyro_dropout": gyro_dropout, "epochs": epochs, "reference": reference, "features": True},
        "baseline": {"name": f"RBF-SVM on {baseline.n_features} features (models/baselines.py)", "c": baseline.c,
                     **metrics(np.eye(len(test.labels))[baseline.predict(test)])},
        **{variant: spread(variant) for variant in VARIANTS},
        "seed_ensemble": {variant: metrics(np.mean(probabilities[variant], axis=0)) for variant in VARIANTS},
        "runs": runs, "n_windows": {"fit": len(fit), "validation": len(val), "test": len(test)},
        "validation_subjects": list(FINETUNE_VALIDATION_SUBJECTS), "seconds": round(time.time() - start, 1),
    }
