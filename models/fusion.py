"""A fine-tuned motion model fused with the classic feature SVM (models/baselines.py), shipped in its checkpoint.

Issue 12 item 4: the feature SVM beat every single fine-tuned encoder on HAPT, and their fusion beat both. The
fusion is `p ∝ p_deep^w * p_svm^(1-w)`, with the deep model's weight w chosen on the validation subjects
(`choose_weight`) by an SVM fitted on the fit subjects only, so no validation window was seen by the SVM that
scores it; the shipped SVM is then refitted on fit + validation, as the baseline is.

The SVM travels as plain arrays in `features.safetensors` beside the model and is scored here in numpy
(`PortableSVM`, libsvm's one-vs-one decision values, Platt sigmoids and pairwise coupling; checked against
scikit-learn in tests/models/test_fusion.py), so loading a checkpoint never unpickles anything.

The SVM knows one placement, rate and window (HAPT's waist phone, 50 Hz, 2.56 s) and needs the gyroscope;
`FeatureFusion.serves` says which calls it can score, and the others get the deep model alone.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WEIGHTS = tuple(float(w) for w in np.round(np.linspace(0.0, 1.0, 11), 2))  # of the deep model
FEATURES_FILE = "features.safetensors"
MIN_PROB = 1e-7  # libsvm's clip of the pairwise probabilities


def log_p(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-6, 1.0))


def fuse(deep: np.ndarray, features: np.ndarray, weight: float) -> np.ndarray:
    """Weighted geometric mean of two (N, C) probability arrays, renormalised."""
    z = weight * log_p(deep) + (1.0 - weight) * log_p(features)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _pairwise_coupling(r: np.ndarray) -> np.ndarray:
    """libsvm's multiclass_probability (Wu, Lin and Weng 2004, method 2), for (N, K, K) pairwise probabilities
    r[n, i, j] = P(i | i or j) at once; each window stops iterating where libsvm would stop it."""
    n, k = r.shape[:2]
    q = -np.transpose(r, (0, 2, 1)) * r
    diagonal = (r ** 2).sum(1) - np.einsum("nii->ni", r) ** 2
    q[:, np.arange(k), np.arange(k)] = diagonal
    p = np.full((n, k), 1.0 / k)
    active = np.ones(n, dtype=bool)
    for _ in range(max(100, k)):
        qp = np.einsum("nij,nj->ni", q, p)
        pqp = (p * qp).sum(1)
        active &= np.abs(qp - pqp[:, None]).max(1) >= 0.005 / k
        if not active.any():
            break
        a = np.flatnonzero(active)
        pa, qpa, pqpa, qa = p[a], qp[a], pqp[a], q[a]
        for t in range(k):
            diff = (-qpa[:, t] + pqpa) / qa[:, t, t]
            pa[:, t] += diff
            pqpa = (pqpa + diff * (diff * qa[:, t, t] + 2 * qpa[:, t])) / (1 + diff) / (1 + diff)
            qpa = (qpa + diff[:, None] * qa[:, t]) / (1 + diff)[:, None]
            pa /= (1 + diff)[:, None]
        p[a] = pa
    return p


@dataclass
class PortableSVM:
    """A fitted StandardScaler + RBF SVC(probability=True) as arrays; `predict_proba` as scikit-learn's."""

    mean: np.ndarray  # (F,) the scaler's
    scale: np.ndarray  # (F,)
    support_vectors: np.ndarray  # (S, F), grouped by class
    dual_coef: np.ndarray  # (K-1, S)
    intercept: np.ndarray  # (K(K-1)/2,), pairs (0,1), (0,2), ..., (K-2,K-1)
    n_support: np.ndarray  # (K,)
    prob_a: np.ndarray  # (K(K-1)/2,) Platt sigmoid per pair
    prob_b: np.ndarray
    gamma: float

    @classmethod
    def from_pipeline(cls, pipeline) -> PortableSVM:
        scaler, svc = pipeline[0], pipeline[-1]
        if svc.kernel != "rbf" or not svc.probability:
            raise ValueError("PortableSVM serves an RBF SVC fitted with probability=True")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # probA_/probB_: see fit_svm
            return cls(scaler.mean_.copy(), scaler.scale_.copy(), svc.support_vectors_.copy(),
                       np.asarray(svc._dual_coef_).copy(), np.asarray(svc._intercept_).copy(),
                       svc.n_support_.astype(np.int64), svc.probA_.copy(), svc.probB_.copy(), float(svc._gamma))

    @property
    def n_classes(self) -> int:
        return len(self.n_support)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """(N, F) raw features -> (N, pairs) one-vs-one decision values (positive: the first class of the pair)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        sq = (z ** 2).sum(1)[:, None] + (self.support_vectors ** 2).sum(1)[None] - 2 * z @ self.support_vectors.T
        kernel = np.exp(-self.gamma * np.maximum(sq, 0.0))  # (N, S)
        start = np.concatenate([[0], np.cumsum(self.n_support)])
        out, pair = np.empty((len(z), len(self.intercept))), 0
        for i in range(self.n_classes):
            for j in range(i + 1, self.n_classes):
                si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
                out[:, pair] = (kernel[:, si] @ self.dual_coef[j - 1, si] + kernel[:, sj] @ self.dual_coef[i, sj]
                                + self.intercept[pair])
                pair += 1
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        decision = self.decision(x)
        # libsvm's sigmoid_predict, in its overflow-safe form: P(first class) = 1 / (1 + exp(A f + B))
        f = decision * self.prob_a + self.prob_b
        pairwise = np.where(f >= 0, np.exp(-np.abs(f)) / (1 + np.exp(-np.abs(f))), 1 / (1 + np.exp(-np.abs(f))))
        pairwise = np.clip(pairwise, MIN_PROB, 1 - MIN_PROB)
        k = self.n_classes
        first, second = np.triu_indices(k, 1)  # libsvm's pair order: (0,1), (0,2), ..., (K-2,K-1)
        r = np.zeros((len(decision), k, k))
        r[:, first, second], r[:, second, first] = pairwise, 1 - pairwise
        return _pairwise_coupling(r)

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)) for name in
                ("mean", "scale", "support_vectors", "dual_coef", "intercept", "n_support", "prob_a", "prob_b")}


@dataclass
class FeatureFusion:
    """The checkpoint's feature SVM over its head labels, and the weight of the deep model in the fusion."""

    svm: PortableSVM
    labels: list[str]  # the SVM's classes, in its order (the fine-tuned head's labels)
    weight: float
    rate_hz: float = 50.0  # the windows it was fitted on: HAPT's waist phone
    n_samples: int = 128
    placement: str = "waist"
    info: dict = field(default_factory=dict)  # C, validation scores by weight: recorded, not used

    def serves(self, labels: list[str], gyro, rate_hz: float, n_samples: int, placement: str) -> bool:
        """Its features need the gyroscope, a rate whose spectrum reaches its top band (>= 25 Hz), a window at
        least as long as its own, its placement (or an unknown one) and labels it knows."""
        from models.baselines import BANDS_HZ

        long_enough = n_samples / rate_hz >= self.n_samples / self.rate_hz - 1e-6
        return (gyro is not None and rate_hz >= 2 * BANDS_HZ[-1][1] and long_enough
                and placement in (self.placement, "unknown") and bool(labels) and set(labels) <= set(self.labels))

    def feature_proba(self, acc: np.ndarray, gyro: np.ndarray, rate_hz: float, labels: list[str]) -> np.ndarray:
        """(B, T, 3) windows -> (B, len(labels)) SVM probabilities, renormalised over the requested labels;
        windows are resampled to the SVM's rate and centre-cropped to its length first."""
        from models.baselines import window_features

        acc, gyro = (_fit_window(x, rate_hz, self.rate_hz, self.n_samples) for x in (acc, gyro))
        p = self.svm.predict_proba(window_features(acc, gyro, self.rate_hz))
        p = p[:, [self.labels.index(label) for label in labels]]
        return p / np.maximum(p.sum(1, keepdims=True), 1e-12)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        meta = {"labels": self.labels, "weight": self.weight, "rate_hz": self.rate_hz, "n_samples": self.n_samples,
                "placement": self.placement, "gamma": self.svm.gamma, "info": self.info}
        save_file(self.svm.tensors(), str(Path(directory) / FEATURES_FILE), metadata={"fusion": json.dumps(meta)})

    @classmethod
    def load(cls, directory: Path) -> FeatureFusion | None:
        """The checkpoint's fusion, or None when it has no feature model."""
        from safetensors import safe_open

        path = Path(directory) / FEATURES_FILE
        if not path.exists():
            return None
        with safe_open(str(path), "np") as f:
            meta = json.loads(f.metadata()["fusion"])
            arrays = {name: f.get_tensor(name) for name in f.keys()}
        svm = PortableSVM(**arrays, gamma=float(meta["gamma"]))
        return cls(svm, list(meta["labels"]), float(meta["weight"]), float(meta["rate_hz"]), int(meta["n_samples"]),
                   str(meta["placement"]), dict(meta.get("info", {})))


