"""Recorded data as live devices: HAPT subjects replayed onto the frames topic in (scaled) real time.

Each subject becomes one device ``hapt-s{subject:02d}`` streaming its experiments back to back,
one frame per ``frame_s`` seconds of signal, from a waist placement (HAPT's phones were on the
waist). The nine HAPT test subjects come first, so a pipeline fed by a replay of up to nine devices
is measured on subjects no model trained on. More than 30 devices reuse subjects with a copy suffix.
The dataset labels ride along in the ``iotlm-truth`` header, one per IMU sample.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from ingest.codec import Format, Truth
from ingest.frame import Frame, ImuStream

# UCI's held-out subjects; models/datasets.py uses the same nine for its test split.
HAPT_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
HAPT_PLACEMENT = "waist"


def hapt_replay_order() -> list[int]:
    """Test subjects first, then the other 21."""
    return list(HAPT_TEST_SUBJECTS) + [s for s in range(1, 31) if s not in HAPT_TEST_SUBJECTS]


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
    """One subject's experiments concatenated: what its device streams."""

    subject: int
    rate_hz: float
    acc: np.ndarray  # (n, 3) float32 m/s^2, gravity included
    gyro: np.ndarray  # (n, 3) float32 rad/s
    labels: np.ndarray  # (n,) int16, HAPT activity ids or -1
    experiments: np.ndarray  # (n,) int16, the experiment each sample comes from

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

    def samples_per_frame(self, frame_s: float) -> int:
        return int(round(frame_s * self.rate_hz))

    def n_frames(self, frame_s: float) -> int:
        return len(self.labels) // self.samples_per_frame(frame_s)

    def frame(self, device_id: str, seq: int, t0: float, frame_s: float) -> tuple[Frame, Truth]:
        """Frame ``seq`` of this signal (samples ``seq*m .. (seq+1)*m``) and its truth."""
        m = self.samples_per_frame(frame_s)
        part = slice(seq * m, (seq + 1) * m)
        frame = Frame(
            device_id=device_id,
            seq=seq,
            t0=t0,
            duration_s=m / self.rate_hz,
            placement=HAPT_PLACEMENT,
            imu=ImuStream(rate_hz=self.rate_hz, acc=self.acc[part], gyro=self.gyro[part]),
        )
        truth = Truth(
            labels=self.labels[part],
            dataset="hapt",
            subject=self.subject,
            experiment=int(self.experiments[part][0]),
        )
        return frame, truth


@dataclass
class DeviceReplay:
    device_id: str
    subject: int
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


def _frame_schedule(n_frames: int, frame_s: float, speed: float, clock_start: float) -> Iterator[int]:
    """Yields frame indices, each once its signal has fully elapsed at ``speed`` (0 = no waiting)."""
    for seq in range(n_frames):
        if speed > 0:
            due = clock_start + (seq + 1) * frame_s / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield seq


def replay_hapt(
    settings,
    devices: int = 9,
    speed: float = 1.0,
    duration_s: float = 60.0,
    frame_s: float = 1.0,
    *,
    fmt: Format = "msgpack",
    start_time: float | None = None,
    progress: bool = True,
    console=None,
) -> ReplaySummary:
    """Replay ``devices`` HAPT subjects for ``duration_s`` seconds of signal each onto the frames topic.

    ``t0`` of frame ``seq`` is ``start_time + seq * frame_s`` (``start_time`` defaults to now), so
    event time advances ``speed`` times faster than the wall clock. A subject whose recording is
    shorter than ``duration_s`` stops at its end.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.producer import DeviceProducer

    if devices < 1 or duration_s <= 0 or frame_s <= 0 or speed < 0:
        raise ValueError("devices >= 1, duration_s > 0, frame_s > 0 and speed >= 0 (0 = as fast as possible)")
    assigned = hapt_device_ids(devices)
    signals = SubjectSignal.load(sorted({subject for _, subject in assigned}))
    start_time = time.time() if start_time is None else start_time
    n_wanted = int(duration_s / frame_s + 1e-9)
    summary = ReplaySummary(
        source="hapt", topic=settings.kafka.frames_topic, speed=speed, frame_s=frame_s, start_time=start_time,
        devices=[DeviceReplay(device_id, subject) for device_id, subject in assigned],
    )
    n_frames = min(n_wanted, max(signals[r.subject].n_frames(frame_s) for r in summary.devices))
    clock_start = time.monotonic()
    columns = (TextColumn("replay hapt"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeElapsedColumn())
    with DeviceProducer(settings, client_id="iotlm-replay") as producer, Progress(
        *columns, console=console, disable=not progress, transient=False
    ) as bar:
        task = bar.add_task("replay", total=n_frames * devices)
        for seq in _frame_schedule(n_frames, frame_s, speed, clock_start):
            for device in summary.devices:
                signal = signals[device.subject]
                if seq >= signal.n_frames(frame_s):
                    continue
                frame, truth = signal.frame(device.device_id, seq, start_time + seq * frame_s, frame_s)
                before = producer.stats.bytes
                producer.send(frame, truth=truth, fmt=fmt)
                device.frames += 1
                device.samples += frame.imu.n_samples
                device.bytes += producer.stats.bytes - before
            bar.update(task, completed=(seq + 1) * devices)
    summary.wall_s = time.monotonic() - clock_start
    return summary
