"""`iotlm eval --dataset rooms`: the room-state model on held-out simulated buildings, the feature
baseline beside it, and what the model says on the real UCI Occupancy office.

Test buildings (models.rooms.train.TEST_FIRST..) never inform training, the epoch choice or the
baseline. Occupancy is scored as the five bins of models.rooms.windows.OCCUPANCY_BINS and as occupied
vs empty; room use with the trained wordings and, zero-shot, with wordings never trained on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from models.metrics import classification_metrics
from models.rooms.model import DEFAULT_USES, ZERO_SHOT_PHRASES, RoomStateModel
from models.rooms.train import DAYS, SIM_SEED, TEST_FIRST, TRAIN_FIRST, building_windows, default_cache, fit_baseline
from models.rooms.windows import (
    AIR_QUALITY, CHANNELS, OCCUPANCY_BINS, WINDOW_MIN, window_arrays, window_features,
)  # fmt: skip


def run_room_evaluation(model_name: str | None = None, checkpoint_dir: Path | None = None, test_buildings: int = 12,
                        baseline_buildings: int = 30, seed: int = 0, progress: bool = False) -> dict:
    started = time.time()
    model = RoomStateModel.load(model_name, checkpoint_dir)
    cache = default_cache()
    test = building_windows(TEST_FIRST, test_buildings, hop_min=5, cache=cache, progress=progress)
    p = model.predict(test.x)
    occ = classification_metrics(test.occupancy, p["occupancy_bin"], list(OCCUPANCY_BINS))
    occupied = classification_metrics((test.occupancy > 0).astype(int), (p["occupancy_bin"] > 0).astype(int),
                                      ["empty", "occupied"])
    use = classification_metrics(test.use, p["use_index"], DEFAULT_USES)
    zero_shot_words = [ZERO_SHOT_PHRASES[u] for u in DEFAULT_USES]
    zs = classification_metrics(test.use, model.predict(test.x, zero_shot_words)["use_index"], DEFAULT_USES)
    air = classification_metrics(test.air, p["air"].argmax(1), list(AIR_QUALITY))
    in_use = test.count > 0
    count_mae = float(np.abs(p["count"][in_use] - test.count[in_use]).mean()) if in_use.any() else None

    train = building_windows(TRAIN_FIRST, baseline_buildings, hop_min=10, cache=cache, progress=progress)
    base_occ = fit_baseline(train, "occupancy", seed).predict(window_features(test.x))
    base_use = fit_baseline(train, "use", seed).predict(window_features(test.x))
    baseline = classification_metrics(test.occupancy, base_occ, list(OCCUPANCY_BINS))
    baseline_use = classification_metrics(test.use, base_use, DEFAULT_USES)

    buildings = np.array([r.split("-")[0] for r in test.room])
    per_building = [float((p["occupancy_bin"][buildings == b] == test.occupancy[buildings == b]).mean())
                    for b in np.unique(buildings)]
    per_kind = {str(k): round(float((p["occupancy_bin"][test.kind == k] == test.occupancy[test.kind == k]).mean()), 4)
                for k in np.unique(test.kind)}
    return {
        "dataset": "rooms", "model_version": model.version,
        "occupancy_accuracy": occ["accuracy"], "occupancy_macro_f1": occ["macro_f1"],
        "occupancy_per_class_f1": occ["per_class_f1"], "occupancy_confusion": occ["confusion"],
        "occupancy_labels": list(OCCUPANCY_BINS),
        "occupied_accuracy": occupied["accuracy"], "occupied_macro_f1": occupied["macro_f1"],
        "count_mae_when_occupied": count_mae,
        "use_accuracy": use["accuracy"], "use_macro_f1": use["macro_f1"], "use_per_class_f1": use["per_class_f1"],
        "use_zero_shot_accuracy": zs["accuracy"], "use_zero_shot_macro_f1": zs["macro_f1"],
        "use_zero_shot_words": zero_shot_words,
        "air_accuracy": air["accuracy"], "air_macro_f1": air["macro_f1"],
        "baseline": "gradient boosting (sklearn HistGradientBoosting) on window statistics, "
                    f"fit on training buildings {TRAIN_FIRST}..{TRAIN_FIRST + baseline_buildings - 1}",
        "baseline_occupancy_accuracy": baseline["accuracy"], "baseline_occupancy_macro_f1": baseline["macro_f1"],
        "baseline_use_accuracy": baseline_use["accuracy"], "baseline_use_macro_f1": baseline_use["macro_f1"],
        "occupancy_accuracy_per_building": {"mean": round(float(np.mean(per_building)), 4),
                                            "std": round(float(np.std(per_building)), 4),
                                            "min": round(float(np.min(per_building)), 4)},
        "occupancy_accuracy_per_kind": per_kind,
        "n_rooms": test.n_rooms, "n_windows": len(test), "n_buildings": test_buildings,
        "test_buildings": f"{TEST_FIRST}..{TEST_FIRST + test_buildings - 1} (simulation seed {SIM_SEED}, {DAYS} days)",
        "window_min": WINDOW_MIN, "seed": seed, "real": real_series_check(model),
        "seconds": round(time.time() - started, 1),
    }


def real_windows(t: np.ndarray, channels: dict[str, np.ndarray], hide: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Windows ending at every report of a real series (after the first WINDOW_MIN minutes)."""
    ends = t[t >= t[0] + WINDOW_MIN * 60]
    readings = {k: v for k, v in channels.items() if k in CHANNELS and k not in hide}
    return ends, window_arrays(t, readings, ends)


