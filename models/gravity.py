"""A per-device gravity reference: where "up" is in a device's own frame, estimated without labels.

Posture (sitting vs standing vs lying) is the tilt of the body relative to upright. One window under
an unknown mounting cannot know it, but a device's stream can: while its wearer walks (or runs,
climbs stairs) the trunk is upright, so the mean specific force over gait windows points along the
device's "up". `GravityReference` accumulates that over a device's windows in time order (a
running sum, so the workers can keep it as small per-device state), falling back to the mean over
all windows (a long span) until enough gait has been seen.

The shipped encoders take the reference as a canonicalising rotation: each window of a device is
rotated by the smallest rotation that takes the device's estimated "up" onto `CANONICAL_UP`, the
"up" the encoder knows from training (what a waist phone measures in the HAPT train subjects, found
by this same label-free estimator on train subjects only). The rotation about the vertical axis
(which way round the belt the device faces) stays unknown; the training mountings vary it.

    ref = GravityReference()
    for window in device_windows: ref.update(window_acc)        # (T, 3) m/s^2
    acc, gyro = align_to_reference(acc, gyro, ref.direction())   # (B, T, 3) each
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAVITY = 9.80665
# Gait: |acc| swings by >= 1 m/s^2 (walking's vertical bounce is 1-3 m/s^2 std; sitting, standing,
# lying stay below 0.3) while its mean stays near 1 g (no free fall or impact). Physics, not fitted.
GAIT_MIN_STD = 1.0
GAIT_MEAN_RANGE = (0.8 * GRAVITY, 1.25 * GRAVITY)
MIN_GAIT_WINDOWS = 3  # fewer: the long-span mean over all windows is used
# "Up" in the device frame of a HAPT waist phone, as this module estimates it on the HAPT TRAIN
# subjects (models.gravity.estimate_canonical_up; label-free; rounded): the encoder was aligned
# with HAPT-style waist data, so windows are rotated to this direction.
CANONICAL_UP = np.array([0.982, -0.177, -0.063])
CANONICAL_UP = CANONICAL_UP / np.linalg.norm(CANONICAL_UP)


# placements whose trained "up" motion-v1 knows (it has no reference input: windows are turned to
# CANONICAL_UP); others are classified without it (the simulator trains them with phones worn either
# way up, so no single canonical direction exists). motion-v2 takes the reference as an input everywhere.
ADAPTIVE_PLACEMENTS = ("waist",)


def is_gait(acc: np.ndarray) -> np.ndarray:
    """(B, T, 3) m/s^2 -> (B,) bool: windows that look like walking/running/stairs (upright trunk)."""
    magnitude = np.linalg.norm(np.asarray(acc, dtype=np.float64), axis=-1)
    mean = magnitude.mean(1)
    return (magnitude.std(1) >= GAIT_MIN_STD) & (mean >= GAIT_MEAN_RANGE[0]) & (mean <= GAIT_MEAN_RANGE[1])


@dataclass
class GravityReference:
    """Running sums of window-mean specific force: over gait windows, and over all windows."""

    gait_sum: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gait_count: int = 0
    all_sum: tuple[float, float, float] = (0.0, 0.0, 0.0)
    all_count: int = 0

    def update(self, acc: np.ndarray) -> None:
        """Add windows (T, 3) or (B, T, 3), in time order, of this one device."""
        acc = np.asarray(acc, dtype=np.float64)
        if acc.ndim == 2:
            acc = acc[None]
        means = acc.mean(1)  # (B, 3)
        gait = is_gait(acc)
        self.gait_sum = tuple(np.add(self.gait_sum, means[gait].sum(0)).tolist())
        self.gait_count += int(gait.sum())
        self.all_sum = tuple(np.add(self.all_sum, means.sum(0)).tolist())
        self.all_count += len(means)

    def direction(self, long_span: bool = False) -> np.ndarray | None:
        """Unit "up" in the device frame; None until MIN_GAIT_WINDOWS gait windows were seen, unless
        `long_span` (the mean over all windows: right for a device that is mostly upright, wrong
        for one that has only sat so far, which is why it is not the default)."""
        if self.gait_count < MIN_GAIT_WINDOWS and not (long_span and self.all_count):
            return None
        total = self.gait_sum if self.gait_count >= MIN_GAIT_WINDOWS else self.all_sum
        norm = float(np.linalg.norm(total))
        return None if norm < 1e-9 else np.asarray(total) / norm

    def to_dict(self) -> dict:
        return {"gait_sum": list(self.gait_sum), "gait_count": self.gait_count,
                "all_sum": list(self.all_sum), "all_count": self.all_count}

    @classmethod
    def from_dict(cls, d: dict) -> GravityReference:
        return cls(tuple(map(float, d["gait_sum"])), int(d["gait_count"]), tuple(map(float, d["all_sum"])),
                   int(d["all_count"]))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation R with R @ a = b (unit vectors)."""
    a, b = np.asarray(a, float) / np.linalg.norm(a), np.asarray(b, float) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def align_to_reference(acc: np.ndarray, gyro: np.ndarray | None, up: np.ndarray | None,
                       canonical: np.ndarray = CANONICAL_UP) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate (B, T, 3) windows so their device's estimated `up` ((3,) for all, or (B, 3) per
    window; zeros: none) becomes `canonical`; gyro turns with the same rotation (one rigid device)."""
    if up is None:
        return acc, gyro
    up = np.asarray(up, dtype=np.float64)
    ups = np.broadcast_to(up, (len(acc), 3)) if up.ndim == 1 else up
    # a zero vector means "no reference yet": that window stays as sent
    r = np.stack([rotation_between(u, canonical) if np.linalg.norm(u) > 1e-6 else np.eye(3) for u in ups])
    r = r.astype(np.float32)  # (B, 3, 3)
    turn = lambda x: np.einsum("btj,bij->bti", np.asarray(x, np.float32), r)  # noqa: E731
    return turn(acc), None if gyro is None else turn(gyro)


def device_references(acc: np.ndarray, devices: np.ndarray) -> np.ndarray:
    """(N, 3) per window: its device's reference from ALL of that device's windows (offline use;
    the workers update it as windows arrive), zeros for a device that never walked."""
    out = np.zeros((len(acc), 3))
    for device in dict.fromkeys(devices.tolist()):
        rows = np.flatnonzero(devices == device)
        ref = GravityReference()
        ref.update(acc[rows])
        direction = ref.direction()
        out[rows] = direction if direction is not None else 0.0  # no walking seen: no reference
    return out


def estimate_canonical_up(subjects) -> np.ndarray:
    """The mean "up" of HAPT waist phones over the given (train) subjects, label-free."""
    from models.datasets import hapt_windows

    windows = hapt_windows(subjects, basic_only=False)
    ups = device_references(windows.acc, windows.subjects)
    mean = ups[np.unique(windows.subjects, return_index=True)[1]].mean(0)
    return mean / np.linalg.norm(mean)
