"""Batch augmentations of IMU windows (torch, (B, T, 6) signals = acc in g then gyro).

Rotations are PARTIAL by design: a waist or wrist sensor's posture information is the direction of
gravity in the sensor frame, and a full SO(3) rotation (UniMTS) makes sitting, standing and lying
indistinguishable. Acc and gyro of one window are rotated together (same rigid mount). Gravity is
never removed or normalised away (unlike CrossHAR's per-window normalisation).
"""

from __future__ import annotations

import math

import torch


def random_rotations(n: int, max_angle_rad: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 3, 3) rotations about uniformly random axes by angles uniform in [0, max_angle_rad]."""
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    angle = torch.rand(n, generator=generator) * max_angle_rad
    k = torch.zeros(n, 3, 3)  # cross-product matrices, Rodrigues' formula
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3).expand(n, 3, 3) + s * k + (1 - c) * (k @ k)


def rotate(signal: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate acc (channels 0-2) and gyro (3-5) of each window by its (3, 3) rotation; with gravity
    inputs (10 channels) the gravity reference (6-8) turns with them and the flag (9) stays."""
    r = rotation.to(signal.device, signal.dtype).transpose(1, 2)
    parts = [signal[..., :3] @ r, signal[..., 3:6] @ r]
    if signal.shape[-1] > 6:
        parts += [signal[..., 6:9] @ r, signal[..., 9:]]
    return torch.cat(parts, dim=-1)


def augment(
    signal: torch.Tensor,
    max_angle_deg: float = 30.0,
    scale: float = 0.1,
    jitter: float = 0.02,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Partial rotation, per-window amplitude scaling of the dynamic part, additive jitter."""
    b = signal.shape[0]
    out = rotate(signal, random_rotations(b, math.radians(max_angle_deg), generator))
    extra = out[..., 6:]  # gravity inputs (if any): rotated above, never scaled or jittered
    out = out[..., :6]
    # scale motion around the window mean so gravity (the mean of acc) keeps its magnitude
    mean = out.mean(1, keepdim=True)
    factor = 1 + scale * (2 * torch.rand(b, 1, 1, generator=generator) - 1)
    out = mean + (out - mean) * factor.to(out.device)
    out = out + jitter * torch.randn(out.shape, generator=generator).to(out.device)
    return torch.cat([out, extra], dim=-1) if extra.shape[-1] else out
