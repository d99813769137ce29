"""Training entry points behind `iotlm train`: SSL pretraining, text-aligned (zero-shot) training on
simulated clips, and supervised fine-tuning (few-shot or full) on HAPT train subjects.

The shipped checkpoints are reproduced by:
    iotlm train zero-shot  -> models/checkpoints/motion-v1      (simulated clips + text, no HAPT label)
    iotlm train finetune   -> models/checkpoints/motion-v1-hapt (HAPT train subjects; init: motion-v1)
and `iotlm train ssl` -> runs/ssl-v1 is the optional self-supervised initialisation
(`iotlm train zero-shot --init runs/ssl-v1`).
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
import torch

from iotlm.settings import PROJECT_ROOT, Settings
from models.datasets import HAPT_LABELS, HAPT_TRAIN_SUBJECTS, HAPT_VALIDATION_SUBJECTS
from models.encoder import ContrastiveMotionModel, MotionEncoderConfig
from models.fusion import FEATURES_FILE
from models.inference import MotionClassifier, resolve_device, save_checkpoint

RUNS_DIR = PROJECT_ROOT / "runs"
MODEL_VERSION = "1.1.0"
# label words whose text vectors ship inside every checkpoint (no language model needed for these)
DEFAULT_LABELS = list(HAPT_LABELS) + ["running", "cycling", "jumping", "falling", "standing up", "sitting down"]


def training_environment() -> dict:
    """torch build, threads, CPU and Python: not recorded for motion-v1, whose weights this code and data
    do not reproduce elsewhere (docs/models.md, Reproducing)."""
    import platform

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or None}


def _setup_torch(seed: int, threads: int | None) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    if threads:
        torch.set_num_threads(threads)


def load_model(path_or_name: str | Path | None, settings: Settings) -> ContrastiveMotionModel:
    """The ContrastiveMotionModel inside a checkpoint (for continued training)."""
    return MotionClassifier.load(path_or_name, device="cpu", checkpoint_dir=settings.models.checkpoint_dir).model


def train_ssl(
    settings: Settings,
    out_dir: Path = RUNS_DIR / "ssl-v1",
    epochs_masked: int = 4,
    epochs_contrastive: int = 2,
    limit: int | None = None,
    seed: int = 0,
    threads: int | None = 1,
    device: str = "auto",
) -> Path:
    from models.pretrain import prepared_hapt_unlabelled, pretrain_ssl

    _setup_torch(seed, threads)
    device = resolve_device(device)
    config = MotionEncoderConfig()
    model = ContrastiveMotionModel(config)
    fit_subjects = [s for s in HAPT_TRAIN_SUBJECTS if s not in HAPT_VALIDATION_SUBJECTS]
    fit = prepared_hapt_unlabelled(fit_subjects, config)
    val = prepared_hapt_unlabelled(HAPT_VALIDATION_SUBJECTS, config)
    if limit:
        fit = fit[torch.randperm(len(fit))[:limit]]
    start = time.time()
    history = pretrain_ssl(model, fit, val, epochs_masked=epochs_masked, epochs_contrastive=epochs_contrastive,
                           seed=seed, device=device)
    meta = {
        "version": f"ssl-{MODEL_VERSION}",
        "default_labels": DEFAULT_LABELS,
        "training": {
            "kind": "ssl (masked reconstruction, then masked + contrastive)",
            "data": f"HAPT unlabelled windows, subjects {fit_subjects} (validation {list(HAPT_VALIDATION_SUBJECTS)})",
            "n_windows": len(fit), "seconds": round(time.time() - start, 1), "device": device, "history": history,
        },
        "metrics": {},
    }
    return save_checkpoint(model.cpu(), out_dir, meta, {})


# ---------------------------------------------------------------- simulated clips, text-aligned training

SIM_PLACEMENTS = ("waist", "wrist", "pocket", "chest", "ankle", "head")
# motion-v2 trains every encoder placement the simulator records (encoder name -> simulator name);
# "thigh" stays refused: the simulator's only thigh device is the trouser-pocket phone ("pocket")
SIM_PLACEMENTS_V2 = {"waist": "waist", "wrist": "wrist", "pocket": "pocket", "chest": "chest", "ankle": "ankle",
                     "head": "head", "upper_arm": "upper arm", "back": "lower back", "hand": "hand"}


def build_synthetic_dataset(
    n_clips: int, seed: int, cache_path: Path, rate_hz: float = 50.0, duration_s: float = 4.0,
    placements: tuple[str, ...] = SIM_PLACEMENTS, per_clip: int = 2, mocap_share: float = 0.0,
) -> dict[str, np.ndarray]:
    """Simulate clips once to an .npz: one row per (clip, placement) with its clip's descriptions and
    the device's exact gravity reference (`rest_up`). Placements are encoder names (SIM_PLACEMENTS_V2
    gives the simulator's name where they differ).

    mocap_share > 0: about that share of the clips are pybullet's DeepMimic motion capture clips
    (models/simulator/mocap.py) instead of procedural ones, drawn evenly from the 20 named clips; their
    captions that are no simulator activity ("doing a cartwheel", "getting up from the floor", ...)
    join `activities` after the simulator's. 0 (the default) leaves the procedural dataset as it was."""
    if cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from tqdm import tqdm

    from models.simulator import ACTIVITIES, simulate_clip

    rng = np.random.default_rng(seed)
    activities = list(ACTIVITIES)
    simulated = len(activities)
    mocap_names, mocap_rng = [], np.random.default_rng([seed, 1])  # its own stream: the default one stays as it was
    if mocap_share > 0:
        from models.simulator.mocap import caption, clip_names, mocap_clip

        mocap_names = clip_names()
        activities += sorted({caption(c)[0] for c in mocap_names} - set(activities))
    acc, gyro, place, activity, clip_of, descriptions, desc_clip, rest_up = [], [], [], [], [], [], [], []
    for i in tqdm(range(n_clips), desc=f"simulating {cache_path.name}"):
        name = activities[i % simulated]  # balanced classes
        chosen = tuple(rng.choice(placements, size=per_clip, replace=False))  # devices per simulated person
        sim_names = [SIM_PLACEMENTS_V2.get(p, p) for p in chosen]
        if mocap_names and mocap_rng.random() < mocap_share:
            source = mocap_names[int(mocap_rng.integers(len(mocap_names)))]
            clip = mocap_clip(source, mocap_rng, duration_s=duration_s, rate_hz=rate_hz, placements=sim_names)
            name = clip.activity
        else:
            # the simulator's realistic mounting (flipped, landscape, tilted, round the belt), NOT its
            # uniformly random rotation: that would erase the gravity direction that tells postures apart
            clip = simulate_clip(name, rng, duration_s=duration_s, rate_hz=rate_hz, placements=sim_names,
                                 random_mount=False)
        for p, sim_name in zip(chosen, sim_names):
            acc.append(clip.imu[sim_name].acc.astype(np.float32))
            gyro.append(clip.imu[sim_name].gyro.astype(np.float32))
            rest_up.append(clip.imu[sim_name].rest_up.astype(np.float32))
            place.append(p)
            activity.append(activities.index(name))
            clip_of.append(i)
        descriptions += list(clip.descriptions)
        desc_clip += [i] * len(clip.descriptions)
    n = min(len(a) for a in acc)  # clips may differ by a sample after resampling
    data = {
        "acc": np.stack([a[:n] for a in acc]), "gyro": np.stack([g[:n] for g in gyro]),
        "placement": np.array(place), "activity": np.array(activity), "clip": np.array(clip_of),
        "activities": np.array(activities), "descriptions": np.array(descriptions), "desc_clip": np.array(desc_clip),
        "rate_hz": np.array(rate_hz), "rest_up": np.stack(rest_up),
    }
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **data)
    return data


