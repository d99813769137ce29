"""Training the room-state model on simulated buildings (`iotlm train rooms`), and the data splits.

Buildings are split by index, never mixed: TRAIN (0..n-1) fit the weights, VALIDATION (200..) choose
the epoch, TEST (500..) are only ever evaluated (`iotlm eval --dataset rooms`). Every building has its
own rooms, ventilation, sensors, weather and week, so a test building is new in all of them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.rooms.simulator import simulate_buildings
from models.rooms.windows import drop_channels, trace_windows, window_features

TRAIN_FIRST, VALIDATION_FIRST, TEST_FIRST = 0, 200, 500
DAYS = 3
SIM_SEED = 0
CACHE_VERSION = "1"


@dataclass
class RoomWindows:
    x: np.ndarray  # (n, N_INPUT, WINDOW_MIN)
    count: np.ndarray
    occupancy: np.ndarray
    use: np.ndarray
    air: np.ndarray
    room: np.ndarray  # room id per window
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_rooms(self) -> int:
        return len(np.unique(self.room))


def building_windows(first: int, n: int, hop_min: int, seed: int = SIM_SEED, days: int = DAYS,
                     cache: Path | None = None, progress: bool = True) -> RoomWindows:
    """Windows of every room of buildings first..first+n-1 (cached on disk: simulation is the slow part)."""
    key = hashlib.sha1(json.dumps([CACHE_VERSION, first, n, hop_min, seed, days]).encode()).hexdigest()[:16]
    path = cache / f"rooms-{key}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return RoomWindows(**{k: z[k] for k in z.files})
    parts = []
    for trace in simulate_buildings(n, seed=seed, days=days, first=first, progress=progress):
        x, labels = trace_windows(trace, hop_min)
        parts.append((x, labels, np.full(len(x), trace.room.room_id), np.full(len(x), trace.room.kind)))
    data = RoomWindows(
        x=np.concatenate([p[0] for p in parts]),
        **{k: np.concatenate([p[1][k] for p in parts]) for k in ("count", "occupancy", "use", "air")},
        room=np.concatenate([p[2] for p in parts]), kind=np.concatenate([p[3] for p in parts]),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **data.__dict__)
    return data


def default_cache() -> Path:
    return Path.home() / ".cache" / "iotlm" / "rooms"


def train_rooms(out: Path, buildings: int = 30, epochs: int = 12, seed: int = 0, hop_min: int = 10,
                validation_buildings: int = 6, cache: Path | None = None, max_steps: int | None = None,
                progress: bool = True) -> dict:
    """Train on `buildings` simulated buildings, pick the epoch on validation buildings, save to `out`."""
    import torch
    from tqdm import tqdm

    from models.rooms.model import DEFAULT_USES, USE_PHRASES, ZERO_SHOT_PHRASES, RoomStateModel, RoomStateNet
    from models.text import TextEncoder

    started = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = building_windows(TRAIN_FIRST, buildings, hop_min, cache=cache, progress=progress)
    val = building_windows(VALIDATION_FIRST, validation_buildings, hop_min, cache=cache, progress=progress)
    text = TextEncoder()
    phrases = sorted({p for ps in USE_PHRASES.values() for p in ps})
    vectors = dict(zip(phrases, text.embed(phrases)))
    # one vector per (use, phrase): a batch is scored against a random wording of every use
    phrase_table = torch.from_numpy(np.stack([np.stack([vectors[p] for p in USE_PHRASES[u]]) for u in DEFAULT_USES]))

    net = RoomStateNet()
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    batch = 256
    steps_per_epoch = int(np.ceil(len(train) / batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    y = {k: torch.from_numpy(getattr(train, k)) for k in ("occupancy", "use", "air")}
    log_count = torch.from_numpy(np.log1p(train.count).astype(np.float32))
    best, best_state, history, step = -1.0, None, [], 0
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(train))
        losses = []
        bar = tqdm(range(0, len(order), batch), desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for start in bar:
            idx = order[start:start + batch]
            x = torch.from_numpy(drop_channels(train.x[idx], rng))
            pred = net(x)
            pick = torch.from_numpy(rng.integers(0, phrase_table.shape[1], len(DEFAULT_USES)))
            labels = phrase_table[torch.arange(len(DEFAULT_USES)), pick]
            loss = (nn_ce(pred["occupancy"], y["occupancy"][idx]) + nn_ce(pred["air"], y["air"][idx])
                    + nn_ce(net.use_logits(pred["text"], labels), y["use"][idx])
                    + torch.nn.functional.smooth_l1_loss(pred["log_count"], log_count[idx]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
            step += 1
            if max_steps and step >= max_steps:
                break
        model = RoomStateModel(net, {"version": "candidate"}, vectors)
        scores = score(model, val)
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **{
            f"val_{k}": round(v, 4) for k, v in scores.items()}, "seconds": round(time.time() - started, 1)})
        if progress:
            print(json.dumps(history[-1]))
        if scores["occupancy_macro_f1"] + scores["use_macro_f1"] > best:
            best = scores["occupancy_macro_f1"] + scores["use_macro_f1"]
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if max_steps and step >= max_steps:
            break
    net.load_state_dict(best_state)
    zero_shot = sorted(ZERO_SHOT_PHRASES.values())
    vectors.update(zip(zero_shot, text.embed(zero_shot)))  # shipped so the zero-shot check needs no encoder
    config = {
        "version": f"{out.name}-1.0.0", "architecture": {"width": 64, "dim": 128},
        "default_uses": DEFAULT_USES,
        "training": {"data": f"simulated buildings {TRAIN_FIRST}..{TRAIN_FIRST + buildings - 1} (seed {SIM_SEED}, "
                             f"{DAYS} days, windows every {hop_min} min: {len(train)} windows of {train.n_rooms} rooms)",
                     "validation": f"buildings {VALIDATION_FIRST}..{VALIDATION_FIRST + validation_buildings - 1} "
                                   "(epoch choice)",
                     "seed": seed, "epochs": epochs, "steps": step, "seconds": round(time.time() - started, 1),
                     "history": history},
    }
    RoomStateModel(net, config, vectors).save(out)
    return config


def nn_ce(logits, target):
    import torch

    return torch.nn.functional.cross_entropy(logits, target)


def score(model, data: RoomWindows) -> dict:
    from models.metrics import classification_metrics
    from models.rooms.model import DEFAULT_USES
    from models.rooms.windows import OCCUPANCY_BINS

    p = model.predict(data.x)
    occ = classification_metrics(data.occupancy, p["occupancy_bin"], list(OCCUPANCY_BINS))
    use = classification_metrics(data.use, p["use_index"], DEFAULT_USES)
    return {"occupancy_accuracy": occ["accuracy"], "occupancy_macro_f1": occ["macro_f1"],
            "use_accuracy": use["accuracy"], "use_macro_f1": use["macro_f1"]}


def fit_baseline(data: RoomWindows, target: str, seed: int = 0):
    """Gradient boosting on window statistics (models.rooms.windows.window_features)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)
    model.fit(window_features(data.x), getattr(data, target))
    return model
