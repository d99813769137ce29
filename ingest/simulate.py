"""Devices that are not there: recorded or simulated signals streamed as live frames in (scaled) real time.

- ``hapt``: each HAPT subject becomes device ``hapt-s{subject:02d}`` streaming its experiments back
  to back from a waist placement (HAPT's phones were on the waist). The nine HAPT test subjects
  come first, so a pipeline fed by up to nine devices is measured on subjects no model trained on.
  More than 30 devices reuse subjects with a copy suffix.
- ``synthetic``: device ``sim-{i:03d}`` is a simulated person (``models.simulator``) wearing one
  IMU, going through random activities of 8-30 s each; placements rotate over the devices.

Either way one frame carries ``frame_s`` seconds of signal and the labels ride along in the
``iotlm-truth`` header, one per IMU sample.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from ingest.codec import Format, Truth
from ingest.frame import Frame, ImuStream
from ingest.hapt import HAPT_SUBJECTS, HAPT_TEST_SUBJECTS

HAPT_PLACEMENT = "waist"
SYNTHETIC_RATE_HZ = 50.0
SYNTHETIC_PLACEMENTS = ("wrist", "waist", "pocket", "chest", "ankle")
SYNTHETIC_SEGMENT_S = (8.0, 30.0)


class DeviceSignal(Protocol):
    """What a replayed device streams: frames cut from its signal, in order."""

    origin: str  # where the signal comes from, for summaries

    def frame(self, device_id: str, seq: int, t0: float, frame_s: float) -> tuple[Frame, Truth] | None:
        """Frame ``seq`` as sent by ``device_id``, or None once the signal has ended."""


def _samples_per_frame(frame_s: float, rate_hz: float) -> int:
    """Frames hold whole samples, so consecutive frames tile the signal without gaps or overlap."""
    m = round(frame_s * rate_hz)
    if m < 1 or abs(m - frame_s * rate_hz) > 1e-6:
        raise ValueError(f"frame_s {frame_s:g} s is not a whole number of samples at {rate_hz:g} Hz")
    return m


def _imu_frame(device_id: str, seq: int, t0: float, rate_hz: float, placement: str, acc, gyro) -> Frame:
    return Frame(
        device_id=device_id, seq=seq, t0=t0, duration_s=len(acc) / rate_hz, placement=placement,
        imu=ImuStream(rate_hz=rate_hz, acc=acc, gyro=gyro),
    )


# -------------------------------------------------------------------------------------------- HAPT
def hapt_replay_order() -> list[int]:
    """Test subjects first, then the other 21."""
    return list(HAPT_TEST_SUBJECTS) + [s for s in HAPT_SUBJECTS if s not in HAPT_TEST_SUBJECTS]


def hapt_device_ids(n_devices: int) -> list[tuple[str, int]]:
    """``(device_id, subject)`` for ``n_devices`` devices; beyond 30 the subjects repeat as copies."""
    order = hapt_replay_order()
    devices = []
    for i in range(n_devices):
        subject, copy = order[i % len(order)], i // len(order)
        devices.append((f"hapt-s{subject:02d}" + (f"-c{copy}" if copy else ""), subject))
    return devices


@dataclass
class SubjectSignal:
    """One HAPT subject's experiments concatenated: what its device streams."""

    subject: int
    rate_hz: float
    acc: np.ndarray  # (n, 3) float32 m/s^2, gravity included
    gyro: np.ndarray  # (n, 3) float32 rad/s
    labels: np.ndarray  # (n,) int16, HAPT activity ids or -1
    experiments: np.ndarray  # (n,) int16, the experiment each sample comes from

    @property
    def origin(self) -> str:
        return f"hapt subject {self.subject}"

    @classmethod
    def load(cls, subjects: list[int]) -> dict[int, SubjectSignal]:
        from ingest.hapt import load_hapt

        by_subject: dict[int, list] = {}
        for recording in load_hapt(subjects):
            by_subject.setdefault(recording.subject, []).append(recording)
        return {
            subject: cls(
                subject=subject,
                rate_hz=recs[0].rate_hz,
                acc=np.concatenate([r.acc for r in recs]),
                gyro=np.concatenate([r.gyro for r in recs]),
                labels=np.concatenate([r.labels for r in recs]),
                experiments=np.concatenate([np.full(len(r.labels), r.experiment, np.int16) for r in recs]),
            )
            for subject, recs in by_subject.items()
        }

    def frame(self, device_id: str, seq: int, t0: float, frame_s: float) -> tuple[Frame, Truth] | None:
        from ingest.hapt import HAPT_ACTIVITIES

        m = _samples_per_frame(frame_s, self.rate_hz)
        part = slice(seq * m, (seq + 1) * m)
        if part.stop > len(self.labels):
            return None
        labels = self.labels[part]
        truth = Truth(
            labels=labels,
            dataset="hapt",
            names={i: HAPT_ACTIVITIES[i] for i in set(labels.tolist()) if i > 0},
            subject=self.subject,
            experiment=int(self.experiments[part.start]),
        )
        return _imu_frame(device_id, seq, t0, self.rate_hz, HAPT_PLACEMENT, self.acc[part], self.gyro[part]), truth


