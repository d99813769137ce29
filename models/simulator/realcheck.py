"""The simulator's IMU physics against a real foot IMU recorded together with optical motion capture.

`iotlm sim check-foot [--json]` (or `python -m models.simulator.realcheck`).

Data: gaitmap 2.6.0's example recording (MIT licence, shipped in its sdist only): subject 5047 of the
FAU sensor-position study walking for 38.7 s with a NilsPod IMU on the lateral side of each shoe
(204.8 Hz, acc m/s^2, gyro deg/s, already turned by gaitmap into its foot sensor frame: x to the shoe's
tip, y to the left, z up, for both feet) and optical markers on the same shoes (100 Hz, mm, lab z up):
heel (FCC), toe (TOE) and fifth metatarsal head (FM5). The two systems are synchronised.

What is checked: the markers give the shoe's orientation (a frame built from the three markers) and
position; the project's own IMU synthesis (`imu.specific_force_and_rate`, the function every simulated
device goes through: specific force R^T (a - g), gyro from the orientation's rate) turns them into the
readings a sensor on the shoe would give; those are compared with the real sensor's readings.

Three things are not known from the markers and are estimated on the FIRST HALF of the recording only,
then everything is scored on the SECOND HALF:
- the time offset between the systems (cross-correlation of |gyro|, which no rotation changes; the lag
  is also reported per half so a clock drift would show);
- the fixed rotation from the marker frame to the sensor's axes (a sensor is never glued exactly along
  the markers' heel-toe line): Wahba/Kabsch least squares on the gyro vectors;
- the sensor's offset from the heel marker in the shoe frame (lever arm): linear least squares on the
  accelerometer, f = R^T (a_heel - g) + R^T R'' r is linear in r.

Both signals are low-passed by the same zero-phase 4th-order Butterworth at 12 Hz (markers are
differentiated twice: their millimetre noise would otherwise swamp the acceleration; this is the usual
marker filter band in gait analysis), and compared at the mocap's 100 Hz.

Thresholds (written from physics expectations before any number was computed):
- both systems see one rigid shoe, so the angular rate must agree closely: |gyro| correlation >= 0.95,
  every gyro axis >= 0.85, gyro RMSE <= 40 deg/s per axis (swing peaks are 300-500 deg/s);
- acceleration needs a second derivative of filtered markers and a fitted lever arm, and the sensor
  sits on a shoe upper that flexes: |acc| correlation >= 0.85, acc x and z (forward, vertical: the large
  swing and gravity components) >= 0.8, acc y (lateral, small) >= 0.5, RMSE <= 3.5 m/s^2 per axis;
- the stride frequency (dominant line of |gyro| over the whole recording, computed separately from
  the raw real signal and the simulated one) must agree within 0.02 Hz;
- the fitted mounting rotation within 30 deg of identity (gaitmap already turned the sensor to the
  foot frame; what remains is how the sensor sits on the shoe), the lever arm under 0.25 m, the
  time offset under 0.5 s and the same in both halves within 15 ms.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from models.simulator.imu import specific_force_and_rate

GAITMAP_SDIST = "gaitmap-2.6.0.tar.gz"
CACHE_DIR = Path.home() / ".cache" / "iotlm"
IMU_RATE_HZ = 204.8
MOCAP_RATE_HZ = 100.0
LOWPASS_HZ = 12.0
SIDES = ("left", "right")

THRESHOLDS = {
    "gyro_magnitude_corr": 0.95, "gyro_axis_corr": 0.85, "gyro_rmse_dps": 40.0,
    "acc_magnitude_corr": 0.85, "acc_xz_corr": 0.8, "acc_y_corr": 0.5, "acc_rmse": 3.5,
    "stride_hz_diff": 0.02, "mount_deg": 30.0, "lever_arm_m": 0.25, "lag_s": 0.5, "lag_halves_s": 0.015,
}  # fmt: skip


class FootDataUnavailable(RuntimeError):
    pass


def gaitmap_sdist(cache_dir: Path = CACHE_DIR) -> Path:
    """The gaitmap 2.6.0 sdist, fetched once with pip (the CSVs are in the sdist only, not the wheel)."""
    path = cache_dir / GAITMAP_SDIST
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                              "gaitmap==2.6.0", "-d", tmp], capture_output=True, text=True)  # fmt: skip
        fetched = Path(tmp) / GAITMAP_SDIST
        if run.returncode != 0 or not fetched.exists():
            raise FootDataUnavailable(f"pip download gaitmap==2.6.0 failed: {run.stderr.strip()[-300:]}")
        fetched.replace(path)
    return path


@dataclass
class FootRecording:
    imu: dict[str, tuple[np.ndarray, np.ndarray]]  # side -> acc (N, 3) m/s^2, gyro (N, 3) deg/s at 204.8 Hz
    markers: dict[str, dict[str, np.ndarray]]  # side -> marker (FCC, TOE, FM5) -> (M, 3) m at 100 Hz, z up


def load_foot_recording(cache_dir: Path = CACHE_DIR) -> FootRecording:
    import pandas as pd

    with tarfile.open(gaitmap_sdist(cache_dir)) as tar:
        def read(name: str):
            member = tar.extractfile(f"gaitmap-2.6.0/example_data/{name}")
            return pd.read_csv(io.BytesIO(member.read()), header=[0, 1], index_col=0)

        imu, mocap = read("imu_sample.csv"), read("mocap_sample.csv")
    out_imu = {side: (imu[f"{side}_sensor"][["acc_x", "acc_y", "acc_z"]].to_numpy(float),
                      imu[f"{side}_sensor"][["gyr_x", "gyr_y", "gyr_z"]].to_numpy(float)) for side in SIDES}
    markers = {side: {name: mocap[f"{side[0].upper()}_{name}"][["x", "y", "z"]].to_numpy(float) / 1000.0
                      for name in ("FCC", "TOE", "FM5")} for side in SIDES}  # fmt: skip
    return FootRecording(out_imu, markers)


def _lowpass(x: np.ndarray, fs: float, cutoff: float = LOWPASS_HZ) -> np.ndarray:
    return sosfiltfilt(butter(4, cutoff, fs=fs, output="sos"), x, axis=0)


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    """Markers drop out now and then (NaN): interpolate across the gap."""
    x = x.copy()
    k = np.arange(len(x))
    for axis in range(x.shape[1]):
        bad = ~np.isfinite(x[:, axis])
        if bad.any():
            x[bad, axis] = np.interp(k[bad], k[~bad], x[~bad, axis])
    return x


def shoe_frame(markers: dict[str, np.ndarray], side: str) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3, 3) shoe axes -> world (x heel to toe, y left, z up) and the heel position (M, 3), low-passed.

    The fifth metatarsal marker is on the outside of the foot: to the left of the heel-toe line on the
    left shoe, to the right on the right one, which fixes the sign of the plane's normal.
    """
    heel, toe, fm5 = (_lowpass(_fill_gaps(markers[name]), MOCAP_RATE_HZ) for name in ("FCC", "TOE", "FM5"))
    x = toe - heel
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z = np.cross(x, fm5 - heel) * (1.0 if side == "left" else -1.0)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=2), heel


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _resample(x: np.ndarray, fs: float, t: np.ndarray) -> np.ndarray:
    t_in = np.arange(len(x)) / fs
    return np.stack([np.interp(t, t_in, x[:, i]) for i in range(x.shape[1])], axis=1)


