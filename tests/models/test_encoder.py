"""The motion input pipeline and encoder accept any rate, length, placement, with or without gyro."""

import numpy as np
import pytest
import torch

from models.augment import augment, random_rotations, rotate
from models.encoder import (
    GRAVITY, ContrastiveMotionModel, MotionEncoderConfig, placement_index, prepare_motion, resample,
)  # fmt: skip

CONFIG = MotionEncoderConfig(d_model=32, n_layers=1, n_heads=2)


@pytest.mark.parametrize("rate_hz", [10.0, 20.0, 50.0, 100.0])
@pytest.mark.parametrize("seconds", [1.0, 2.56, 7.3])
def test_prepare_motion_any_rate_and_length(rate_hz, seconds):
    n = int(seconds * rate_hz) + 1  # odd lengths on purpose
    acc = np.random.default_rng(0).normal(0, 1, (3, n, 3)).astype(np.float32) + [0, 0, GRAVITY]
    signal, mask, has_gyro = prepare_motion(acc, None, rate_hz, CONFIG)
    assert signal.shape == (3, CONFIG.n_samples, 6)
    valid = min(CONFIG.n_samples, round(n * CONFIG.rate_hz / rate_hz))
    assert mask.sum(1).tolist() == [valid] * 3
    assert not has_gyro.any() and (signal[..., 3:] == 0).all()
    assert torch.allclose(signal[:, :valid, 2].mean(), torch.tensor(1.0), atol=0.1)  # acc in g


def test_resampling_keeps_a_slow_sine():
    t = np.arange(0, 4, 1 / 100)
    x = torch.from_numpy(np.sin(2 * np.pi * t)).float().reshape(1, -1, 1)
    y = resample(x, 100.0, 25.0)[0, :, 0].numpy()
    assert y.shape == (100,)
    # output sample i sits at input position 4 i + 1.5 (linear interpolation, half-sample centres)
    expected = np.sin(2 * np.pi * (np.arange(100) * 4 + 1.5) / 100)
    assert np.abs(y[5:-5] - expected[5:-5]).max() < 0.05


def test_gyro_flag_and_placements_change_the_embedding():
    torch.manual_seed(0)
    model = ContrastiveMotionModel(CONFIG).eval()
    acc = np.random.default_rng(1).normal(0, 2, (4, 128, 3)).astype(np.float32)
    gyro = np.zeros_like(acc)
    place = torch.full((4,), placement_index("wrist"), dtype=torch.long)
    with torch.no_grad():
        with_gyro = model.embed(*prepare_motion(acc, gyro, 50.0, CONFIG), place)
        without = model.embed(*prepare_motion(acc, None, 50.0, CONFIG), place)
        elsewhere = model.embed(*prepare_motion(acc, None, 50.0, CONFIG), torch.zeros(4, dtype=torch.long))
    assert with_gyro.shape == (4, 384)
    assert torch.allclose(with_gyro.norm(dim=1), torch.ones(4))
    assert not torch.allclose(with_gyro, without)  # zeros-as-absent differs from a still gyro
    assert not torch.allclose(without, elsewhere)
    assert placement_index("Upper-Arm") == placement_index("upper_arm") and placement_index("moon") == 0


def test_partial_rotation_keeps_norms_and_bounds_the_angle():
    g = torch.Generator().manual_seed(0)
    rotation = random_rotations(500, np.radians(30), g)
    assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(500, 3, 3), atol=1e-5)
    angle = torch.arccos(((rotation.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1, 1))
    assert angle.max() <= np.radians(30) + 1e-4
    signal = torch.randn(500, 64, 6)
    rotated = rotate(signal, rotation)
    assert torch.allclose(rotated[..., :3].norm(dim=-1), signal[..., :3].norm(dim=-1), atol=1e-4)
    still = torch.zeros(8, 64, 6)
    still[..., 2] = 1.0  # 1 g along z: scaling must not change gravity's magnitude
    augmented = augment(still, jitter=0.0, generator=g)
    assert torch.allclose(augmented[..., :3].norm(dim=-1), torch.ones(8, 64), atol=1e-4)
