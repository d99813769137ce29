"""MotionEncoder: an IMU window (any placement, rate, length; gyro optional) -> a 384-d text-space vector.

Input pipeline (`prepare_motion`): acc in m/s^2 (gravity kept: posture lives in it) and gyro in rad/s
are low-pass filtered, resampled to the model rate, centre-cropped or zero-padded to a fixed number
of samples with a validity mask; a missing gyro becomes zeros plus a flag. The network is a small
1-D conv stem (stride 4) + transformer over time, mean-pooled over valid tokens, projected to the
all-MiniLM-L6-v2 space so a window can be compared with any sentence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ingest.placements import ENCODER_PLACEMENTS, normalise_placement

GRAVITY = 9.80665
TOKEN_SAMPLES = 4  # input samples per transformer token (the stem's total stride)

# the embedding rows, shared with the frame contract (ingest/placements.py: which ones are served)
PLACEMENTS = ENCODER_PLACEMENTS


@dataclass
class MotionEncoderConfig:
    rate_hz: float = 25.0  # model sample rate
    n_samples: int = 64  # samples per window at rate_hz (2.56 s, the UCI-HAR window)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.1
    embed_dim: int = 384  # all-MiniLM-L6-v2
    placements: tuple[str, ...] = field(default_factory=lambda: PLACEMENTS)
    # motion-v2: 4 more input channels, the device's gravity reference ("up" in the device frame, zeros
    # when unknown; models/gravity.py) and a gravity-removed flag (1 when the window's mean specific
    # force is far below 1 g: a device sending linear acceleration). False = the motion-v1 architecture.
    gravity_inputs: bool = False

    @property
    def window_s(self) -> float:
        return self.n_samples / self.rate_hz

    @property
    def in_channels(self) -> int:
        return 10 if self.gravity_inputs else 6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["placements"] = list(self.placements)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MotionEncoderConfig:
        d = dict(d)
        d["placements"] = tuple(d.get("placements", PLACEMENTS))
        return cls(**d)


def placement_index(placement: str, placements: tuple[str, ...] = PLACEMENTS) -> int:
    name = normalise_placement(placement)
    return placements.index(name) if name in placements else 0


def resample(x: torch.Tensor, rate_hz: float, target_hz: float) -> torch.Tensor:
    """(B, T, C) at rate_hz -> (B, round(T * target/rate), C); box low-pass first when decimating."""
    b, t, c = x.shape
    n_out = max(1, int(round(t * target_hz / rate_hz)))
    y = x.transpose(1, 2)  # (B, C, T)
    width = int(round(rate_hz / target_hz))
    if width > 1:  # anti-aliasing, else 50 Hz walking harmonics fold into the 25 Hz band
        y = F.avg_pool1d(F.pad(y, ((width - 1) // 2, width // 2), mode="replicate"), width, stride=1)
    if n_out != t:
        y = F.interpolate(y, size=n_out, mode="linear", align_corners=False)
    return y.transpose(1, 2)


# below this mean specific force (in g) a window has no gravity in it: linear acceleration
LINEAR_ACC_MAX_G = 0.35


def gravity_channels(acc_g: torch.Tensor, up: np.ndarray | torch.Tensor | None) -> torch.Tensor:
    """(B, N, 3) acc in g, (B, 3) or (3,) unit "up" or None -> (B, N, 4): up (zeros if unknown), linear flag."""
    b, n, _ = acc_g.shape
    if up is None:
        ups = torch.zeros(b, 3)
    else:
        ups = torch.as_tensor(np.asarray(up, dtype=np.float32) if not torch.is_tensor(up) else up).float()
        ups = F.normalize(ups.expand(b, 3) if ups.ndim == 1 else ups, dim=-1)
    linear = (acc_g.mean(1).norm(dim=-1) < LINEAR_ACC_MAX_G).float()
    return torch.cat([ups, linear[:, None]], dim=-1)[:, None, :].expand(b, n, 4).to(acc_g.dtype)


def prepare_motion(
    acc: np.ndarray | torch.Tensor,
    gyro: np.ndarray | torch.Tensor | None,
    rate_hz: float,
    config: MotionEncoderConfig,
    up: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw windows -> model inputs: signal (B, N, config.in_channels), valid mask (B, N) bool, has_gyro
    (B,) bool. `up`: the device's gravity reference (config.gravity_inputs only)."""
    acc = torch.as_tensor(np.asarray(acc, dtype=np.float32) if not torch.is_tensor(acc) else acc).float()
    if acc.ndim == 2:
        acc = acc.unsqueeze(0)
    has_gyro = gyro is not None
    if has_gyro:
        gyro = torch.as_tensor(np.asarray(gyro, dtype=np.float32) if not torch.is_tensor(gyro) else gyro).float()
        gyro = gyro.reshape(acc.shape)
    else:
        gyro = torch.zeros_like(acc)
    # acc in g keeps both channels groups near unit scale
    signal = resample(torch.cat([acc / GRAVITY, gyro], dim=-1), rate_hz, config.rate_hz)
    if config.gravity_inputs:
        signal = torch.cat([signal, gravity_channels(signal[..., :3], up)], dim=-1)
    b, n, _ = signal.shape
    target = config.n_samples
    mask = torch.ones(b, min(n, target), dtype=torch.bool)
    if n > target:  # centre crop
        start = (n - target) // 2
        signal = signal[:, start : start + target]
    elif n < target:  # pad at the end; the mask hides the padding from attention and pooling
        signal = F.pad(signal, (0, 0, 0, target - n))
        mask = F.pad(mask, (0, target - n), value=False)
    return signal.contiguous(), mask, torch.full((b,), has_gyro, dtype=torch.bool)