def hapt_devices(n_devices: int) -> list[tuple[str, SubjectSignal]]:
    """``(device_id, signal)`` for a HAPT replay; copies of a subject share its signal."""
    assigned = hapt_device_ids(n_devices)
    signals = SubjectSignal.load(sorted({subject for _, subject in assigned}))
    return [(device_id, signals[subject]) for device_id, subject in assigned]


# --------------------------------------------------------------------------------------- synthetic
class SyntheticPersonSignal:
    """A simulated person wearing one IMU, doing random activities; simulated as frames are asked for,
    in order, keeping only the samples not yet sent."""

    def __init__(self, placement: str, rng: np.random.Generator) -> None:
        from models.simulator import ACTIVITIES, SubjectParams

        self.placement = placement
        self.rate_hz = SYNTHETIC_RATE_HZ
        self._rng = rng
        self._person = SubjectParams.random(rng)
        self._activities = list(ACTIVITIES)
        self._acc = np.zeros((0, 3), np.float32)
        self._gyro = np.zeros((0, 3), np.float32)
        self._labels = np.zeros(0, np.int16)
        self._first = 0  # index, in the whole signal, of self._acc[0]

    @property
    def origin(self) -> str:
        return f"synthetic person ({self.placement})"

    def _simulate_segment(self) -> None:
        from models.simulator import simulate_clip

        label = int(self._rng.integers(len(self._activities)))
        seconds = round(float(self._rng.uniform(*SYNTHETIC_SEGMENT_S)))
        clip = simulate_clip(
            self._activities[label], self._rng, duration_s=seconds, rate_hz=self.rate_hz,
            placements=(self.placement,), subject=self._person,
        )
        trace = clip.imu[self.placement]
        self._acc = np.concatenate([self._acc, trace.acc])
        self._gyro = np.concatenate([self._gyro, trace.gyro])
        self._labels = np.concatenate([self._labels, np.full(len(trace.acc), label, np.int16)])

    def frame(self, device_id: str, seq: int, t0: float, frame_s: float) -> tuple[Frame, Truth]:
        m = _samples_per_frame(frame_s, self.rate_hz)
        start = seq * m - self._first
        if start < 0:
            raise ValueError(f"frame {seq} was already cut; a synthetic person streams forward only")
        while len(self._acc) < start + m:
            self._simulate_segment()
        part = slice(start, start + m)
        acc, gyro, labels = self._acc[part], self._gyro[part], self._labels[part]
        self._acc, self._gyro, self._labels = self._acc[start:], self._gyro[start:], self._labels[start:]
        self._first += start
        names = {i: self._activities[i] for i in set(labels.tolist())}
        frame = _imu_frame(device_id, seq, t0, self.rate_hz, self.placement, acc, gyro)
        return frame, Truth(labels=labels, dataset="synthetic", names=names)


def synthetic_devices(n_devices: int, seed: int = 0) -> list[tuple[str, SyntheticPersonSignal]]:
    """``(device_id, signal)`` for simulated people; each draws from its own random stream."""
    rngs = np.random.default_rng(seed).spawn(n_devices)  # device i is the same whatever n_devices is
    return [
        (f"sim-{i:03d}", SyntheticPersonSignal(SYNTHETIC_PLACEMENTS[i % len(SYNTHETIC_PLACEMENTS)], rng))
        for i, rng in enumerate(rngs)
    ]


