"""`python -m models.simulator.plot [OUT_DIR]`: figures of simulated IMU traces.

simulator.png: accelerometer and gyroscope traces of a few activities at the waist and the
working wrist (ideal devices, nominal mounting). simulator_activities.png: the magnitudes of
acceleration and angular rate at waist, wrist and thigh pocket for every activity.
simulator_mocap.png: the same magnitudes for pybullet's DeepMimic motion capture clips (mocap.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.simulator import ACTIVITIES, SubjectParams, simulate_clip  # noqa: E402
from models.simulator.clip import Clip  # noqa: E402

ACTIVITIES_SHOWN = ("walking", "walking upstairs", "sit-to-stand", "falling", "lying", "waving")
DOCS = Path(__file__).resolve().parents[2] / "docs"


def plot_traces(out: Path, seed: int = 0) -> Path:
    subject = SubjectParams()  # right-handed: the watch goes on the right, working wrist
    placements = ("waist", "right wrist")
    fig, axes = plt.subplots(len(ACTIVITIES_SHOWN), 4, figsize=(16, 2.2 * len(ACTIVITIES_SHOWN)), sharex=True)
    for row, activity in enumerate(ACTIVITIES_SHOWN):
        clip = simulate_clip(activity, np.random.default_rng(seed), duration_s=8.0, rate_hz=50.0,
                             placements=placements, subject=subject, realism=False)
        for col, (placement, signal) in enumerate((p, s) for p in placements for s in ("acc", "gyro")):
            ax = axes[row, col]
            values = getattr(clip.imu[placement], signal)
            for axis, color in zip(range(3), ("tab:red", "tab:green", "tab:blue")):
                ax.plot(clip.t, values[:, axis], color=color, lw=0.8, label="xyz"[axis])
            if signal == "acc":
                ax.plot(clip.t, np.linalg.norm(values, axis=1), color="k", lw=0.6, alpha=0.5, label="|a|")
            ax.grid(alpha=0.3)
            if row == 0:
                unit = "m/s$^2$" if signal == "acc" else "rad/s"
                ax.set_title(f"{placement} {'accelerometer' if signal == 'acc' else 'gyroscope'} ({unit})")
            if col == 0:
                ax.set_ylabel(activity)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle("Simulated IMU: specific force and angular rate in the device frame (50 Hz)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _magnitude_grid(out: Path, clips: list[tuple[str, Clip]], placements: Sequence[str], cols: int,
                    figsize: tuple[float, float], acc_max: float, gyro_max: float, title: str | None = None,
                    sharex: bool = False) -> Path:
    """|acc| and |gyro| of each (label, clip) at `placements`, `cols` clips per row, to `out`."""
    rows = -(-len(clips) // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=figsize, sharex=sharex)
    for k, (label, clip) in enumerate(clips):
        ax_acc, ax_gyro = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        for placement, color in zip(placements, ("k", "tab:orange", "tab:blue")):
            trace = clip.imu[placement]
            ax_acc.plot(clip.t, np.linalg.norm(trace.acc, axis=1), color=color, lw=0.7, label=placement)
            ax_gyro.plot(clip.t, np.linalg.norm(trace.gyro, axis=1), color=color, lw=0.7)
        ax_acc.set_ylabel(label, fontsize=8 if "\n" not in label else 7)
        ax_acc.set_ylim(0, acc_max)
        ax_gyro.set_ylim(0, gyro_max)
        for ax in (ax_acc, ax_gyro):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    for k in range(len(clips), rows * cols):
        axes[k // cols, 2 * (k % cols)].axis("off")
        axes[k // cols, 2 * (k % cols) + 1].axis("off")
    for c in range(cols):
        axes[0, 2 * c].set_title(f"|acc| m/s$^2$ (clipped at {acc_max:g})", fontsize=9)
        axes[0, 2 * c + 1].set_title("|gyro| rad/s", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out


def plot_catalogue(out: Path, seed: int = 0) -> Path:
    placements = ("waist", "right wrist", "left pocket")
    names = list(ACTIVITIES)
    clips = [(activity, simulate_clip(activity, np.random.default_rng(seed), duration_s=10.0, rate_hz=50.0,
                                      placements=placements, subject=SubjectParams(), realism=False))
             for activity in names]
    return _magnitude_grid(out, clips, placements, cols=3, figsize=(20, 1.6 * -(-len(names) // 3)), acc_max=40,
                           gyro_max=8, sharex=True)


def plot_mocap(out: Path, seed: int = 0) -> Path:
    """Every DeepMimic mocap clip (pybullet) through the simulator: |acc| and |gyro| at waist, right
    wrist and left ankle (ideal devices, nominal mounting), one recorded cycle each."""
    from models.simulator.mocap import clip_names, mocap_clip

    placements = ("waist", "right wrist", "left ankle")
    names = clip_names()
    clips = []
    for name in names:
        clip = mocap_clip(name, np.random.default_rng(seed), duration_s=None, rate_hz=50.0, placements=placements,
                          realism=False, random_phase=False)
        clips.append((f"{name}\n({clip.activity})", clip))
    return _magnitude_grid(out, clips, placements, cols=4, figsize=(22, 1.8 * -(-len(names) // 4)), acc_max=60,
                           gyro_max=15, sharex=False, title="DeepMimic motion capture (pybullet) through the "
                           "simulator's IMU physics: one recorded cycle per clip")


if __name__ == "__main__":
    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
    docs.mkdir(parents=True, exist_ok=True)
    print(plot_traces(docs / "simulator.png"))
    print(plot_catalogue(docs / "simulator_activities.png"))
    print(plot_mocap(docs / "simulator_mocap.png"))