def multi_positive_clip_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every text of the same activity counts as a positive (a batch holds
    many clips of one activity; treating those as negatives would push apart what belongs together)."""
    target = same.float() / same.float().sum(1, keepdim=True)
    motion_to_text = -(target * logits.log_softmax(1)).sum(1).mean()
    text_to_motion = -(target.T * logits.T.log_softmax(1)).sum(1).mean()
    return (motion_to_text + text_to_motion) / 2


def train_zero_shot(
    settings: Settings,
    out_dir: Path | None = None,
    init: Path | None = None,
    n_clips: int = 8000,
    epochs: int = 14,
    batch_size: int = 256,
    lr: float = 1e-3,
    real_recon_weight: float = 0.5,
    seed: int = 0,
    threads: int | None = 1,
    device: str = "auto",
    max_steps: int | None = None,
    recipe: str = "v1",
    mocap_share: float = 0.0,
) -> tuple[Path, list[dict]]:
    """Align the motion encoder with text on simulated clips; returns (checkpoint dir, history).

    While aligning, masked reconstruction continues on unlabelled real HAPT train windows so the
    encoder's features stay grounded in real sensor data (no HAPT label is used).

    recipe "v1" reproduces motion-v1. Recipe "v2" (motion-v2) adds: the gravity-reference input (the
    simulator's exact `rest_up`, hidden for 40 % of windows, which keep the realistic mountings) with
    uniformly random device mountings for 60 % of the windows that have it (the reference turns with
    the device, so posture stays readable relative to it), every placement in SIM_PLACEMENTS_V2 (three
    per clip), simulated 10-17 Hz devices (box anti-alias filter, decimation, interpolation back up)
    for 20 %, gravity-removed windows
    (linear acceleration) for 10 %, and compositional captions (models/captions.py).

    mocap_share: the share of clips taken from DeepMimic motion capture (build_synthetic_dataset); 0
    (the default, and what the shipped checkpoints were trained with) uses the procedural simulator only."""
    from tqdm import tqdm

    from models.augment import augment
    from models.encoder import GRAVITY, placement_index, resample
    from models.pretrain import MaskedReconstruction, masked_reconstruction_loss, prepared_hapt_unlabelled
    from models.text import TextEncoder, label_to_phrase

    if recipe not in ("v1", "v2"):
        raise ValueError(f"unknown recipe {recipe!r}: v1 or v2")
    v2 = recipe == "v2"
    _setup_torch(seed, threads)
    device = resolve_device(device)
    out_dir = out_dir or settings.models.checkpoint_dir / ("motion-v2" if v2 else "motion-v1")
    from models.simulator import ACTIVITIES

    # the simulator grows; a cache made with another activity list must not be reused silently
    activity_key = zlib.crc32(",".join(ACTIVITIES).encode())
    mocap = f"_mocap{mocap_share:g}" if mocap_share > 0 else ""
    if v2:
        cache = Path.home() / ".cache" / "iotlm" / f"sim_clips_v3_{n_clips}_{seed}_{activity_key:08x}{mocap}.npz"
        data = build_synthetic_dataset(n_clips, seed, cache, placements=tuple(SIM_PLACEMENTS_V2), per_clip=3,
                                       mocap_share=mocap_share)
    else:
        cache = Path.home() / ".cache" / "iotlm" / f"sim_clips_v2_{n_clips}_{seed}_{activity_key:08x}{mocap}.npz"
        data = build_synthetic_dataset(n_clips, seed, cache, mocap_share=mocap_share)
    activities = [str(a) for a in data["activities"]]

    model = load_model(init, settings) if init else ContrastiveMotionModel(MotionEncoderConfig(gravity_inputs=v2))
    model.head_labels, model.head = [], torch.nn.Parameter(torch.zeros(0, model.encoder.config.embed_dim))
    cfg = model.encoder.config

    text = TextEncoder()
    descriptions = [str(d) for d in data["descriptions"]]
    if v2:  # every clip's texts: its activity's compositional captions, stored contiguously per clip
        from models.captions import activity_captions

        # mocap-only activities have no compositional attributes: their clips' own descriptions serve
        clip_activity = dict(zip(data["clip"].tolist(), data["activity"].tolist()))
        pools = {a: activity_captions(a, seed=seed) if a in ACTIVITIES else
                 sorted({str(d) for d, c in zip(data["descriptions"], data["desc_clip"].tolist())
                         if activities[clip_activity[c]] == a}) or [a]
                 for a in activities}
        pool_vectors = {a: torch.from_numpy(text.embed(pools[a])) for a in tqdm(activities, desc="captions")}
    desc_vectors = torch.from_numpy(text.embed(descriptions))  # (D, 384)
    activity_vectors = torch.from_numpy(text.embed_labels(activities))  # (A, 384) prompt-ensembled names
    # each clip's descriptions are stored contiguously: first row + count, to draw one per window
    desc_clip = torch.from_numpy(data["desc_clip"]).long()
    desc_count = torch.bincount(desc_clip, minlength=n_clips)
    desc_first = torch.cumsum(desc_count, 0) - desc_count  # descriptions are stored clip by clip
    clip_of_row = torch.from_numpy(data["clip"]).long()

    # whole clips at the model rate; windows are random crops of them, drawn per batch
    raw = torch.cat([torch.from_numpy(data["acc"]) / GRAVITY, torch.from_numpy(data["gyro"])], dim=-1)
    clips = resample(raw, float(data["rate_hz"]), cfg.rate_hz)  # (N, L, 6)
    activity = torch.from_numpy(data["activity"]).long()
    rest_up = torch.from_numpy(data["rest_up"]).float() if v2 else None
    place = torch.tensor([placement_index(str(p), cfg.placements) for p in data["placement"]])
    held_out = torch.from_numpy(data["clip"] % 10 == 0)  # 10 % of simulated people, for monitoring
    fit_rows, val_rows = torch.nonzero(~held_out).squeeze(1), torch.nonzero(held_out).squeeze(1)
    fit_subjects = [s for s in HAPT_TRAIN_SUBJECTS if s not in HAPT_VALIDATION_SUBJECTS]
    real = prepared_hapt_unlabelled(fit_subjects, cfg) if real_recon_weight > 0 else None

    generator = torch.Generator().manual_seed(seed)
    decoder = MaskedReconstruction(cfg.d_model)
    model.to(device)
    decoder.to(device)
    params = list(model.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    n_batches = max(1, len(fit_rows) // batch_size)
    total_steps = max_steps or epochs * n_batches
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=total_steps, pct_start=0.1)

    def crop(rows: torch.Tensor) -> torch.Tensor:
        starts = torch.randint(0, clips.shape[1] - cfg.n_samples + 1, (len(rows),), generator=generator)
        return clips[rows.unsqueeze(1), starts.unsqueeze(1) + torch.arange(cfg.n_samples)]

    def motion_batch(rows: torch.Tensor, train: bool):
        if v2:
            return motion_batch_v2(rows, train)
        signal = crop(rows)
        b = len(rows)
        has_gyro = torch.ones(b, dtype=torch.bool)
        placement = place[rows].clone()
        if train:
            signal = augment(signal, max_angle_deg=15.0, generator=generator)
            has_gyro = torch.rand(b, generator=generator) > 0.2  # accelerometer-only devices exist
            signal[~has_gyro, :, 3:] = 0.0
            placement[torch.rand(b, generator=generator) < 0.5] = 0  # placement often unknown
        mask = torch.ones(b, cfg.n_samples, dtype=torch.bool)
        return [t.to(device) for t in (signal, mask, has_gyro, placement)]

    def motion_batch_v2(rows: torch.Tensor, train: bool):
        from models.augment import rotate
        from models.conditions import random_rotations
        from models.encoder import gravity_channels

        signal = crop(rows)  # (B, N, 6) at the model rate
        b, n = len(rows), cfg.n_samples
        up = rest_up[rows].clone()
        has_gyro = torch.ones(b, dtype=torch.bool)
        placement = place[rows].clone()
        if train:
            pick = lambda p: torch.rand(b, generator=generator) < p  # noqa: E731
            low = torch.nonzero(pick(0.2)).squeeze(1)  # a 10-17 Hz device: filter, decimate, interpolate
            for group, rate in zip(low.chunk(3), (10.0, 12.5, 16.7)):
                if len(group):
                    slow = resample(signal[group], cfg.rate_hz, rate)
                    signal[group] = resample(slow, rate, cfg.rate_hz)[:, :n] if slow.shape[1] else signal[group]
            linear = pick(0.1)  # gravity removed on the device: the window's mean is (about) gravity
            signal[linear, :, :3] -= signal[linear, :, :3].mean(1, keepdim=True)
            # reference unknown (single window, no stream yet) for 40 %: those keep the realistic
            # mountings, as in motion-v1 (without a reference a random mounting hides posture); of the
            # windows with a reference, 60 % get any mounting, and the reference turns with the device
            hidden = pick(0.4)
            mounted = torch.nonzero(~hidden & pick(0.6)).squeeze(1)
            turn = torch.from_numpy(random_rotations(len(mounted), np.random.default_rng(
                int(torch.randint(0, 2**31, (1,), generator=generator))))).float()
            signal[mounted] = rotate(signal[mounted], turn)
            up[mounted] = (turn @ up[mounted].unsqueeze(-1)).squeeze(-1)
            up = up + 0.1 * torch.randn(b, 3, generator=generator)  # a real estimate is a few degrees off
            up[hidden] = 0.0
            has_gyro = ~pick(0.2)
            signal[~has_gyro, :, 3:] = 0.0
            placement[pick(0.5)] = 0
        signal = torch.cat([signal, gravity_channels(signal[..., :3], up)], dim=-1)
        if train:
            signal = augment(signal, max_angle_deg=15.0, generator=generator)
        mask = torch.ones(b, n, dtype=torch.bool)
        return [t.to(device) for t in (signal, mask, has_gyro, placement)]

    def text_batch(rows: torch.Tensor) -> torch.Tensor:
        if v2:  # half a compositional caption of the activity, half the prompt-ensembled name
            names = [activities[int(a)] for a in activity[rows]]
            captions = torch.stack([pool_vectors[a][int(torch.randint(0, len(pool_vectors[a]), (1,), generator=generator))]
                                    for a in names])
            use_name = torch.rand(len(rows), generator=generator) < 0.5
            return torch.where(use_name.unsqueeze(1), activity_vectors[activity[rows]], captions).to(device)
        # half the texts are the simulator's descriptions, half the prompt-ensembled activity name
        clip = clip_of_row[rows]
        picks = desc_first[clip] + (torch.rand(len(rows), generator=generator) * desc_count[clip]).long()
        use_name = torch.rand(len(rows), generator=generator) < 0.5
        vectors = torch.where(use_name.unsqueeze(1), activity_vectors[activity[rows]], desc_vectors[picks])
        return vectors.to(device)

    history, step, start = [], 0, time.time()
    for epoch in range(epochs):
        model.train()
        decoder.train()
        order = fit_rows[torch.randperm(len(fit_rows), generator=generator)]
        bar = tqdm(range(n_batches), desc=f"align {epoch + 1}/{epochs}", leave=False)
        for i in bar:
            rows = order[i * batch_size : (i + 1) * batch_size]
            motion = model.embed(*motion_batch(rows, train=True))
            logits = model.logits(motion, text_batch(rows))
            same = (activity[rows].unsqueeze(1) == activity[rows].unsqueeze(0)).to(device)
            loss = multi_positive_clip_loss(logits, same)
            if real is not None:
                pick = torch.randint(0, len(real), (batch_size // 2,), generator=generator)
                batch = augment(real[pick], generator=generator).to(device)
                loss = loss + real_recon_weight * masked_reconstruction_loss(
                    model.encoder, decoder, batch, placement_index("waist"), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            if step < total_steps:
                schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", T=f"{1 / model.logit_scale.exp().item():.3f}")
            if max_steps and step >= max_steps:
                break
        model.eval()
        with torch.no_grad():
            motion = torch.cat([model.embed(*motion_batch(rows, train=False)) for rows in val_rows.split(512)])
            predicted = (motion @ activity_vectors.to(device).T).argmax(1).cpu()
        sim_accuracy = float((predicted == activity[val_rows]).float().mean())
        history.append({"epoch": epoch + 1, "loss": loss.item(), "sim_heldout_zero_shot_accuracy": sim_accuracy,
                        "seconds": round(time.time() - start, 1)})
        print(f"align epoch {epoch + 1}/{epochs} loss {loss.item():.3f} held-out simulated zero-shot acc {sim_accuracy:.3f}", flush=True)
        if max_steps and step >= max_steps:
            break

    default_phrases = [label_to_phrase(label) for label in DEFAULT_LABELS]
    meta = {
        "version": "motion-v2-2.0.0" if v2 else f"motion-v1-{MODEL_VERSION}",
        "default_labels": list(HAPT_LABELS),
        "served_placements": list(SIM_PLACEMENTS_V2 if v2 else SIM_PLACEMENTS),
        "training": {
            "kind": "text-aligned contrastive (multi-positive InfoNCE, learnable temperature)",
            "recipe": recipe,
            "init": str(init) if init else None,
            "data": f"{len(clips)} simulated device recordings from {n_clips} clips (models.simulator), "
                    f"activities {activities}; masked reconstruction on unlabelled HAPT subjects {fit_subjects}",
            "uses_hapt_labels": False, "epochs": epochs, "steps": step,
            "seconds": round(time.time() - start, 1), "device": device, "history": history,
            # what a rerun needs to match bit for bit (the same code and data elsewhere gave other weights)
            "environment": training_environment(),
        },
        "metrics": {},
    }
    text_vectors = dict(zip(default_phrases, text.embed_labels(DEFAULT_LABELS)))
    return save_checkpoint(model.cpu(), out_dir, meta, text_vectors), history


# ---------------------------------------------------------------- supervised fine-tuning on HAPT

def few_shot_subset(windows, shots: int, seed: int):
    """K windows per class, drawn (seeded) from the given windows."""
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.permutation(np.flatnonzero(windows.y == c))[:shots] for c in range(len(windows.labels))])
    return windows.subset(np.sort(index))


def steps_per_epoch(fit, batch_size: int = 128) -> int:
    return int(np.ceil(len(fit) / batch_size))


def finetune(
    model: ContrastiveMotionModel,
    fit,
    val,
    label_vectors: np.ndarray,
    epochs: int = 15,
    batch_size: int = 128,
    lr: float = 3e-4,
    min_steps: int = 100,
    seed: int = 0,
    device: str = "cpu",
    label_smoothing: float = 0.05,
    max_angle_deg: float = 10.0,
    eval_every: int | None = None,
    on_step=None,
    gyro_dropout: float = 0.0,
) -> tuple[ContrastiveMotionModel, list[dict]]:
    """Cross-entropy fine-tuning of the encoder and a label-prototype head initialised from the
    labels' text vectors; keeps the checkpoint (about ten are checked, or one every `eval_every`
    steps) with the best validation macro-F1 (validation = held-out TRAIN subjects). Small few-shot
    sets get at least `min_steps` steps. `max_angle_deg` bounds the partial-rotation augmentation.
    `on_step(step, total_steps)` is called after every step (progress; raising from it stops training).
    `gyro_dropout`: the fraction of training windows shown without their gyroscope (zeros + the
    absent flag), so the model keeps working on accelerometer-only devices."""
    import copy

    from tqdm import tqdm

    from models.augment import augment
    from models.encoder import placement_index, prepare_motion
    from models.metrics import classification_metrics

    generator = torch.Generator().manual_seed(seed)
    cfg = model.encoder.config
    model.head_labels = list(fit.labels)
    model.head = torch.nn.Parameter(torch.from_numpy(np.asarray(label_vectors, np.float32)).clone())
    model.to(device)

    def prepared(windows):
        up = None
        if cfg.gravity_inputs:  # each subject's label-free gravity reference (a subject = one device)
            from models.gravity import device_references

            up = device_references(windows.acc, windows.subjects)
        signal, mask, has_gyro = prepare_motion(windows.acc, windows.gyro, windows.rate_hz, cfg, up=up)
        place = torch.full((len(signal),), placement_index(windows.placement, cfg.placements), dtype=torch.long)
        return signal, mask, has_gyro, place, torch.from_numpy(windows.y)

    fit_t, val_t = prepared(fit), prepared(val)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    n = len(fit_t[0])
    per_epoch = max(1, int(np.ceil(n / batch_size)))
    total_steps = max(min_steps, epochs * per_epoch)
    eval_every = eval_every or max(per_epoch, total_steps // 10)  # default: about ten validation checks
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=total_steps, pct_start=0.1)

    def validate() -> dict:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([
                model.logits(model.embed(*(t[j : j + 1024].to(device) for t in val_t[:4])), model.head).cpu()
                for j in range(0, len(val_t[0]), 1024)
            ])
        model.train()
        metrics = classification_metrics(val_t[4].numpy(), logits.argmax(1).numpy(), fit.labels)
        metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, val_t[4]))  # unsmoothed
        return metrics

    best, best_f1, history = None, -1.0, []
    model.train()
    order = torch.randperm(n, generator=generator)
    for step in tqdm(range(total_steps), desc=f"finetune on {n} windows", leave=False):
        i = step % per_epoch
        if i == 0 and step:
            order = torch.randperm(n, generator=generator)
        rows = order[i * batch_size : (i + 1) * batch_size]
        signal, mask, has_gyro, place, y = (t[rows] for t in fit_t)
        signal = augment(signal, max_angle_deg=max_angle_deg, generator=generator)
        if gyro_dropout > 0:
            dropped = torch.rand(len(rows), generator=generator) < gyro_dropout
            signal[dropped, :, 3:6] = 0.0
            has_gyro = has_gyro & ~dropped
        if cfg.gravity_inputs:  # single windows (no device stream yet) must keep working: hide the reference
            signal[torch.rand(len(rows), generator=generator) < 0.3, :, 6:9] = 0.0
        logits = model.logits(model.embed(signal.to(device), mask.to(device), has_gyro.to(device), place.to(device)), model.head)
        loss = torch.nn.functional.cross_entropy(logits, y.to(device), label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if on_step is not None:
            on_step(step + 1, total_steps)
        if (step + 1) % eval_every == 0 or step + 1 == total_steps:
            metrics = validate()
            history.append({"step": step + 1, "loss": loss.item(), "val_accuracy": metrics["accuracy"],
                            "val_macro_f1": metrics["macro_f1"], "val_loss": metrics["loss"]})
            if metrics["macro_f1"] >= best_f1:  # ties go to the later, longer-trained weights
                best_f1, best = metrics["macro_f1"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    return model.cpu().eval(), history


# Full fine-tuning selects on six train subjects, checked once per epoch (docs/models.md): the three
# of models.datasets.HAPT_VALIDATION_SUBJECTS (1, 11, 21) saturate at 100 % after ~144 steps, so
# selection on them picked an early checkpoint (motion-v1-hapt 1.0.0).
FINETUNE_VALIDATION_SUBJECTS = (1, 6, 11, 16, 21, 26)
FINETUNE_VERSION = "1.2.0"


def aligned_windows(windows):
    """The windows turned by each subject's label-free gravity reference (a subject = one device; models/gravity.py)."""
    from dataclasses import replace

    from models.gravity import align_to_reference, device_references

    acc, gyro = align_to_reference(windows.acc, windows.gyro, device_references(windows.acc, windows.subjects))
    return replace(windows, acc=acc, gyro=gyro)


