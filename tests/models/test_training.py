"""Tiny training runs: contrastive alignment lowers its loss, fine-tuning beats chance, SSL runs."""

import numpy as np
import torch

from models.datasets import hapt_windows
from models.encoder import ContrastiveMotionModel, MotionEncoderConfig, prepare_motion
from models.pretrain import nt_xent, pretrain_ssl, span_mask
from models.train import finetune, few_shot_subset, multi_positive_clip_loss

TINY = MotionEncoderConfig(d_model=32, n_layers=1, n_heads=2, dropout=0.0)


def test_contrastive_steps_on_simulated_clips_lower_the_loss():
    from models.simulator import simulate_clip

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    activities = ["walking", "sitting", "lying", "running"]
    clips = [simulate_clip(a, rng, duration_s=2.56, rate_hz=50.0, placements=("waist",)) for a in activities * 8]
    acc = np.stack([c.imu["waist"].acc for c in clips])
    gyro = np.stack([c.imu["waist"].gyro for c in clips])
    activity = torch.tensor([activities.index(c.activity) for c in clips])
    text = torch.nn.functional.normalize(torch.randn(len(activities), 384), dim=-1)  # stand-in label vectors
    model = ContrastiveMotionModel(TINY)
    inputs = prepare_motion(acc, gyro, 50.0, TINY)
    place = torch.ones(len(clips), dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    same = activity[:, None] == activity[None, :]
    losses = []
    for _ in range(40):
        loss = multi_positive_clip_loss(model.logits(model.embed(*inputs, place), text[activity]), same)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_finetune_on_a_small_subset_beats_chance():
    torch.manual_seed(0)
    fit = few_shot_subset(hapt_windows([1, 3]), 30, seed=0)
    val = hapt_windows([5]).limit(60)
    test = hapt_windows([6]).limit(120)
    assert np.bincount(fit.y).tolist() == [30] * 6
    vectors = torch.nn.functional.normalize(torch.randn(6, 384), dim=-1).numpy()
    model, history = finetune(ContrastiveMotionModel(TINY), fit, val, vectors, epochs=1, min_steps=60, batch_size=60)
    assert len(history) >= 1 and model.head_labels == fit.labels
    with torch.no_grad():
        inputs = prepare_motion(test.acc, test.gyro, 50.0, TINY)
        predicted = model.logits(model.embed(*inputs, torch.ones(len(test), dtype=torch.long)), model.head).argmax(1)
    accuracy = (predicted.numpy() == test.y).mean()
    assert accuracy > 0.4  # chance is 1/6


def test_ssl_pretraining_runs_both_stages():
    torch.manual_seed(0)
    windows = hapt_windows([1], basic_only=False)
    assert (windows.y == -1).any()  # unlabelled and transition windows are kept for SSL
    signal, _, _ = prepare_motion(windows.acc[:160], windows.gyro[:160], 50.0, TINY)
    history = pretrain_ssl(ContrastiveMotionModel(TINY), signal[:128], signal[128:], epochs_masked=1,
                           epochs_contrastive=1, batch_size=64, log=lambda _: None)
    assert [h["stage"] for h in history] == ["mask", "mask+contrast"]
    assert all(np.isfinite(h["val_loss"]) for h in history)


def test_span_mask_and_nt_xent():
    hidden = span_mask(16, 64, 0.25, 4, torch.Generator().manual_seed(0))
    assert 0.1 < hidden.float().mean() < 0.3
    a = torch.randn(8, 16)
    assert nt_xent(a, a) < nt_xent(a, torch.randn(8, 16))


def test_a_training_run_records_the_environment_a_bit_identical_rerun_needs():
    from models.train import training_environment

    env = training_environment()
    assert env["torch"] == torch.__version__ and env["torch_threads"] == torch.get_num_threads() >= 1
    assert env["python"].count(".") == 2 and env["machine"]