# ------------------------------------------------------------------------------------------ replay
@dataclass
class DeviceReplay:
    device_id: str
    origin: str
    frames: int = 0
    samples: int = 0
    bytes: int = 0


@dataclass
class ReplaySummary:
    """What a replay sent. ``wall_s`` includes the final flush (everything acknowledged)."""

    source: str
    topic: str
    speed: float
    frame_s: float
    start_time: float
    devices: list[DeviceReplay] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def frames(self) -> int:
        return sum(d.frames for d in self.devices)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.devices)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"frames": self.frames, "bytes": self.bytes, "frames_per_s": self.frames_per_s}


def _frame_schedule(n_frames: int, frame_s: float, speed: float) -> Iterator[int]:
    """Yields frame indices, each once its signal has fully elapsed at ``speed`` (0 = no waiting)."""
    clock_start = time.monotonic()
    for seq in range(n_frames):
        if speed > 0:
            delay = clock_start + (seq + 1) * frame_s / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield seq


def replay(
    settings,
    devices: list[tuple[str, DeviceSignal]],
    source: str,
    speed: float = 1.0,
    duration_s: float = 60.0,
    frame_s: float = 1.0,
    *,
    fmt: Format = "msgpack",
    start_time: float | None = None,
    progress: bool = True,
    console=None,
) -> ReplaySummary:
    """Stream every device's signal onto the frames topic for ``duration_s`` seconds of signal.

    ``t0`` of frame ``seq`` is ``start_time + seq * frame_s``, so event time advances ``speed``
    times faster than the wall clock. ``start_time`` defaults to now, or with ``speed=0`` to
    ``duration_s`` ago: an as-fast-as-possible replay is a backfill of recent history, never a
    day into the future. A device whose signal is shorter than ``duration_s`` stops at its end.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.producer import DeviceProducer

    if not devices or duration_s <= 0 or frame_s <= 0 or speed < 0:
        raise ValueError("need devices, duration_s > 0, frame_s > 0 and speed >= 0 (0 = as fast as possible)")
    n_frames = int(duration_s / frame_s + 1e-9)
    if start_time is None:
        start_time = time.time() - (n_frames * frame_s if speed == 0 else 0.0)
    summary = ReplaySummary(
        source=source, topic=settings.kafka.frames_topic, speed=speed, frame_s=frame_s, start_time=start_time,
        devices=[DeviceReplay(device_id, signal.origin) for device_id, signal in devices],
    )
    started = time.monotonic()
    ended: set[str] = set()
    columns = (TextColumn(f"replay {source}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeElapsedColumn())
    with DeviceProducer(settings, client_id=f"iotlm-replay-{source}") as producer, Progress(
        *columns, console=console, disable=not progress
    ) as bar:
        task = bar.add_task("replay", total=n_frames * len(devices))
        for seq in _frame_schedule(n_frames, frame_s, speed):
            for (device_id, signal), device in zip(devices, summary.devices):
                t0 = start_time + seq * frame_s
                cut = None if device_id in ended else signal.frame(device_id, seq, t0, frame_s)
                if cut is None:
                    ended.add(device_id)
                    continue
                frame, truth = cut
                sent_before = producer.stats.bytes
                producer.send(frame, truth=truth, fmt=fmt)
                device.frames += 1
                device.samples += (frame.imu or frame.env).n_samples
                device.bytes += producer.stats.bytes - sent_before
            bar.update(task, completed=(seq + 1) * len(devices))
    summary.wall_s = time.monotonic() - started
    return summary


def replay_hapt(settings, devices: int = 9, speed: float = 1.0, duration_s: float = 60.0, frame_s: float = 1.0,
                **options) -> ReplaySummary:
    """HAPT subjects as ``devices`` live devices; see :func:`replay` for the options."""
    return replay(settings, hapt_devices(devices), "hapt", speed, duration_s, frame_s, **options)


def replay_synthetic(settings, devices: int = 9, speed: float = 1.0, duration_s: float = 60.0, frame_s: float = 1.0,
                     *, seed: int = 0, **options) -> ReplaySummary:
    """Simulated people as ``devices`` live devices; see :func:`replay` for the options."""
    return replay(settings, synthetic_devices(devices, seed), "synthetic", speed, duration_s, frame_s, **options)
