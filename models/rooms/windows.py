"""Room windows: a room device's reports -> fixed (channels, minutes) arrays, and their labels.

A window covers the WINDOW_MIN minutes before its end on a one-minute grid; each grid minute holds
the last report at or before it (a sample-and-hold, as a dashboard would show it), unless that report
is older than MAX_AGE_S (then the minute is missing). Every channel comes as its normalised level and
its change since the window's first minute; a presence flag per channel says whether the device has
that channel at all, so one model serves devices with any subset of the channels (the real UCI office
has no PIR or noise). The worker and training use this same function.

Labels describe the last LABEL_MIN minutes: the median head count, the dominant use, and the air
quality from the true CO2 at the end.
"""

from __future__ import annotations

import numpy as np

from models.rooms.simulator import ROOM_USES, STEP_S, RoomTrace

CHANNELS = ("co2", "temperature", "humidity", "light", "noise", "pir")
WINDOW_MIN = 30
HOP_MIN = 5
LABEL_MIN = 5
MAX_AGE_S = 20 * 60.0  # a report older than this no longer stands for the room (reports every 10 s-16 min)
N_INPUT = 3 * len(CHANNELS)  # level, change, presence

OCCUPANCY_BINS = ("empty", "1 person", "2-4 people", "5-10 people", "more than 10 people")
AIR_QUALITY = ("good", "moderate", "poor")  # CO2 < 800, 800-1400, > 1400 ppm
AIR_LIMITS = (800.0, 1400.0)


def occupancy_bin(count) -> np.ndarray:
    count = np.asarray(count)
    return np.select([count <= 0, count == 1, count <= 4, count <= 10], [0, 1, 2, 3], 4)


def air_quality(co2_ppm) -> np.ndarray:
    return np.digitize(np.asarray(co2_ppm), AIR_LIMITS)


def _normalise(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level, change since the first minute), both of order one."""
    if name == "co2":
        level, scale = (x - 420.0) / 500.0, 200.0
    elif name == "temperature":
        level, scale = (x - 21.0) / 3.0, 0.5
    elif name == "humidity":
        level, scale = (x - 45.0) / 15.0, 2.0
    elif name == "light":
        x = np.log1p(np.maximum(x, 0.0))
        level, scale = x / 7.0, 1.0
    elif name == "noise":
        level, scale = (x - 35.0) / 15.0, 10.0
    else:  # pir
        level, scale = x, 1.0
    first = x[..., :1]
    change = (x - first) / scale
    return level, change


def window_arrays(report_t: np.ndarray, readings: dict[str, np.ndarray], ends: np.ndarray) -> np.ndarray:
    """(len(ends), N_INPUT, WINDOW_MIN) float32 for a device's reports (times in s, NaN = lost report)."""
    ends = np.asarray(ends, float)
    grid = ends[:, None] - 60.0 * np.arange(WINDOW_MIN - 1, -1, -1)[None]  # (n, W)
    out = np.zeros((len(ends), N_INPUT, WINDOW_MIN), np.float32)
    for c, name in enumerate(CHANNELS):
        values = readings.get(name)
        if values is None:
            continue
        values = np.asarray(values, float)
        ok = np.isfinite(values)
        t, v = np.asarray(report_t, float)[ok], values[ok]
        if not len(t):
            continue
        index = np.searchsorted(t, grid, side="right") - 1
        fresh = (index >= 0) & (grid - t[np.maximum(index, 0)] <= MAX_AGE_S)
        held = np.where(fresh, v[np.maximum(index, 0)], np.nan)
        # a missing minute takes the window's nearest known value, so the change channel stays meaningful
        fill = np.nanmedian(np.where(fresh, held, np.nan), axis=1, keepdims=True) if fresh.any() else None
        held = np.where(fresh, held, np.nan_to_num(fill, nan=0.0) if fill is not None else 0.0)
        level, change = _normalise(name, held)
        known = fresh.any(axis=1, keepdims=True)
        out[:, c] = np.where(known, level, 0.0)
        out[:, len(CHANNELS) + c] = np.where(known, change, 0.0)
        out[:, 2 * len(CHANNELS) + c] = fresh
    return out


def window_features(x: np.ndarray) -> np.ndarray:
    """Hand-made statistics of window arrays for the feature baseline: per channel last, mean, std, min,
    max, slope of the level, the total change, and the fraction of fresh minutes."""
    n_ch = len(CHANNELS)
    level, change, fresh = x[:, :n_ch], x[:, n_ch:2 * n_ch], x[:, 2 * n_ch:]
    minutes = np.arange(x.shape[2]) - (x.shape[2] - 1) / 2
    slope = (level * minutes).sum(2) / (minutes ** 2).sum()
    return np.concatenate([level[..., -1], level.mean(2), level.std(2), level.min(2), level.max(2), slope,
                           change[..., -1], fresh.mean(2)], axis=1).astype(np.float32)


def window_labels(trace: RoomTrace, ends: np.ndarray) -> dict[str, np.ndarray]:
    """Truth of each window's last LABEL_MIN minutes."""
    k_end = np.minimum((ends / STEP_S).astype(int), len(trace.t))
    span = int(LABEL_MIN * 60 / STEP_S)
    count = np.empty(len(ends), np.int64)
    use = np.empty(len(ends), np.int64)
    co2 = trace.co2[np.maximum(k_end - 1, 0)]
    passing = ROOM_USES.index("passing through")
    for i, k in enumerate(k_end):
        occ = trace.occupancy[max(0, k - span):k]
        uses = trace.use[max(0, k - span):k]
        count[i] = int(np.round(np.median(occ)))
        if count[i] > 0:
            use[i] = np.bincount(uses[occ > 0], minlength=len(ROOM_USES)).argmax()
        else:
            use[i] = passing if (uses == passing).any() else 0  # a corridor's passers-by: not there at the median
    return {"count": count, "occupancy": occupancy_bin(count), "use": use, "air": air_quality(co2)}


def trace_windows(trace: RoomTrace, hop_min: int = HOP_MIN) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ends = np.arange(WINDOW_MIN * 60.0, trace.t[-1] + STEP_S, hop_min * 60.0)
    return window_arrays(trace.readings_t, trace.readings, ends), window_labels(trace, ends)


def drop_channels(x: np.ndarray, rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    """Training augmentation: devices without PIR, noise or humidity, and ones with only some channels."""
    x = x.copy()
    n_ch = len(CHANNELS)
    for c in range(n_ch):
        gone = rng.random(len(x)) < (p if CHANNELS[c] in ("pir", "noise", "humidity", "light") else p / 3)
        x[gone, c] = 0
        x[gone, n_ch + c] = 0
        x[gone, 2 * n_ch + c] = 0
    return x
