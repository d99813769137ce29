"""Rooms on the stream: env frames -> room windows (minutes) -> room states, fused with the wearables present.

A room device (any device whose frames carry an `env` stream) is windowed by `RoomWindower`: its
reports are buffered, and every HOP_MIN minutes of its own clock (window ends on the hop grid, so
workers and restarts agree on them) a window of the last WINDOW_MIN minutes is cut with
`models.rooms.windows.window_arrays`, the function training uses. The windows go through the worker's
micro-batcher beside the IMU windows (`MixedInference`: one batch, both models, one inference thread).

Fusion (`fuse`): the wearables registered to the room and heard there lately (the live-state presence
set in Redis, written by whichever worker handles them) are people in the room for sure: the head
count is at least their number, and their activities ride along on the state.

Commit safety: a buffered report is needed until the windows covering it are cut, so the windower
reports the earliest offset it still needs per partition (`held_offsets`), like the IMU assembler;
after a restart the partition is re-read from there and the same windows (same ends) come out again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from models.rooms.windows import CHANNELS, HOP_MIN, MAX_AGE_S, WINDOW_MIN, window_arrays

HOP_S = HOP_MIN * 60.0
LOOKBACK_S = WINDOW_MIN * 60.0 + MAX_AGE_S
FIRST_WINDOW_AFTER_S = 10 * 60.0  # a device's first window needs this much of its history


@dataclass
class RoomWindow:
    device_id: str
    room_id: str | None
    start: float
    end: float
    x: np.ndarray  # (N_INPUT, WINDOW_MIN)
    latest: dict[str, float]  # newest reading of each channel in the window
    partition: int
    first_offset: int  # the oldest frame the window was cut from (what the commit waits behind)
    truth_count: float | None = None  # replayed simulated head count at the window end
    stuck: dict[str, float] = field(default_factory=dict)  # channel -> seconds it has read the same value


@dataclass
class RoomStateResult:
    device_id: str
    room_id: str | None
    window_start: float
    window_end: float
    model_version: str
    occupancy: str
    occupancy_count: float
    occupancy_probability: float
    room_use: str
    use_probability: float
    air_quality: str
    readings: dict[str, float]
    distribution: dict
    people: int = 0
    activities: dict[str, str] = field(default_factory=dict)
    truth_count: float | None = None
    stuck: dict[str, float] = field(default_factory=dict)
    partition: int = -1  # of the window's oldest frame: released once this state is written
    first_offset: int = -1
    model_occupancy: str = ""  # the room model's own bin, before fusion (what is scored against simulated truth)

    @property
    def occupied(self) -> bool:
        return self.occupancy_count > 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Device:
    partition: int
    t: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)
    next_end: float | None = None
    seen_seq: set[int] = field(default_factory=set)
    same_since: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (value, since)
    heard_at: float = 0.0  # wall clock of its last frame
    frame_s: float = 0.0  # how long its frames are


class RoomWindower:
    """Per env device: its recent reports, and the windows they complete."""

    def __init__(self, room_of: Callable[[str], str | None] = lambda _: None):
        self.room_of = room_of
        self._devices: dict[str, _Device] = {}
        self.late_reports = 0

    def add(self, frame, partition: int, offset: int, truth_counts: Sequence[float] | None = None,
            now: float | None = None) -> list[RoomWindow]:
        env = frame.env
        dev = self._devices.setdefault(frame.device_id, _Device(partition))
        dev.heard_at, dev.frame_s = time.time() if now is None else now, frame.duration_s
        if frame.seq in dev.seen_seq:
            return []  # the same frame again (a producer retry): its reports are in already
        dev.seen_seq.add(frame.seq)
        if len(dev.seen_seq) > 4096:
            dev.seen_seq = set(sorted(dev.seen_seq)[-2048:])
        times = frame.t0 + np.arange(env.n_samples) / env.rate_hz
        last_cut = dev.next_end - HOP_S if dev.next_end is not None else -math.inf
        for i, t in enumerate(times):
            if t <= last_cut or (dev.t and t <= dev.t[-1]):
                self.late_reports += 1  # behind a window already cut, or out of order: not windowed
                continue
            dev.t.append(float(t))
            dev.offsets.append(offset)
            dev.truth.append(float(truth_counts[i]) if truth_counts is not None else math.nan)
            for name in CHANNELS:
                column = env.channels.get(name)
                value = float(column[i]) if column is not None else math.nan
                dev.values.setdefault(name, []).append(value)
                if column is not None:
                    known = dev.same_since.get(name)
                    if known is None or known[0] != value:
                        dev.same_since[name] = (value, float(t))
        if not dev.t:
            return []
        if dev.next_end is None:
            dev.next_end = math.ceil((dev.t[0] + FIRST_WINDOW_AFTER_S) / HOP_S) * HOP_S
        windows = []
        while dev.t[-1] >= dev.next_end:
            windows.append(self._cut(frame.device_id, dev, dev.next_end))
            dev.next_end += HOP_S
        self._trim(dev)
        return windows

    def _cut(self, device_id: str, dev: _Device, end: float) -> RoomWindow:
        t = np.asarray(dev.t)
        upto = int(np.searchsorted(t, end, side="right"))
        lo = int(np.searchsorted(t, end - LOOKBACK_S, side="left"))
        readings = {name: np.asarray(v[lo:upto]) for name, v in dev.values.items()
                    if np.isfinite(np.asarray(v[lo:upto])).any()}
        x = window_arrays(t[lo:upto], readings, np.array([end]))[0]
        latest = {}
        for name, v in readings.items():
            ok = np.flatnonzero(np.isfinite(v))
            if len(ok):
                latest[name] = float(v[ok[-1]])
        truth = np.asarray(dev.truth[lo:upto])
        truth = truth[np.isfinite(truth)]
        stuck = {name: round(end - since, 1) for name, (_, since) in dev.same_since.items() if name in readings}
        return RoomWindow(device_id, self.room_of(device_id), end - WINDOW_MIN * 60.0, end, x, latest, dev.partition,
                          min(dev.offsets[lo:upto]) if upto > lo else dev.offsets[-1],
                          float(truth[-1]) if len(truth) else None, stuck)

    def _trim(self, dev: _Device) -> None:
        """Keep only the reports the next window still needs."""
        keep = int(np.searchsorted(np.asarray(dev.t), dev.next_end - LOOKBACK_S, side="left"))
        if keep:
            del dev.t[:keep], dev.offsets[:keep], dev.truth[:keep]
            for v in dev.values.values():
                del v[:keep]

    def release_quiet(self, now: float, quiet_s: float) -> list[str]:
        """Drop the buffered reports of devices silent for `quiet_s` or three of their frames, whichever is
        longer, so a room sensor that died does not hold its partition's commit for ever. If it comes
        back, its next windows are cut from the reports it sends from then on."""
        released = []
        for device_id, dev in self._devices.items():
            if dev.offsets and now - dev.heard_at >= max(quiet_s, 3 * dev.frame_s):
                dev.t.clear(), dev.offsets.clear(), dev.truth.clear()
                for v in dev.values.values():
                    v.clear()
                dev.next_end = None  # no burst of empty windows over the silence when it returns
                released.append(device_id)
        return released

    def held_offsets(self) -> dict[int, int]:
        held: dict[int, int] = {}
        for dev in self._devices.values():
            if dev.offsets:
                held[dev.partition] = min(held.get(dev.partition, math.inf), min(dev.offsets))
        return held

    def drop_partitions(self, partitions: set[int]) -> None:
        for device_id in [d for d, dev in self._devices.items() if dev.partition in partitions]:
            del self._devices[device_id]


class RoomClassifier:
    """RoomWindows -> RoomStateResults with the room-state model (models.rooms.model.RoomStateModel)."""

    def __init__(self, model):
        self.model = model

    @property
    def version(self) -> str:
        return self.model.version

    def __call__(self, windows: list[RoomWindow]) -> list[RoomStateResult]:
        from models.rooms.model import DEFAULT_USES
        from models.rooms.windows import AIR_QUALITY, AIR_LIMITS, OCCUPANCY_BINS

        if not windows:
            return []
        p = self.model.predict(np.stack([w.x for w in windows]))
        results = []
        for i, w in enumerate(windows):
            air = AIR_QUALITY[int(p["air"][i].argmax())]
            co2 = w.latest.get("co2")
            if co2 is not None:  # a CO2 reading is the air quality by definition; the model only guesses without one
                air = AIR_QUALITY[int(np.digitize(co2, AIR_LIMITS))]
            occ = int(p["occupancy_bin"][i])
            use = int(p["use_index"][i])
            results.append(RoomStateResult(
                device_id=w.device_id, room_id=w.room_id, window_start=w.start, window_end=w.end,
                model_version=self.version, occupancy=OCCUPANCY_BINS[occ], occupancy_count=round(float(p["count"][i]), 2),
                occupancy_probability=float(p["occupancy"][i, occ]), room_use=DEFAULT_USES[use],
                use_probability=float(p["use"][i, use]), air_quality=air, readings=dict(w.latest),
                distribution={"occupancy": dict(zip(OCCUPANCY_BINS, p["occupancy"][i].round(4).tolist())),
                              "use": dict(zip(DEFAULT_USES, p["use"][i].round(4).tolist()))},
                truth_count=w.truth_count, stuck=dict(w.stuck), partition=w.partition, first_offset=w.first_offset,
                model_occupancy=OCCUPANCY_BINS[occ],
            ))
        return results


class MixedInference:
    """One micro-batch, both models: IMU windows to the motion classifier, room windows to the room model,
    results back in the batch's order."""

    def __init__(self, windows: Callable, rooms: RoomClassifier | None):
        self.windows = windows
        self.rooms = rooms

    def __call__(self, items: list) -> list:
        room_index = [i for i, item in enumerate(items) if isinstance(item, RoomWindow)]
        if not room_index:
            return self.windows(items)
        if self.rooms is None:
            raise RuntimeError("room windows but no room model loaded")
        rooms = set(room_index)
        other = [i for i in range(len(items)) if i not in rooms]
        out: list = [None] * len(items)
        for i, r in zip(other, self.windows([items[i] for i in other]) if other else []):
            out[i] = r
        for i, r in zip(room_index, self.rooms([items[i] for i in room_index])):
            out[i] = r
        return out


def fuse(result: RoomStateResult, present: dict[str, str]) -> RoomStateResult:
    """The wearables present in the room (device -> activity) are people there: the head count is at
    least their number, an 'empty' room with wearables in it is occupied."""
    from models.rooms.windows import OCCUPANCY_BINS, occupancy_bin

    result.people = len(present)
    result.activities = dict(sorted(present.items()))
    if result.people > result.occupancy_count:
        result.occupancy_count = float(result.people)
        result.occupancy = OCCUPANCY_BINS[int(occupancy_bin(result.people))]
        if result.room_use == "empty":
            result.room_use = "occupied"  # the room model saw nobody; the wearables say otherwise
    return result