def finetune_full_shot(classifier: MotionClassifier, fit, val, seed: int = 0, epochs: int = 15,
                       gyro_dropout: float = 0.2, reference: bool = True, features: bool = True,
                       c: float | None = None, **finetune_options) -> dict:
    """The product's full-shot recipe (motion-v1-hapt 1.2.0), shared by `iotlm train finetune` and the
    seed runs of `iotlm eval --setting full --seeds` (models/fullshot.py), so the seeds measure what ships:
    1. fine-tune the encoder (cross-entropy, checkpoint chosen once per epoch on `val`, gyroscope dropped for
       `gyro_dropout` of the windows) on windows turned by each subject's label-free gravity reference
       (`reference`: what the workers feed it once a device has walked; HAPT's own phones are near that "up");
    2. `features`: the feature SVM (C chosen on `val`) fused with it, the fusion weight chosen on `val` by an
       SVM fitted on `fit` only, the shipped SVM refitted on fit + val (models/fusion.py). `c`: that C when the
       caller has already chosen it on the same split (the feature baseline's, `fit_feature_svm(fit, val).c`).
    Sets classifier.model and classifier.fusion; returns what was chosen (history, C, weight)."""
    from models.baselines import fit_feature_svm
    from models.fusion import FeatureFusion, choose_weight, fit_svm, svm_proba
    from models.gravity import device_references
    from models.text import label_to_phrase

    deep_fit, deep_val = (aligned_windows(fit), aligned_windows(val)) if reference else (fit, val)
    vectors = classifier.label_vectors(fit.labels).cpu().numpy()
    classifier.fusion = None
    classifier.model, history = finetune(classifier.model, deep_fit, deep_val, vectors, epochs=epochs, seed=seed,
                                         eval_every=steps_per_epoch(fit), gyro_dropout=gyro_dropout, **finetune_options)
    chosen = {"history": history, "reference": reference, "gyro_dropout": gyro_dropout}
    if features:
        c = c or fit_feature_svm(fit, val, seed).c
        up = device_references(val.acc, val.subjects) if reference else None
        deep_val_p = classifier.predict_proba(val.acc, val.gyro, val.rate_hz, val.labels, val.placement, up=up)
        weight, scores = choose_weight(val.y, deep_val_p, svm_proba(fit_svm(fit, c, seed), val), val.labels)
        labels = [label_to_phrase(label) for label in fit.labels]
        info = {"c": c, "validation_macro_f1_by_weight": {str(w): v for w, v in scores.items()}}
        classifier.fusion = FeatureFusion(fit_svm(fit, c, seed, also=val), labels, weight, fit.rate_hz,
                                          fit.acc.shape[1], fit.placement, info)
        chosen.update(c=c, fusion_weight=weight, validation_macro_f1_by_weight=scores)
    return chosen


