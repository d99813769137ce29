"""The feature SVM that ships inside a fine-tuned checkpoint (models/fusion.py): scored in numpy exactly as
scikit-learn scores it, saved without pickle, fused only where it serves."""

import warnings

import numpy as np
import pytest

from models.fusion import FeatureFusion, PortableSVM, fuse
from models.inference import MotionClassifier


def _fitted(k: int, seed: int = 0):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    y = np.arange(240) % k
    x = rng.normal(size=(240, 7)) + y[:, None] * 0.7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True) is deprecated from scikit-learn 1.9
        return make_pipeline(StandardScaler(), SVC(C=3.0, probability=True, random_state=seed)).fit(x, y), rng


@pytest.mark.parametrize("k", [2, 3, 6])
def test_portable_svm_gives_scikit_learns_probabilities(k):
    pipeline, rng = _fitted(k)
    x = rng.normal(size=(40, 7)) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert np.allclose(PortableSVM.from_pipeline(pipeline).predict_proba(x), pipeline.predict_proba(x), atol=1e-9)


def test_fusion_is_a_renormalised_weighted_geometric_mean():
    deep, features = np.array([[0.7, 0.2, 0.1]]), np.array([[0.1, 0.8, 0.1]])
    assert np.allclose(fuse(deep, features, 1.0), deep) and np.allclose(fuse(deep, features, 0.0), features)
    half = fuse(deep, features, 0.5)
    expected = np.sqrt(deep * features)
    assert np.allclose(half, expected / expected.sum())


def _hapt_like(n=6, seed=0):
    rng = np.random.default_rng(seed)
    acc = rng.normal(0, 1.0, size=(n, 128, 3)) + np.array([9.6, -1.7, -0.6])
    return acc, rng.normal(0, 0.3, size=(n, 128, 3))


def test_a_checkpoint_with_a_feature_model_fuses_only_what_it_serves(tmp_path):
    """Saved as safetensors beside the model and loaded with it; fused for its labels, its placement (or an
    unknown one), with a gyroscope, at >= 25 Hz and a long enough window; the encoder alone otherwise."""
    from models.baselines import window_features
    from models.inference import save_checkpoint

    labels = ["walking", "sitting", "lying down"]
    acc, gyro = _hapt_like(30)
    x = window_features(acc, gyro, 50.0)
    pipeline, _ = _fitted(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pipeline.fit(x, np.arange(30) % 3)  # an SVM over the real feature count
    classifier = MotionClassifier.load("motion-v1", device="cpu")
    deep = classifier.predict_proba(acc, gyro, 50.0, labels, "waist")
    fusion = FeatureFusion(PortableSVM.from_pipeline(pipeline), labels, 0.3, info={"c": 3.0})
    directory = save_checkpoint(classifier.model, tmp_path / "fused", classifier.config, classifier.text_vectors)
    fusion.save(directory)
    loaded = MotionClassifier.load(directory, device="cpu")
    assert loaded.fusion is not None and loaded.fusion.weight == 0.3 and loaded.fusion.labels == labels
    expected = fuse(deep, pipeline.predict_proba(x), 0.3)
    assert np.allclose(loaded.predict_proba(acc, gyro, 50.0, labels, "waist"), expected, atol=1e-5)
    assert np.allclose(loaded.predict_proba(acc, gyro, 50.0, labels, "unknown"),
                       fuse(classifier.predict_proba(acc, gyro, 50.0, labels, "unknown"), pipeline.predict_proba(x), 0.3), atol=1e-5)
    # a subset of its labels: its probabilities renormalised over them
    sub = loaded.predict_proba(acc, gyro, 50.0, labels[:2], "waist")
    p = pipeline.predict_proba(x)[:, :2]
    assert np.allclose(sub, fuse(classifier.predict_proba(acc, gyro, 50.0, labels[:2], "waist"), p / p.sum(1, keepdims=True), 0.3), atol=1e-5)
    # what it does not serve: the encoder alone
    for args in ((acc, None, 50.0, labels, "waist"), (acc, gyro, 50.0, labels + ["cycling"], "waist"),
                 (acc, gyro, 50.0, labels, "wrist"), (acc[:, :100], gyro[:, :100], 50.0, labels, "waist"),
                 (acc[:, ::3], gyro[:, ::3], 50.0 / 3, labels, "waist")):
        assert np.allclose(loaded.predict_proba(*args), classifier.predict_proba(*args), atol=1e-6), args[2:]
    # a 100 Hz window of the same length in seconds is resampled to the SVM's rate before its features
    fast = np.repeat(acc, 2, axis=1), np.repeat(gyro, 2, axis=1)
    assert loaded.predict_proba(*fast, 100.0, labels, "waist").shape == (30, 3)


def test_the_model_registry_hashes_the_fused_svm_when_a_checkpoint_has_one(tmp_path):
    """The registry re-hashes a version's files before promoting it: the SVM file must be among them."""
    import shutil

    from finetune.registry import file_hashes
    from models.inference import resolve_checkpoint

    shipped = resolve_checkpoint("motion-v1-hapt")
    copy = shutil.copytree(shipped, tmp_path / "v")
    files, content = file_hashes(copy)
    assert set(files) == {"config.json", "model.safetensors", "features.safetensors"}
    (copy / "features.safetensors").write_bytes((copy / "features.safetensors").read_bytes()[:-1] + b"\0")
    assert file_hashes(copy)[1] != content
    (copy / "features.safetensors").unlink()
    assert set(file_hashes(copy)[0]) == {"config.json", "model.safetensors"}
