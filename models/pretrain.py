"""CrossHAR-style hierarchical self-supervised pretraining on UNLABELLED real windows.

Stage 1, masked reconstruction: spans of the input are zeroed and a linear decoder on the encoder's
tokens reconstructs them. Stage 2, masked + contrastive: the same loss plus NT-Xent between the
embeddings of two augmented views of each window. Windows come from HAPT train subjects only, with
labels ignored (transitions and unlabelled stretches included). The split into fit / validation
subjects happens BEFORE any augmentation, and views are drawn on the fly per batch, so no augmented
copy of a window can sit on both sides (CrossHAR's release augmented before splitting).
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from models.augment import augment
from models.encoder import TOKEN_SAMPLES, ContrastiveMotionModel, MotionEncoderConfig, placement_index, prepare_motion


def span_mask(b: int, n: int, ratio: float, span: int, generator: torch.Generator) -> torch.Tensor:
    """(b, n) bool, True where the input is hidden: random spans covering about `ratio` of samples."""
    n_spans = max(1, int(round(ratio * n / span)))
    starts = torch.randint(0, n - span + 1, (b, n_spans), generator=generator)
    hidden = torch.zeros(b, n, dtype=torch.bool)
    for offset in range(span):
        hidden.scatter_(1, starts + offset, True)
    return hidden


class MaskedReconstruction(nn.Module):
    """Decodes each token back to the raw values (TOKEN_SAMPLES x 6) of the samples it covers."""

    def __init__(self, d_model: int):
        super().__init__()
        self.decode = nn.Linear(d_model, TOKEN_SAMPLES * 6)

    def forward(self, tokens: torch.Tensor, n_samples: int) -> torch.Tensor:
        b, t, _ = tokens.shape
        return self.decode(tokens).reshape(b, TOKEN_SAMPLES * t, 6)[:, :n_samples]


def masked_reconstruction_loss(
    encoder, decoder: MaskedReconstruction, batch: torch.Tensor, placement_id: int, generator: torch.Generator
) -> torch.Tensor:
    """Hide random 4-sample spans (25 %) of the (B, N, 6) batch; MSE of their reconstruction."""
    b, n, _ = batch.shape
    device = batch.device
    hidden = span_mask(b, n, 0.25, TOKEN_SAMPLES, generator).to(device)
    visible = torch.ones(b, n, dtype=torch.bool, device=device)  # hidden spans are zeros the model sees
    gyro = torch.ones(b, dtype=torch.bool, device=device)
    place = torch.full((b,), placement_id, dtype=torch.long, device=device)
    tokens, _ = encoder.tokens(batch.masked_fill(hidden.unsqueeze(-1), 0.0), visible, gyro, place)
    return F.mse_loss(decoder(tokens, n)[hidden], batch[..., :6][hidden])  # the sensor channels


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR loss between two views (B, D): each row's positive is its other view."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def pretrain_ssl(
    model: ContrastiveMotionModel,
    fit_signal: torch.Tensor,
    val_signal: torch.Tensor,
    placement: str = "waist",
    epochs_masked: int = 10,
    epochs_contrastive: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    log=print,
) -> list[dict]:
    """Train `model.encoder` in place on (N, n_samples, 6) prepared signals; returns per-epoch losses."""
    cfg = model.encoder.config
    generator = torch.Generator().manual_seed(seed)
    decoder = MaskedReconstruction(cfg.d_model).to(device)
    encoder = model.encoder.to(device)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = epochs_masked + epochs_contrastive
    steps = total * max(1, len(fit_signal) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    place_id = placement_index(placement, cfg.placements)

    def losses(batch: torch.Tensor, contrastive: bool) -> torch.Tensor:
        view = augment(batch, generator=generator)
        loss = masked_reconstruction_loss(encoder, decoder, view, place_id, generator)
        if contrastive:
            b, n, _ = batch.shape
            visible = torch.ones(b, n, dtype=torch.bool, device=device)
            gyro = torch.ones(b, dtype=torch.bool, device=device)
            place = torch.full((b,), place_id, dtype=torch.long, device=device)
            other = augment(batch, generator=generator)
            loss = loss + 0.5 * nt_xent(encoder(view, visible, gyro, place), encoder(other, visible, gyro, place))
        return loss

    history = []
    step = 0
    for epoch in range(total):
        contrastive = epoch >= epochs_masked
        encoder.train()
        decoder.train()
        order = torch.randperm(len(fit_signal), generator=generator)
        n_batches = max(1, len(fit_signal) // batch_size)
        start = time.time()
        bar = tqdm(range(n_batches), desc=f"ssl {'mask+contrast' if contrastive else 'mask'} {epoch + 1}/{total}", leave=False)
        fit_loss = 0.0
        for i in bar:
            batch = fit_signal[order[i * batch_size : (i + 1) * batch_size]].to(device)
            loss = losses(batch, contrastive)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if step < steps - 1:
                schedule.step()
            step += 1
            fit_loss += loss.item() / n_batches
            bar.set_postfix(loss=f"{loss.item():.4f}")
        encoder.eval()
        decoder.eval()
        with torch.no_grad():
            val_generator_state = generator.get_state()  # validation draws must not shift training's
            val_loss = float(losses(val_signal[:1024].to(device), contrastive))
            generator.set_state(val_generator_state)
        history.append({"epoch": epoch + 1, "stage": "mask+contrast" if contrastive else "mask",
                        "fit_loss": fit_loss, "val_loss": val_loss, "seconds": time.time() - start})
        log(f"ssl epoch {epoch + 1}/{total} fit {fit_loss:.4f} val {val_loss:.4f} ({time.time() - start:.0f}s)")
    return history


def prepared_hapt_unlabelled(subjects, config: MotionEncoderConfig) -> torch.Tensor:
    """All 50 %-overlap windows of these subjects, labels ignored, as (N, n_samples, 6) model input."""
    from models.datasets import hapt_windows

    windows = hapt_windows(subjects, basic_only=False)
    up = None
    if config.gravity_inputs:  # each subject's label-free gravity reference (models/gravity.py)
        from models.gravity import device_references

        up = device_references(windows.acc, windows.subjects)
    signal, _, _ = prepare_motion(windows.acc, windows.gyro, windows.rate_hz, config, up=up)
    return signal
