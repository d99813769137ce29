"""What the stream workers produce: one result per window, activity episodes, alerts; and what they keep
of their input: each frame's bytes as received, for fine-tuning.

Plain dataclasses with epoch-second times; the sink adapter maps them onto storage's rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class WindowResult:
    """The model's answer for one window. Keyed by (device_id, window_start, model_version)."""

    device_id: str
    window_start: float
    window_end: float
    model_version: str
    activity: str
    probability: float
    distribution: dict[str, float]  # over the site's label set, sums to 1
    placement: str = "unknown"
    embedding_ref: str | None = None
    truth: str | None = None  # replayed ground truth, when the frames carried it
    completed_at: float = 0.0  # record timestamp of the frame that completed the window
    decided_at: float = 0.0  # when inference finished

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Episode:
    """Consecutive windows of one device read as one activity."""

    device_id: str
    start: float
    end: float
    activity: str
    confidence: float  # mean probability of the windows that voted for `activity`
    windows: int
    model_version: str
    closed: bool = False


@dataclass
class Alert:
    """Something a person should look at. `dedup_key` is stable, so a re-raised alert is the same row."""

    rule: str  # fall, no_movement, room_hours, device_silent, sensor_fault
    severity: str  # info, warning, critical
    device_id: str
    at: float  # epoch seconds the condition started
    message: str
    room: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return f"{self.rule}:{self.device_id}:{self.at:.2f}"

    def as_dict(self) -> dict:
        return asdict(self) | {"dedup_key": self.dedup_key}


@dataclass
class RawFrame:
    """A consumed frame's bytes exactly as read from Kafka. Keyed by (device_id, t0, seq)."""

    device_id: str
    t0: float
    seq: int
    payload: bytes
    received_at: float  # the Kafka record's timestamp
    partition: int = -1
    offset: int = -1