def full_shot_test_metrics(classifier: MotionClassifier, test) -> dict:
    """Test metrics of a full-shot classifier, single window and per device (each test subject's label-free
    reference), with its feature fusion and without, and without the gyroscope."""
    from models.gravity import device_references
    from models.metrics import classification_metrics

    up = device_references(test.acc, test.subjects)
    fusion, out = classifier.fusion, {}
    variants = (("single_window", test.gyro, None, True), ("per_device", test.gyro, up, True),
                ("single_window_deep", test.gyro, None, False), ("per_device_deep", test.gyro, up, False),
                ("per_device_no_gyro", None, up, True))  # the SVM needs the gyroscope: this one is the encoder's
    for name, gyro, reference, fused in variants:
        classifier.fusion = fusion if fused else None
        p = classifier.predict_proba(test.acc, gyro, test.rate_hz, test.labels, test.placement, up=reference)
        m = classification_metrics(test.y, p.argmax(1), test.labels)
        out[name] = {**{k: m[k] for k in ("accuracy", "macro_f1", "per_class_f1")}, "probabilities": p}
    classifier.fusion = fusion
    return out


def train_finetune(
    settings: Settings, init: str | None = None, out_dir: Path | None = None, epochs: int = 15, seed: int = 0,
    threads: int | None = 1, validation_subjects: tuple[int, ...] = FINETUNE_VALIDATION_SUBJECTS,
    measure_test: bool = True, gyro_dropout: float = 0.2, reference: bool = True, features: bool = True,
    device: str = "auto",
) -> Path:
    """Fine-tune `init` (default: the settings' default checkpoint) on the HAPT train subjects minus
    `validation_subjects` with the full-shot recipe (`finetune_full_shot`: per-device reference, gyroscope
    dropout, fused feature SVM; every choice on the validation subjects), then measure once on the test
    subjects and save. With measure_test=False the test subjects are not touched."""
    from models.baselines import fit_feature_svm
    from models.datasets import HAPT_TEST_SUBJECTS, hapt_windows
    from models.inference import resolve_checkpoint
    from models.metrics import classification_metrics

    assert not set(validation_subjects) & set(HAPT_TEST_SUBJECTS), "validation must use train subjects"
    _setup_torch(seed, threads)
    base = resolve_checkpoint(init, settings.models.checkpoint_dir).name  # motion-v1 -> motion-v1-hapt
    out_dir = out_dir or settings.models.checkpoint_dir / f"{base}-hapt"
    classifier = MotionClassifier.load(init, device="cpu", checkpoint_dir=settings.models.checkpoint_dir)
    fit = hapt_windows([s for s in HAPT_TRAIN_SUBJECTS if s not in validation_subjects])
    val = hapt_windows(validation_subjects)
    start = time.time()
    # the feature baseline: its C (chosen on validation) is the fused SVM's too, and it is the test's yardstick
    baseline = fit_feature_svm(fit, val, seed) if features or measure_test else None
    chosen = finetune_full_shot(classifier, fit, val, seed, epochs, gyro_dropout, reference, features,
                                c=baseline.c if baseline else None,
                                device=resolve_device(device))  # the encoder's steps on CUDA when present
    history = chosen.pop("history")
    seconds = round(time.time() - start, 1)
    best = max(history, key=lambda h: (h["val_macro_f1"], h["step"]))  # finetune's rule: ties -> later
    metrics = {"validation": {"accuracy": best["val_accuracy"], "macro_f1": best["val_macro_f1"],
                              "loss": best["val_loss"], "step": best["step"]}}
    if measure_test:
        test = hapt_windows(HAPT_TEST_SUBJECTS)
        report = full_shot_test_metrics(classifier, test)
        base_m = classification_metrics(test.y, baseline.predict(test), test.labels)
        metrics.update({"hapt_test": {name: {k: m[k] for k in ("accuracy", "macro_f1", "per_class_f1")}
                                      for name, m in report.items()},
                        "hapt_test_feature_baseline": {k: base_m[k] for k in ("accuracy", "macro_f1")},
                        "test_subjects": sorted({int(s) for s in test.subjects})})
        for name, m in report.items():
            print(f"test {name}: accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}")
        print(f"test feature baseline: accuracy {base_m['accuracy']:.3f} macro-F1 {base_m['macro_f1']:.3f}")
    meta = {
        "version": f"{base}-hapt-{FINETUNE_VERSION if base == 'motion-v1' else '2.0.0'}",
        "default_labels": list(HAPT_LABELS),
        "served_placements": list(classifier.served_placements),
        "training": {
            "kind": "supervised fine-tuning (cross-entropy, text-initialised label prototypes) + fused feature SVM",
            "init": classifier.version, "data": f"HAPT UCI-HAR windows, {len(fit)} fit / {len(val)} validation",
            "fit_subjects": sorted({int(s) for s in fit.subjects}), "validation_subjects": list(validation_subjects),
            "hyperparameters": {"epochs": epochs, "lr": 3e-4, "batch_size": 128, "label_smoothing": 0.05,
                                "max_rotation_deg": 10.0, "seed": seed, **chosen},
            "seconds": seconds, "history": history, "environment": training_environment(),
        },
        "metrics": metrics,
    }
    print(f"validation (best, step {best['step']}) accuracy {best['val_accuracy']:.3f} "
          f"macro-F1 {best['val_macro_f1']:.3f} loss {best['val_loss']:.3f}; "
          f"fusion weight {chosen.get('fusion_weight')}")
    directory = save_checkpoint(classifier.model, out_dir, meta, classifier.text_vectors)
    if classifier.fusion is not None:
        classifier.fusion.save(directory)
    elif (directory / FEATURES_FILE).exists():
        (directory / FEATURES_FILE).unlink()  # an older fusion must not outlive the model it was fitted beside
    return directory