class ConvStem(nn.Module):
    """(B, N, C) -> (B, N/4, d): local motion features; one token per 4 samples (0.16 s at 25 Hz)."""

    def __init__(self, d_model: int, in_channels: int = 6):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, d_model // 2, kernel_size=5, padding=2, stride=2)
        self.conv2 = nn.Conv1d(d_model // 2, d_model, kernel_size=5, padding=2, stride=2)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x.transpose(1, 2)))
        x = self.conv2(x).transpose(1, 2)
        return self.norm(x)


class MotionEncoder(nn.Module):
    def __init__(self, config: MotionEncoderConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        n_tokens = math.ceil(config.n_samples / TOKEN_SAMPLES)
        self.stem = ConvStem(d, config.in_channels)
        self.position = nn.Parameter(torch.zeros(1, n_tokens, d))
        self.placement = nn.Embedding(len(config.placements), d)
        self.gyro_flag = nn.Embedding(2, d)  # tells the model whether zeros mean "still" or "absent"
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, 4 * d, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.project = nn.Linear(d, config.embed_dim)
        nn.init.normal_(self.position, std=0.02)

    def tokens(self, signal, mask, has_gyro, placement) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token features (B, N/4, d) and their validity (B, N/4)."""
        x = self.stem(signal * mask.unsqueeze(-1))
        token_mask = mask[:, ::TOKEN_SAMPLES]
        x = x + self.position[:, : x.shape[1]]
        x = x + (self.placement(placement) + self.gyro_flag(has_gyro.long())).unsqueeze(1)
        x = self.transformer(x, src_key_padding_mask=~token_mask)
        return self.norm(x), token_mask

    def forward(self, signal, mask, has_gyro, placement) -> torch.Tensor:
        """(B, N, C), (B, N), (B,), (B,) long -> (B, embed_dim), not normalised."""
        x, token_mask = self.tokens(signal, mask, has_gyro, placement)
        weights = token_mask.unsqueeze(-1).float()
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.project(pooled)


class ContrastiveMotionModel(nn.Module):
    """MotionEncoder plus CLIP's learnable temperature and optional fine-tuned label prototypes."""

    def __init__(self, config: MotionEncoderConfig, head_labels: list[str] | None = None):
        super().__init__()
        self.encoder = MotionEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.head_labels = list(head_labels or [])
        # (C, 384) prototypes in text space, initialised from label text embeddings when fine-tuning
        self.head = nn.Parameter(torch.zeros(len(self.head_labels), config.embed_dim))

    def embed(self, signal, mask, has_gyro, placement) -> torch.Tensor:
        return F.normalize(self.encoder(signal, mask, has_gyro, placement), dim=-1)

    def logits(self, motion_unit: torch.Tensor, label_vectors: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarity (B, C) between unit motion vectors and label vectors."""
        scale = self.logit_scale.exp().clamp(max=100.0)
        return scale * motion_unit @ F.normalize(label_vectors, dim=-1).T
