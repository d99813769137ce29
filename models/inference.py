"""MotionClassifier: load a checkpoint, classify IMU windows against any label set given in words.

A checkpoint is a directory `models/checkpoints/<name>/` with `model.safetensors` and `config.json`
(architecture, rate, window, version, training data, metrics). Scores are scaled cosine similarities
between the window's embedding and one vector per label, softmaxed over the requested labels:
- a label that a fine-tuned head knows (same phrase) uses the head's learned prototype;
- any other label uses its prompt-ensembled text embedding, so every checkpoint answers any label set.
A fine-tuned checkpoint may carry a feature SVM (`features.safetensors`, models/fusion.py) fused with the
encoder for the windows and labels it serves (motion-v1-hapt 1.2.0); other windows get the encoder alone.
Text vectors for the default and head labels are stored in the checkpoint, so the usual label set
needs no language model at run time; other labels load all-MiniLM-L6-v2 once (a few seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ingest.placements import SERVED_PLACEMENTS, unserved_reason
from models.encoder import ContrastiveMotionModel, MotionEncoderConfig, placement_index, prepare_motion
from models.fusion import FeatureFusion, fuse
from models.text import label_to_phrase

# Grounding of unseen label wordings in the trained concepts, (temperature, weight): off. (0.05, 0.75) won on
# validation subjects with validation wordings and lost on the test wordings (docs/models.md), so the default
# stays the label's own text vector; `iotlm eval --dataset all --ground T,W` reruns the table with it.
WORDING_GROUNDING = (0.05, 0.0)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_checkpoint(path_or_name: str | Path | None, checkpoint_dir: Path | None = None) -> Path:
    """A directory path, or a name under the settings' checkpoint_dir (None = settings default)."""
    from iotlm.settings import Settings

    if path_or_name is None or checkpoint_dir is None:
        models = Settings().models
        checkpoint_dir = checkpoint_dir or models.checkpoint_dir
        path_or_name = path_or_name or models.default_model
    path = Path(path_or_name)
    if (path / "config.json").exists():
        return path
    named = Path(checkpoint_dir) / str(path_or_name)
    if (named / "config.json").exists():
        return named
    raise FileNotFoundError(f"no checkpoint at {path} or {named}")