def _find_lag(real_gyro_mag: np.ndarray, sim_gyro_mag: np.ndarray, t: np.ndarray, max_lag_s: float = 2.0) -> float:
    """Seconds to add to the mocap clock to read the IMU: coarse cross-correlation, then a 1 ms search."""
    sim = sim_gyro_mag - sim_gyro_mag.mean()

    def score(lag: float) -> float:
        real = np.interp(t + lag, np.arange(len(real_gyro_mag)) / IMU_RATE_HZ, real_gyro_mag)
        return _corr(real, sim)

    coarse = np.arange(-max_lag_s, max_lag_s, 1.0 / MOCAP_RATE_HZ)
    best = coarse[np.argmax([score(lag) for lag in coarse])]
    fine = np.arange(best - 0.015, best + 0.015, 0.001)
    return float(fine[np.argmax([score(lag) for lag in fine])])


def _wahba(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation M minimising sum |target - M source|^2 (Kabsch, SVD)."""
    U, _, Vt = np.linalg.svd(source.T @ target)
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    return Vt.T @ np.diag([1.0, 1.0, d]) @ U.T


def stride_frequency(gyro_magnitude: np.ndarray, fs: float) -> float:
    """The dominant line of |gyro| in 0.4-2 Hz (one foot swings once per stride), zero-padded spectrum."""
    x = (gyro_magnitude - gyro_magnitude.mean()) * np.hanning(len(gyro_magnitude))
    n = 16 * len(x)
    spectrum, freqs = np.abs(np.fft.rfft(x, n)), np.fft.rfftfreq(n, 1.0 / fs)
    band = (freqs > 0.4) & (freqs < 2.0)
    return float(freqs[band][np.argmax(spectrum[band])])


@dataclass
class FootComparison:
    side: str
    t: np.ndarray  # (M,) mocap times, s
    real_acc: np.ndarray  # (M, 3) m/s^2, low-passed, on the mocap clock
    real_gyro: np.ndarray  # (M, 3) deg/s
    sim_acc: np.ndarray
    sim_gyro: np.ndarray
    metrics: dict


def compare_foot(recording: FootRecording, side: str) -> FootComparison:
    acc_raw, gyro_raw = recording.imu[side]
    R_shoe, heel = shoe_frame(recording.markers[side], side)
    t = np.arange(len(heel)) / MOCAP_RATE_HZ
    half = len(t) // 2
    fit, score = slice(0, half), slice(half, len(t))

    # Orientation rate at the heel (the lever arm does not change it): the time offset and the mounting.
    _, gyro_shoe = specific_force_and_rate(R_shoe, heel, MOCAP_RATE_HZ)
    gyro_shoe = np.degrees(gyro_shoe)
    real_acc_f, real_gyro_f = _lowpass(acc_raw, IMU_RATE_HZ), _lowpass(gyro_raw, IMU_RATE_HZ)
    real_gyro_mag = np.linalg.norm(real_gyro_f, axis=1)
    lag = _find_lag(real_gyro_mag, np.linalg.norm(gyro_shoe, axis=1)[fit], t[fit])
    lag_second_half = _find_lag(real_gyro_mag, np.linalg.norm(gyro_shoe, axis=1)[score], t[score])
    real_acc = _resample(real_acc_f, IMU_RATE_HZ, t + lag)
    real_gyro = _resample(real_gyro_f, IMU_RATE_HZ, t + lag)
    inner = slice(5, half)  # the ends of the filtered, differentiated signals are not trusted for fitting
    M = _wahba(gyro_shoe[inner], real_gyro[inner])  # sensor axes = M @ shoe axes

    # Lever arm: f_sensor = M R^T (a_heel - g) + M R^T R'' r, linear in r (R'' by central differences).
    R_dd = np.zeros_like(R_shoe)
    R_dd[1:-1] = (R_shoe[2:] - 2 * R_shoe[1:-1] + R_shoe[:-2]) * MOCAP_RATE_HZ**2
    heel_acc, _ = specific_force_and_rate(R_shoe, heel, MOCAP_RATE_HZ)  # R^T (a_heel - g)
    A = np.einsum("nji,njk->nik", R_shoe, R_dd)  # R^T R''
    rhs = real_acc @ M - heel_acc  # M^T f_real - R^T (a_heel - g)
    lever, *_ = np.linalg.lstsq(A[inner].reshape(-1, 3), rhs[inner].reshape(-1), rcond=None)

    # The simulated sensor: the project's own synthesis, on the sensor's pose (axes R M^T, at heel + R r).
    R_sensor = R_shoe @ M.T
    position = heel + np.einsum("nij,j->ni", R_shoe, lever)
    sim_acc, sim_gyro = specific_force_and_rate(R_sensor, position, MOCAP_RATE_HZ)
    sim_gyro = np.degrees(sim_gyro)

    real_a, real_g, sim_a, sim_g = real_acc[score], real_gyro[score], sim_acc[score], sim_gyro[score]
    inner_score = slice(0, len(real_a) - 5)
    real_a, real_g, sim_a, sim_g = (x[inner_score] for x in (real_a, real_g, sim_a, sim_g))
    metrics = {
        "lag_s": lag, "lag_second_half_s": lag_second_half,
        "mount_deg": float(np.degrees(np.arccos(np.clip((np.trace(M) - 1) / 2, -1, 1)))),
        "mount_matrix": M.round(3).tolist(), "lever_arm_m": lever.round(3).tolist(),
        "acc_corr": [_corr(real_a[:, i], sim_a[:, i]) for i in range(3)],
        "gyro_corr": [_corr(real_g[:, i], sim_g[:, i]) for i in range(3)],
        "acc_rmse": np.sqrt(((real_a - sim_a) ** 2).mean(axis=0)).tolist(),
        "gyro_rmse_dps": np.sqrt(((real_g - sim_g) ** 2).mean(axis=0)).tolist(),
        "acc_std_real": real_a.std(axis=0).tolist(), "gyro_std_real_dps": real_g.std(axis=0).tolist(),
        "acc_magnitude_corr": _corr(np.linalg.norm(real_a, axis=1), np.linalg.norm(sim_a, axis=1)),
        "gyro_magnitude_corr": _corr(np.linalg.norm(real_g, axis=1), np.linalg.norm(sim_g, axis=1)),
        "stride_hz_real": stride_frequency(np.linalg.norm(gyro_raw, axis=1), IMU_RATE_HZ),
        "stride_hz_sim": stride_frequency(np.linalg.norm(sim_gyro, axis=1), MOCAP_RATE_HZ),
    }  # fmt: skip
    return FootComparison(side, t, real_acc, real_gyro, sim_acc, sim_gyro, metrics)


def failures(metrics: dict) -> list[str]:
    """The thresholds of the module docstring that one foot's metrics miss (empty: all met)."""
    th, m, out = THRESHOLDS, metrics, []

    def need(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    need(m["gyro_magnitude_corr"] >= th["gyro_magnitude_corr"], f"|gyro| corr {m['gyro_magnitude_corr']:.3f}")
    for i, axis in enumerate("xyz"):
        need(m["gyro_corr"][i] >= th["gyro_axis_corr"], f"gyro {axis} corr {m['gyro_corr'][i]:.3f}")
        need(m["gyro_rmse_dps"][i] <= th["gyro_rmse_dps"], f"gyro {axis} RMSE {m['gyro_rmse_dps'][i]:.1f} deg/s")
        limit = th["acc_y_corr"] if axis == "y" else th["acc_xz_corr"]
        need(m["acc_corr"][i] >= limit, f"acc {axis} corr {m['acc_corr'][i]:.3f}")
        need(m["acc_rmse"][i] <= th["acc_rmse"], f"acc {axis} RMSE {m['acc_rmse'][i]:.2f} m/s^2")
    need(m["acc_magnitude_corr"] >= th["acc_magnitude_corr"], f"|acc| corr {m['acc_magnitude_corr']:.3f}")
    need(abs(m["stride_hz_real"] - m["stride_hz_sim"]) <= th["stride_hz_diff"],
         f"stride {m['stride_hz_real']:.3f} vs {m['stride_hz_sim']:.3f} Hz")
    need(m["mount_deg"] <= th["mount_deg"], f"mounting {m['mount_deg']:.1f} deg")
    need(float(np.linalg.norm(m["lever_arm_m"])) <= th["lever_arm_m"], f"lever arm {m['lever_arm_m']}")
    need(abs(m["lag_s"]) <= th["lag_s"], f"lag {m['lag_s']:.3f} s")
    need(abs(m["lag_s"] - m["lag_second_half_s"]) <= th["lag_halves_s"],
         f"lag halves {m['lag_s']:.3f} vs {m['lag_second_half_s']:.3f} s")
    return out


def foot_statistics(acc: np.ndarray, gyro_dps: np.ndarray, fs: float) -> dict[str, float]:
    """Gait statistics of a foot sensor, 12 Hz low-passed: |gyro| mean and 95th percentile (deg/s),
    |acc| spread and 95th percentile (m/s^2), stride frequency (Hz)."""
    a, g = np.linalg.norm(_lowpass(acc, fs), axis=1), np.linalg.norm(_lowpass(gyro_dps, fs), axis=1)
    return {"gyro_mean_dps": float(g.mean()), "gyro_p95_dps": float(np.percentile(g, 95)), "acc_std": float(a.std()),
            "acc_p95": float(np.percentile(a, 95)), "stride_hz": stride_frequency(g, fs)}


def simulated_foot_statistics(clips: int = 10, seed: int = 0) -> dict[str, dict[str, float]]:
    """The same statistics for the simulator's own walking at the `foot` placement (procedural, and the
    DeepMimic walk): medians over `clips` 20 s clips at 100 Hz with realistic devices. Not time-aligned
    with anything: a check of the gait model, where compare_foot checks the physics."""
    from models.simulator.clip import simulate_clip
    from models.simulator.mocap import mocap_clip

    rng = np.random.default_rng(seed)
    out = {}
    for source, make in (("procedural_walking", lambda: simulate_clip("walking", rng, 20.0, 100.0, ("foot",))),
                         ("mocap_walk", lambda: mocap_clip("walk", rng, 20.0, 100.0, ("foot",)))):
        rows = []
        for _ in range(clips):
            trace = make().imu["foot"]
            rows.append(foot_statistics(trace.acc.astype(float), np.degrees(trace.gyro.astype(float)), 100.0))
        out[source] = {key: float(np.median([row[key] for row in rows])) for key in rows[0]}
    return out


def check_foot(cache_dir: Path = CACHE_DIR, simulated: bool = True) -> dict:
    """Both feet: metrics, the thresholds and what misses them (a JSON-ready dict); with `simulated`, also
    the gait statistics of the real shoes (seconds 5-35) beside the simulator's own walking foot."""
    recording = load_foot_recording(cache_dir)
    feet = {side: compare_foot(recording, side).metrics for side in SIDES}
    report = {"data": "gaitmap 2.6.0 example_data (imu_sample.csv, mocap_sample.csv)", "lowpass_hz": LOWPASS_HZ,
              "fit": "first half (lag, mounting rotation, lever arm)", "scored": "second half", "feet": feet,
              "thresholds": THRESHOLDS, "failures": {side: failures(m) for side, m in feet.items()}}
    if simulated:
        walk = slice(int(5 * IMU_RATE_HZ), int(35 * IMU_RATE_HZ))
        report["gait_statistics"] = {f"real_{side}": foot_statistics(recording.imu[side][0][walk],
                                                                     recording.imu[side][1][walk], IMU_RATE_HZ)
                                     for side in SIDES} | simulated_foot_statistics()
    return report


def plot_foot(out: Path, seconds: tuple[float, float] = (25.0, 31.0)) -> Path:
    """Real vs simulated shoe IMU, both feet, a few strides of the scored half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recording = load_foot_recording()
    fig, axes = plt.subplots(2, 2, figsize=(14, 6.5), sharex=True)
    for col, side in enumerate(SIDES):
        c = compare_foot(recording, side)
        k = (c.t >= seconds[0]) & (c.t <= seconds[1])
        for row, (real, sim, unit) in enumerate(((c.real_acc, c.sim_acc, "acc (m/s$^2$)"),
                                                 (c.real_gyro, c.sim_gyro, "gyro (deg/s)"))):
            ax = axes[row, col]
            for i, (axis, color) in enumerate(zip("xyz", ("tab:red", "tab:green", "tab:blue"))):
                ax.plot(c.t[k], real[k, i], color=color, lw=1.4, label=f"real {axis}")
                ax.plot(c.t[k], sim[k, i], color=color, lw=1.0, ls="--", label=f"from mocap {axis}")
            ax.set_ylabel(unit)
            ax.set_title(f"{side} shoe: " + ("accelerometer" if row == 0 else "gyroscope"))
        axes[1, col].set_xlabel("time (s)")
    axes[0, 0].legend(ncol=3, fontsize=7, loc="upper left")
    fig.suptitle("Real foot IMU (solid) vs the simulator's synthesis from optical markers (dashed), "
                 f"{LOWPASS_HZ:.0f} Hz low-pass, scored half")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    import json

    print(json.dumps(check_foot(), indent=1))


if __name__ == "__main__":
    main()