def real_series_check(model: RoomStateModel) -> dict | None:
    """The UCI office has no occupancy labels; lit hours (> 100 lux) are the proxy of people in. With
    the light channel hidden from the model, agreement with the proxy is not circular."""
    try:
        from models.rooms.real import MissingDataPackage, uci_occupancy

        office = uci_occupancy()
    except (ImportError, MissingDataPackage):
        return None
    lit = office.channels["light"] > 100
    out = {"series": "UCI Occupancy office (river), 509 reports every 16 min", "proxy": "light > 100 lux"}
    for name, hide in (("all_channels", ()), ("light_hidden", ("light",))):
        ends, x = real_windows(office.t, office.channels, hide)
        occupied = model.predict(x)["occupancy_bin"] > 0
        proxy = lit[np.searchsorted(office.t, ends)]
        agree = classification_metrics(proxy.astype(int), occupied.astype(int), ["unlit", "lit"])
        out[name] = {"agreement_accuracy": round(agree["accuracy"], 4), "agreement_macro_f1": round(agree["macro_f1"], 4),
                     "predicted_occupied_fraction": round(float(occupied.mean()), 4),
                     "proxy_lit_fraction": round(float(proxy.mean()), 4), "n_windows": int(len(ends))}
    return out


def real_series_figure(path: str, model: RoomStateModel) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.rooms.real import uci_occupancy

    office = uci_occupancy()
    first = office.t[0] - office.t[0] % 86_400
    fig, axes = plt.subplots(3, 1, figsize=(12, 7), sharex=True)
    hours = (office.t - first) / 3600
    axes[0].plot(hours, office.channels["co2"], label="CO2 (ppm)")
    axes[0].plot(hours, office.channels["light"], label="light (lux)", alpha=0.7)
    axes[0].legend(fontsize=7)
    axes[0].set_title("real UCI Occupancy office (river) and what the room model says")
    for ax, (name, hide) in zip(axes[1:], (("all channels", ()), ("light hidden", ("light",)))):
        ends, x = real_windows(office.t, office.channels, hide)
        pred = model.predict(x)
        h = (ends - first) / 3600
        ax.step(h, pred["occupancy_bin"], where="post", label="predicted occupancy bin")
        twin = ax.twinx()
        twin.step(h, pred["count"], where="post", alpha=0.5, color="C1")
        twin.set_ylabel("predicted head count (orange)", fontsize=7)
        ax.fill_between(hours, office.channels["light"] > 100, step="post", alpha=0.2, color="C2",
                        label="proxy: lit (> 100 lux)")
        ax.set_yticks(range(len(OCCUPANCY_BINS)), OCCUPANCY_BINS, fontsize=7)
        ax.set_title(f"model input: {name}")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("hour since the first midnight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def results_figure(path: str, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ["occupancy acc", "occupancy F1", "use acc", "use F1"]
    model = [report["occupancy_accuracy"], report["occupancy_macro_f1"], report["use_accuracy"], report["use_macro_f1"]]
    base = [report["baseline_occupancy_accuracy"], report["baseline_occupancy_macro_f1"],
            report["baseline_use_accuracy"], report["baseline_use_macro_f1"]]
    x = np.arange(len(names))
    axes[0].bar(x - 0.2, model, 0.4, label=report["model_version"])
    axes[0].bar(x + 0.2, base, 0.4, label="feature baseline (gradient boosting)")
    axes[0].bar([4], [report["use_zero_shot_macro_f1"]], 0.4, label="use F1, zero-shot wordings", color="C2")
    axes[0].set_xticks(list(x) + [4], names + ["use F1 (new words)"], fontsize=8)
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"held-out simulated buildings: {report['n_rooms']} rooms, {report['n_windows']} windows")
    confusion = np.array(report["occupancy_confusion"], float)
    confusion /= np.maximum(confusion.sum(1, keepdims=True), 1)
    axes[1].imshow(confusion, cmap="Blues", vmin=0, vmax=1)
    labels = report["occupancy_labels"]
    axes[1].set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
    axes[1].set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes[1].text(j, i, f"{confusion[i, j]:.2f}", ha="center", va="center", fontsize=7)
    axes[1].set_title("occupancy confusion (rows: truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """`python -m models.rooms.evaluate REPORT.json`: the docs figures from an `iotlm eval --dataset rooms --json` report."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("report")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    report = json.loads(Path(args.report).read_text())
    results_figure(f"{args.out}/rooms_results.png", report)
    real_series_figure(f"{args.out}/rooms_real.png", RoomStateModel.load())


if __name__ == "__main__":
    main()
