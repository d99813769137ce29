"""Checkpoints round-trip; the shipped checkpoint loads and answers any label set; the CLI works."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from iotlm.cli import app
from models.encoder import ContrastiveMotionModel, MotionEncoderConfig
from models.inference import MotionClassifier, save_checkpoint
from models.text import label_to_phrase

LABELS = ["walking", "sitting", "lying down"]


def windows(n=5, t=128, seed=0):
    rng = np.random.default_rng(seed)
    acc = rng.normal(0, 1, (n, t, 3)).astype(np.float32) + np.array([9.8, 0, 0], np.float32)
    return acc, rng.normal(0, 0.3, (n, t, 3)).astype(np.float32)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    config = MotionEncoderConfig(d_model=32, n_layers=1, n_heads=2)
    model = ContrastiveMotionModel(config, head_labels=["walking", "sitting"])
    torch.nn.init.normal_(model.head)
    vectors = {label_to_phrase(x): np.eye(384, dtype=np.float32)[i] for i, x in enumerate(LABELS)}
    save_checkpoint(model, tmp_path / "tiny-v0", {"version": "tiny-0", "default_labels": LABELS}, vectors)
    loaded = MotionClassifier.load(tmp_path / "tiny-v0", device="cpu")
    assert loaded.version == "tiny-0" and loaded.rate_hz == 25.0 and loaded.window_s == 2.56
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    acc, gyro = windows()
    p = loaded.predict_proba(acc, gyro, 50.0, LABELS, placement="waist")
    assert p.shape == (5, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    # head labels use the learned prototypes; "lying down" falls back to its stored text vector
    expected = torch.stack([model.head[0], model.head[1], torch.from_numpy(vectors["lying down"])])
    assert torch.allclose(loaded.label_vectors(LABELS), expected)


def test_shipped_checkpoint_predicts_default_and_new_labels():
    clf = MotionClassifier.load(None, device="cpu")
    assert clf.default_labels and clf.version
    acc, gyro = windows(n=7, t=333)
    p = clf.predict_proba(acc, None, 100.0, clf.default_labels)
    assert p.shape == (7, len(clf.default_labels)) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert clf.predict_proba(acc[:0], None, 100.0, clf.default_labels).shape == (0, len(clf.default_labels))
    # a label outside the stored vectors is embedded on the fly with all-MiniLM-L6-v2
    p = clf.predict_proba(acc, gyro, 100.0, ["brushing teeth", "walking"], placement="wrist")
    assert p.shape == (7, 2)


def test_cli_classify_and_eval_json(tmp_path):
    acc, gyro = windows(n=4, t=60)
    np.savez(tmp_path / "x.npz", acc=acc, gyro=gyro, sample_rate=20.0)
    runner = CliRunner()
    labels = ",".join(["walking", "sitting", "standing"])
    out = runner.invoke(app, ["classify", "--input", str(tmp_path / "x.npz"), "--labels", labels, "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["labels"] == ["walking", "sitting", "standing"]
    assert len(result["predictions"]) == 4 and np.allclose(np.sum(result["probabilities"], 1), 1, atol=1e-3)

    out = runner.invoke(app, ["eval", "--dataset", "hapt", "--setting", "zero-shot", "--limit", "30", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    for key in ("accuracy", "macro_f1", "per_class_f1", "confusion", "labels", "n_windows", "test_subjects",
                "model_version", "reference"):
        assert key in report
    assert 0 <= report["accuracy"] <= 1 and report["test_subjects"] == [2, 4, 9, 10, 12, 13, 18, 20, 24]
    assert report["n_windows"]["test"] == 30 and np.sum(report["confusion"]) == 30
    assert report["reference"]["accuracy"] == 35.2


def test_shipped_finetuned_checkpoint_mixes_head_and_text_labels():
    clf = MotionClassifier.load("motion-v1-hapt", device="cpu")
    assert clf.model.head_labels == clf.default_labels and len(clf.default_labels) == 6
    acc, gyro = windows(n=3)
    # "walking" and "sitting" use the fine-tuned prototypes, "running" its stored text vector
    p = clf.predict_proba(acc, gyro, 50.0, ["walking", "running", "sitting"], placement="waist")
    assert p.shape == (3, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    head = {label: i for i, label in enumerate(clf.model.head_labels)}
    assert torch.equal(clf.label_vectors(["sitting"])[0], clf.model.head[head["sitting"]].detach())


def test_cli_eval_few_shot_fine_tunes_on_train_subjects_only():
    out = CliRunner().invoke(app, ["eval", "--setting", "few-shot", "--shots", "2", "--limit", "30", "--epochs", "1", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["setting"] == "few-shot" and report["shots"] == 2
    assert report["n_windows"] == {"fit": 12, "validation": 30, "test": 30}
    assert 0 <= report["macro_f1"] <= 1


def _balanced_test_windows(per_class=60, seed=0):
    """A class-balanced sample of HAPT test-subject windows (the subjects no training ever sees)."""
    from models.datasets import HAPT_TEST_SUBJECTS, hapt_windows

    data = hapt_windows(HAPT_TEST_SUBJECTS)
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(np.flatnonzero(data.y == c), per_class, replace=False)
                           for c in range(len(data.labels))])
    return data, pick


def test_shipped_checkpoints_keep_their_measured_accuracy_on_test_subjects():
    """Guards the published numbers (docs/models.md: zero-shot 56.1 %, fine-tuned 94.8 % single window) against regressions,
    with margins for the smaller, balanced sample."""
    data, pick = _balanced_test_windows()
    for name, floor in (("motion-v1", 0.5), ("motion-v1-hapt", 0.85)):
        clf = MotionClassifier.load(name, device="cpu")
        p = clf.predict_proba(data.acc[pick], data.gyro[pick], data.rate_hz, data.labels, placement=data.placement)
        accuracy = float((p.argmax(1) == data.y[pick]).mean())
        assert accuracy >= floor, (name, accuracy)


def test_cli_classify_refuses_bad_input_with_reasons(tmp_path):
    acc, gyro = windows(n=2, t=60)
    cases = {
        "no_rate.npz": (dict(acc=acc), [], "missing sample_rate"),
        "nan.npz": (dict(acc=np.where(acc > 10, np.nan, acc), sample_rate=20.0), [], "NaN"),
        "shape.npz": (dict(acc=acc[..., :2], sample_rate=20.0), [], "(N, T, 3)"),
        "gyro.npz": (dict(acc=acc, gyro=gyro[:, :30], sample_rate=20.0), [], "differs from acc"),
        "rate.npz": (dict(acc=acc, sample_rate=0.0), [], "positive"),
        "place.npz": (dict(acc=acc, sample_rate=20.0), ["--placement", "elbow"], "is not one of"),
        "labels.npz": (dict(acc=acc, sample_rate=20.0), ["--labels", " , "], "at least one label"),
    }
    runner = CliRunner()
    for file, (arrays, extra, reason) in cases.items():
        np.savez(tmp_path / file, **arrays)
        args = ["classify", "--input", str(tmp_path / file), "--labels", "walking,sitting", "--json", *extra]
        out = runner.invoke(app, args)
        # the reason as words: the error box wraps long lines (a long temp path moves the break)
        words = " ".join(out.output.replace("│", " ").split())
        assert out.exit_code == 2 and reason in words, (file, out.output)