def _fit_window(x: np.ndarray, rate_hz: float, target_hz: float, n_samples: int) -> np.ndarray:
    """(B, T, 3) at rate_hz -> (B, n_samples, 3) at target_hz: resampled (anti-aliased), centre-cropped."""
    x = np.asarray(x, np.float32)
    if abs(rate_hz - target_hz) > 1e-6:
        import torch

        from models.encoder import resample

        x = resample(torch.from_numpy(x), rate_hz, target_hz).numpy()
    start = max(0, (x.shape[1] - n_samples) // 2)
    return x[:, start : start + n_samples]


def fit_svm(windows, c: float, seed: int = 0, also=None) -> PortableSVM:
    """The baseline's StandardScaler + RBF SVC, with Platt probabilities, on `windows` (+ `also`), as arrays."""
    from models.baselines import svm_pipeline, window_features

    sets = [windows] + ([also] if also is not None else [])
    x = np.concatenate([window_features(w.acc, w.gyro, w.rate_hz) for w in sets])
    y = np.concatenate([w.y for w in sets])
    model = svm_pipeline(c, seed, probability=True)
    with warnings.catch_warnings():
        # scikit-learn 1.9 deprecates SVC(probability=True) (removed in 1.11: pyproject pins below it); its Platt
        # scaling is what the measured fusion used, and PortableSVM reproduces it exactly
        warnings.simplefilter("ignore", FutureWarning)
        return PortableSVM.from_pipeline(model.fit(x, y))


def svm_proba(svm: PortableSVM, windows) -> np.ndarray:
    from models.baselines import window_features

    return svm.predict_proba(window_features(windows.acc, windows.gyro, windows.rate_hz))


def choose_weight(y: np.ndarray, deep: np.ndarray, features: np.ndarray,
                  labels: list[str]) -> tuple[float, dict[float, float]]:
    """The deep model's weight with the best validation macro-F1 (ties: more weight on the deep model)."""
    from models.metrics import classification_metrics

    scores = {w: classification_metrics(y, fuse(deep, features, w).argmax(1), labels)["macro_f1"] for w in WEIGHTS}
    return max(scores, key=lambda w: (scores[w], w)), scores
