"""Modalities of the adapter: one frozen encoder each, pinned by checkpoint name, version and file hash.

`motion`: the motion encoder's segment tokens pooled to `n_tokens` stretches of the window, each put through
the encoder's own text-space projection, plus the window's pooled embedding: (B, n_tokens + 1, 384), all unit
vectors in the all-MiniLM-L6-v2 space (the space the encoder's classifier scores labels in).
`env`: the room model's view of a 30-minute room window (models/rooms, `rooms-v1` by default): one token, its
EnvEncoder vector (128) beside its unit vector in the same 384-d text space: (B, 1, 512).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.inference import MotionClassifier, resolve_checkpoint
from models.llm.backbone import file_sha256

DEFAULT_MOTION_CHECKPOINT = "motion-v1-hapt"
DEFAULT_ENV_CHECKPOINT = "rooms-v1"


class MotionModality:
    name = "motion"
    feature_dim = 384

    def __init__(self, checkpoint: str = DEFAULT_MOTION_CHECKPOINT, n_tokens: int = 4, expect_sha256: str | None = None):
        self.directory = resolve_checkpoint(checkpoint)
        self.sha256 = file_sha256(self.directory / "model.safetensors")
        if expect_sha256 and expect_sha256 != self.sha256:
            raise ValueError(f"motion checkpoint {self.directory} has sha256 {self.sha256[:12]}..., the adapter was "
                             f"trained on {expect_sha256[:12]}...: retrain with `iotlm train llm-adapter`")
        self.classifier = MotionClassifier.load(self.directory, device="cpu")
        self.checkpoint = checkpoint
        self.n_tokens = n_tokens

    def pin(self) -> dict:
        return {"checkpoint": self.checkpoint, "version": self.classifier.version, "sha256": self.sha256,
                "feature_dim": self.feature_dim, "n_tokens": self.n_tokens}

    @torch.inference_mode()
    def features(self, acc: np.ndarray, gyro: np.ndarray | None, rate_hz: float, placement: str = "waist",
                 batch_size: int = 512) -> np.ndarray:
        from models.encoder import placement_index, prepare_motion

        model = self.classifier.model
        enc = model.encoder
        p = placement_index(placement, enc.config.placements)
        out = []
        for start in range(0, len(acc), batch_size):
            g = None if gyro is None else gyro[start : start + batch_size]
            signal, mask, has_gyro = prepare_motion(acc[start : start + batch_size], g, rate_hz, enc.config)
            place = torch.full((len(signal),), p, dtype=torch.long)
            tokens, token_mask = enc.tokens(signal, mask, has_gyro, place)
            w = token_mask.unsqueeze(-1).float()
            pooled = F.adaptive_avg_pool1d((tokens * w).transpose(1, 2), self.n_tokens).transpose(1, 2)
            share = F.adaptive_avg_pool1d(w.transpose(1, 2), self.n_tokens).transpose(1, 2).clamp(min=1e-6)
            segments = F.normalize(enc.project(pooled / share), dim=-1)
            whole = model.embed(signal, mask, has_gyro, place).unsqueeze(1)
            out.append(torch.cat([segments, whole], dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_tokens + 1, self.feature_dim), np.float32)


class EnvModality:
    name = "env"
    feature_dim = 128 + 384

    def __init__(self, checkpoint: str = DEFAULT_ENV_CHECKPOINT, expect_sha256: str | None = None):
        from models.rooms.model import RoomStateModel, resolve_room_checkpoint

        self.directory = resolve_room_checkpoint(checkpoint)
        self.sha256 = file_sha256(self.directory / "model.safetensors")
        if expect_sha256 and expect_sha256 != self.sha256:
            raise ValueError(f"room checkpoint {self.directory} has sha256 {self.sha256[:12]}..., the adapter was "
                             f"trained on {expect_sha256[:12]}...: retrain with `iotlm train llm-adapter`")
        self.model = RoomStateModel.load(self.directory)
        self.checkpoint = checkpoint

    def pin(self) -> dict:
        return {"checkpoint": self.checkpoint, "version": self.model.version, "sha256": self.sha256,
                "feature_dim": self.feature_dim, "n_tokens": 1}

    @torch.inference_mode()
    def features(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """(B, N_INPUT, WINDOW_MIN) room windows (models.rooms.windows) -> (B, 1, 512)."""
        net = self.model.net
        out = []
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
            z = net.encoder(chunk)
            text = F.normalize(net.to_text(z), dim=-1)
            out.append(torch.cat([z, text], dim=1).unsqueeze(1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1, self.feature_dim), np.float32)