def save_checkpoint(model: ContrastiveMotionModel, directory: Path, meta: dict, text_vectors: dict[str, np.ndarray]) -> Path:
    """Write model.safetensors + config.json. `text_vectors` maps label phrases to their text vectors."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    phrases = sorted(text_vectors)
    if phrases:
        tensors["text_vectors"] = torch.from_numpy(np.stack([text_vectors[p] for p in phrases]).astype(np.float32))
    save_file(tensors, str(directory / "model.safetensors"))
    config = {
        **meta,
        "architecture": {"name": "MotionEncoder", **model.encoder.config.to_dict()},
        "rate_hz": model.encoder.config.rate_hz,
        "window_s": model.encoder.config.window_s,
        "head_labels": model.head_labels,
        "text_phrases": phrases,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


class UnservedPlacement(ValueError):
    """A placement the checkpoint cannot answer for (its embedding was never trained)."""


class MotionClassifier:
    def __init__(self, model: ContrastiveMotionModel, config: dict, text_vectors: dict[str, np.ndarray], device: str):
        self.model = model.to(device).eval()
        self.config = config
        self.device = device
        self.version: str = config["version"]
        self.rate_hz: float = float(config["rate_hz"])
        self.window_s: float = float(config["window_s"])
        self.default_labels: list[str] = list(config["default_labels"])
        self.text_vectors = dict(text_vectors)  # label phrase -> (384,) unit vector
        # placements whose embedding was trained (older checkpoints: the simulator's six); others are refused
        self.served_placements: tuple[str, ...] = tuple(config.get("served_placements", SERVED_PLACEMENTS))
        self._text_encoder = None
        self.grounding: tuple[float, float] = WORDING_GROUNDING  # (temperature, weight); weight 0: raw text vectors
        self._grounded: dict[tuple, np.ndarray] = {}  # (phrase, grounding) -> grounded vector
        self._trained: set[str] | None = None
        self._concepts: np.ndarray | None = None
        self.fusion = None  # models.fusion.FeatureFusion, when the checkpoint ships one

    @classmethod
    def load(cls, path_or_name: str | Path | None = None, device: str = "auto", checkpoint_dir: Path | None = None) -> MotionClassifier:
        from safetensors.torch import load_file

        directory = resolve_checkpoint(path_or_name, checkpoint_dir)
        config = json.loads((directory / "config.json").read_text())
        arch = {k: v for k, v in config["architecture"].items() if k != "name"}
        model = ContrastiveMotionModel(MotionEncoderConfig.from_dict(arch), config.get("head_labels"))
        tensors = load_file(str(directory / "model.safetensors"))
        text_vectors = {}
        if "text_vectors" in tensors:
            text_vectors = dict(zip(config["text_phrases"], tensors.pop("text_vectors").numpy()))
        model.load_state_dict(tensors)
        classifier = cls(model, config, text_vectors, resolve_device(device))
        classifier.fusion = FeatureFusion.load(directory)
        return classifier

    def label_vectors(self, labels: list[str]) -> torch.Tensor:
        """(C, 384): the head prototype for labels the head knows, else the label's text vector; with
        `self.grounding` = (temperature, weight > 0), a label in words the encoder was never aligned with is
        grounded in the trained concepts (`models.text.ground_in_concepts`; off by default: docs/models.md)."""
        phrases = [label_to_phrase(label) for label in labels]
        head = {label_to_phrase(h): i for i, h in enumerate(self.model.head_labels)}
        unseen = ([p for p in dict.fromkeys(phrases) if p not in head and p not in self._trained_phrases()]
                  if self.grounding[1] > 0 else [])  # off by default: no simulator import on the stream's path
        missing = [p for p in phrases if p not in self.text_vectors]
        ungrounded = [p for p in unseen if (p, self.grounding) not in self._grounded]
        if missing or ungrounded:
            self._ground(missing, ungrounded)
        rows = [
            self.model.head[head[p]].detach().cpu() if p in head
            else torch.from_numpy(self._grounded.get((p, self.grounding), self.text_vectors[p]))
            for p in phrases
        ]
        return torch.stack(rows).to(self.device)

    def _trained_phrases(self) -> set[str]:
        """Phrases the encoder was aligned with as names (the simulator's activities, the stored defaults)."""
        if self._trained is None:
            from models.simulator import ACTIVITIES

            self._trained = {label_to_phrase(a) for a in ACTIVITIES} | set(self.config.get("text_phrases", []))
        return self._trained

    def _ground(self, missing: list[str], ungrounded: list[str]) -> None:
        """Text vectors for the `missing` phrases; grounded vectors for the `ungrounded` ones (grounding on)."""
        from models.text import TextEncoder, ground_in_concepts, trained_concepts

        if self._text_encoder is None:
            self._text_encoder = TextEncoder()
        if missing:
            self.text_vectors.update(zip(missing, self._text_encoder.embed_labels(missing)))
        if ungrounded:
            if self._concepts is None:
                self._concepts = trained_concepts(self._text_encoder)
            raw = np.stack([self.text_vectors[p] for p in ungrounded])
            grounded = ground_in_concepts(raw, self._concepts, *self.grounding)
            self._grounded.update({(p, self.grounding): v for p, v in zip(ungrounded, grounded)})

    @property
    def gravity_inputs(self) -> bool:
        """True when the encoder takes the gravity reference as an input (motion-v2)."""
        return self.model.encoder.config.gravity_inputs

    def check_placement(self, placement: str) -> None:
        """Raise UnservedPlacement (a ValueError, with the reason) for a placement this model never trained."""
        reason = unserved_reason(placement, self.served_placements)
        if reason is not None:
            raise UnservedPlacement(reason)

    @torch.inference_mode()
    def embed(self, acc: np.ndarray, gyro: np.ndarray | None, rate_hz: float, placement: str = "unknown",
              batch_size: int = 1024, up: np.ndarray | None = None) -> np.ndarray:
        """(B, T, 3) windows -> (B, 384) unit vectors in the text space. `up` ((3,) or (B, 3)): the
        device's gravity reference, an input of models with gravity inputs (ignored by others)."""
        self.check_placement(placement)
        out = []
        p = placement_index(placement, self.model.encoder.config.placements)
        for start in range(0, len(acc), batch_size):
            g = None if gyro is None else gyro[start : start + batch_size]
            u = None if up is None or np.ndim(up) == 1 else up[start : start + batch_size]
            signal, mask, has_gyro = prepare_motion(acc[start : start + batch_size], g, rate_hz, self.model.encoder.config,
                                                    up=up if np.ndim(up) == 1 else u)
            place = torch.full((len(signal),), p, dtype=torch.long)
            emb = self.model.embed(signal.to(self.device), mask.to(self.device), has_gyro.to(self.device), place.to(self.device))
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.encoder.config.embed_dim), np.float32)

    @torch.inference_mode()
    def predict_proba(self, acc: np.ndarray, gyro: np.ndarray | None, rate_hz: float, labels: list[str],
                      placement: str = "unknown", up: np.ndarray | None = None) -> np.ndarray:
        """(B, T, 3) acc in m/s^2 (gravity included), optional gyro rad/s -> (B, len(labels)) probabilities.
        `up`: the device's gravity reference ((3,) or (B, 3), models.gravity), when known: an input of
        models with gravity inputs (motion-v2); older models get windows turned so that it matches the
        "up" they were trained with (waist only: models.gravity.ADAPTIVE_PLACEMENTS). A checkpoint's feature
        SVM (self.fusion) scores the raw windows it serves, and its opinion is fused with the encoder's."""
        raw_acc, raw_gyro = acc, gyro
        if up is not None and not self.gravity_inputs:
            from models.gravity import ADAPTIVE_PLACEMENTS, align_to_reference

            if placement in ADAPTIVE_PLACEMENTS:  # elsewhere an older model has no known trained "up"
                acc, gyro = align_to_reference(acc, gyro, up)
            up = None
        motion = torch.from_numpy(self.embed(acc, gyro, rate_hz, placement, up=up)).to(self.device)
        logits = self.model.logits(motion, self.label_vectors(labels))
        p = torch.softmax(logits, dim=-1).cpu().numpy()
        phrases = [label_to_phrase(label) for label in labels]
        if self.fusion is not None and len(p) and self.fusion.serves(phrases, raw_gyro, rate_hz, np.shape(raw_acc)[1], placement):
            p = fuse(p, self.fusion.feature_proba(raw_acc, raw_gyro, rate_hz, phrases), self.fusion.weight)
        return p
