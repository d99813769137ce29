"""Sliding windows over each device's IMU stream, rebuilt identically by any worker after any restart.

A `WindowAssembler` keeps, per device, the frames (as `ImuSegment`s) still needed by a window that is
not decided yet, ordered by sample time. Windows start on a grid (multiples of `hop_s` since the
epoch), so two workers, or one worker before and after a crash, produce the same window keys and the
sink's upsert on (device, window start, model version) makes re-emission harmless.

Each window is decided once, in start order:
- emitted when its samples are contiguous (no hole longer than `max_gap_s`) from start to end; they are
  resampled by linear interpolation to the model's rate;
- a gap (counted, not emitted) when a hole inside it is permanent: the frames on both sides have
  consecutive sequence numbers (the device really paused), or the hole has stayed open longer than
  `lateness_s` past the window's end (the frame that would fill it is late);
- otherwise it waits: an out-of-order frame arriving within the lateness bound fills the hole and the
  window is emitted as if the frames had come in order.
A frame whose samples all lie before the next undecided window is late: the caller dead-letters it with
the reason. A frame repeating a known sequence number or overlapping buffered samples is a duplicate.

Streams that stop or jump (see `flush_device` and the clock rule in `add`):
- a device that goes quiet leaves its last, incomplete window open and its frames buffered, which would
  pin the worker's commit forever; `flush_device` decides what is left as gaps, counts the windows that
  can never complete as abandoned, and releases every buffered frame;
- a frame more than `clock_jump_s` ahead of both the device's own stream and the broker's clock (the
  record timestamp) is held aside, not buffered: if the device's next frame continues its old clock, the
  held frame is refused (`clock_jump`) and the stream goes on untouched; if `jump_confirm_frames` frames
  in a row continue the new clock, the device's clock really jumped (NTP, a reboot): the old stream is
  flushed and the held frames start a new one. One bad timestamp can no longer make every later good
  frame "late". A clock jumping backwards makes frames late, as before (dead-lettered, never dropped).

Why not Faust's windowed tables: their `on_window_close` callback receives the key and the table's
last value, not the samples of the window, so a window of raw samples cannot be assembled there; nor
do they know about sequence numbers, gaps or a lateness bound that dead-letters rather than drops.

Offsets: each segment remembers the Kafka partition offset it came from. `held_offsets` tells the worker
which offsets are still needed by undecided windows, so it never commits past them: after a crash the
re-read frames rebuild the buffer and no window is lost.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.frame import EARLIEST_T0
from iotlm.settings import WorkerSettings

# HAPT activity ids 1..6, in the order of the site's default label list (settings.workers.labels)
BASIC_HAPT_IDS = (1, 2, 3, 4, 5, 6)
SEEN_SEQS_PER_DEVICE = 4096


@dataclass
class ImuSegment:
    """The IMU samples of one frame, placed in time: sample i was taken at t0 + i / rate_hz."""

    device_id: str
    seq: int
    t0: float
    rate_hz: float
    acc: np.ndarray  # (n, 3) float32, m/s^2
    gyro: np.ndarray | None = None  # (n, 3) float32, rad/s
    labels: np.ndarray | None = None  # (n,) HAPT activity ids from the replay's ground truth, -1 none
    placement: str = "unknown"
    partition: int = 0
    offset: int = -1
    produced_at: float = 0.0  # epoch seconds the frame reached Kafka (its record timestamp)
    source: object = None  # the caller's handle on where the frame came from (the worker: its RawFrame)
    _times: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.acc)

    @property
    def last_sample_t(self) -> float:
        return self.t0 + (self.n - 1) / self.rate_hz

    def times(self) -> np.ndarray:
        """Sample times; computed once (each segment serves about two overlapping windows)."""
        if self._times is None:
            self._times = self.t0 + np.arange(self.n) / self.rate_hz
        return self._times


@dataclass
class Window:
    """One grid-aligned window of one device, resampled to the model's rate."""

    device_id: str
    start: float  # epoch seconds, a multiple of hop_s
    end: float
    rate_hz: float
    acc: np.ndarray  # (T, 3) float32
    gyro: np.ndarray | None  # (T, 3) float32, None when any frame lacked a gyroscope
    placement: str
    truth: str | None  # majority ground-truth label when every sample carries a basic activity
    partition: int
    first_offset: int  # earliest Kafka offset among the frames used: held until the result is written
    completed_at: float  # record timestamp of the newest frame used: end-to-end latency starts here
    up: tuple[float, float, float] | None = None  # the device's gravity reference (stream_workers.gravity)


@dataclass
class AssemblerStats:
    frames: int = 0
    windows: int = 0
    gap_windows: int = 0
    duplicate_frames: int = 0
    late_frames: int = 0
    abandoned_windows: int = 0  # open when their device went quiet or its clock jumped: never completed
    invalid_windows: int = 0  # non-finite after resampling (cannot happen for valid frames; never emitted)
    clock_jumps: int = 0  # confirmed jumps of a device's clock (a new stream started)
    held_frames: int = 0  # frames held aside as a possible clock jump


@dataclass
class FrameOutcome:
    """What became of one frame: windows it completed, or why it was refused. Frames held aside as a
    possible clock jump come back later, in `accepted` (the jump was confirmed) or `rejected`."""

    windows: list[Window] = field(default_factory=list)
    refused: str | None = None  # "duplicate", "late" or "held" (aside, pending a clock-jump decision)
    reason: str = ""
    accepted: list[ImuSegment] = field(default_factory=list)  # held frames now part of the stream
    rejected: list[tuple[ImuSegment, str]] = field(default_factory=list)  # held frames refused, with why

    def extend(self, other: FrameOutcome) -> None:
        self.windows += other.windows
        self.accepted += other.accepted
        self.rejected += other.rejected


@dataclass
class _DeviceBuffer:
    partition: int
    segments: list[ImuSegment] = field(default_factory=list)  # sorted by t0
    next_k: int | None = None  # grid index of the next undecided window
    decided_any: bool = False
    max_seen_t: float = -math.inf
    tail: ImuSegment | None = None  # the last segment released, to tell a device pause from a hole
    seen_seqs: OrderedDict[int, float] = field(default_factory=OrderedDict)  # seq -> t0
    held: list[ImuSegment] = field(default_factory=list)  # frames far ahead: a clock jump, or one bad stamp


class WindowAssembler:
    """Turns each device's frames into grid-aligned sliding windows (see module docstring)."""

    def __init__(
        self,
        window_s: float,
        hop_s: float,
        rate_hz: float,
        max_gap_s: float,
        lateness_s: float,
        labels: Sequence[str],
        clock_jump_s: float = math.inf,
        jump_confirm_frames: int = 3,
    ):
        self.window_s = window_s
        self.hop_s = hop_s
        self.rate_hz = rate_hz
        self.max_gap_s = max_gap_s
        self.lateness_s = lateness_s
        self.labels = list(labels)
        self.clock_jump_s = clock_jump_s
        self.jump_confirm_frames = max(1, jump_confirm_frames)
        self.stats = AssemblerStats()
        self._devices: dict[str, _DeviceBuffer] = {}

    @classmethod
    def from_settings(cls, workers: WorkerSettings, rate_hz: float) -> WindowAssembler:
        """The assembler a worker runs: window, hop, gap and lateness bounds and labels from settings."""
        return cls(workers.window_s, workers.hop_s, rate_hz, workers.max_gap_s, workers.lateness_s, workers.labels,
                   clock_jump_s=workers.clock_jump_s, jump_confirm_frames=workers.jump_confirm_frames)

    @property
    def samples_per_window(self) -> int:
        return round(self.window_s * self.rate_hz)

    def window_start(self, k: int) -> float:
        return round(k * self.hop_s, 6)

    def add(self, seg: ImuSegment) -> FrameOutcome:
        """Buffer one frame's samples and return the windows it completes (in start order)."""
        self.stats.frames += 1
        dev = self._devices.get(seg.device_id)
        if dev is None:
            dev = self._devices[seg.device_id] = _DeviceBuffer(partition=seg.partition)
        dev.partition = seg.partition
        if self._far_ahead(dev, seg):
            return self._hold(dev, seg)
        # a frame on the device's own clock: any frames held aside had bad timestamps, not a clock jump
        rejected = [(h, self._jump_reason(h, dev, "its next frame continued the old clock")) for h in dev.held]
        dev.held = []
        outcome = self._add(dev, seg)
        outcome.rejected = rejected
        return outcome

    def flush_device(self, device_id: str) -> FrameOutcome:
        """The device went quiet: decide its open windows (holes become gaps; windows that can never
        complete are abandoned), refuse frames held as a possible clock jump, release every frame."""
        dev = self._devices.get(device_id)
        outcome = FrameOutcome()
        if dev is None:
            return outcome
        outcome.rejected = [(h, self._jump_reason(h, dev, "the device went quiet before confirming it"))
                            for h in dev.held]
        dev.held = []
        outcome.windows = self._finish(dev)
        return outcome

    def quiet_devices(self) -> list[str]:
        """Devices holding buffered or held-aside frames (what a silence would release)."""
        return [d for d, dev in self._devices.items() if dev.segments or dev.held]

    def _add(self, dev: _DeviceBuffer, seg: ImuSegment) -> FrameOutcome:
        tol = 0.5 / seg.rate_hz

        refusal = self._refusal(dev, seg, tol)
        if refusal is not None:
            if refusal[0] == "duplicate":
                self.stats.duplicate_frames += 1
            else:
                self.stats.late_frames += 1
            return FrameOutcome(refused=refusal[0], reason=refusal[1])

        bisect.insort(dev.segments, seg, key=lambda s: s.t0)
        dev.seen_seqs[seg.seq] = seg.t0
        if len(dev.seen_seqs) > SEEN_SEQS_PER_DEVICE:
            dev.seen_seqs.popitem(last=False)
        dev.max_seen_t = max(dev.max_seen_t, seg.last_sample_t)
        if not dev.decided_any:
            # until a window is decided, an earlier frame (out of order) may still move the first start
            first_t0 = dev.segments[0].t0
            dev.next_k = math.ceil((first_t0 - tol) / self.hop_s)
        return FrameOutcome(windows=self._decide(dev, tol))

    def held_offsets(self) -> dict[int, int]:
        """Per partition, the earliest offset a buffered or held-aside segment came from (what must be re-read)."""
        held: dict[int, int] = {}
        for dev in self._devices.values():
            for seg in dev.segments + dev.held:
                if seg.offset >= 0 and seg.offset < held.get(seg.partition, math.inf):
                    held[seg.partition] = seg.offset
        return held

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget devices of partitions this worker no longer owns; their new owner re-reads them."""
        for device_id in [d for d, dev in self._devices.items() if dev.partition in partitions]:
            del self._devices[device_id]

    def devices(self) -> list[str]:
        return list(self._devices)

    # -- internals ---------------------------------------------------------------------------

    def _far_ahead(self, dev: _DeviceBuffer, seg: ImuSegment) -> bool:
        """Ahead of both the device's own stream (if any) and the broker's clock by more than clock_jump_s.
        A record timestamp before 2000 is no clock (a test or a replay tool's made-up offsets)."""
        if not math.isfinite(self.clock_jump_s) or seg.produced_at < EARLIEST_T0:
            return False
        own = dev.held[-1].last_sample_t if dev.held else dev.max_seen_t
        if dev.held and seg.t0 <= own + self.clock_jump_s and seg.t0 > seg.produced_at + self.clock_jump_s:
            return True  # continues the held frames' clock
        return seg.t0 > own + self.clock_jump_s and seg.t0 > seg.produced_at + self.clock_jump_s

    def _hold(self, dev: _DeviceBuffer, seg: ImuSegment) -> FrameOutcome:
        outcome = FrameOutcome(refused="held", reason=self._jump_reason(seg, dev, "held until the next frames tell"))
        if dev.held and seg.t0 > dev.held[-1].last_sample_t + self.clock_jump_s:  # a second, unrelated jump
            outcome.rejected = [(h, self._jump_reason(h, dev, "a later frame jumped elsewhere")) for h in dev.held]
            dev.held = []
        dev.held.append(seg)
        self.stats.held_frames += 1
        if len(dev.held) < self.jump_confirm_frames:
            return outcome
        # frames in a row continue the new clock: the device's clock jumped; the old stream ends here
        self.stats.clock_jumps += 1
        held, dev.held = dev.held, []
        outcome.windows = self._finish(dev)
        self._devices[seg.device_id] = fresh = _DeviceBuffer(partition=seg.partition)
        for h in held:
            added = self._add(fresh, h)
            outcome.extend(added)
            if added.refused is None:
                outcome.accepted.append(h)
            else:
                outcome.rejected.append((h, added.reason))
        return outcome

    def _jump_reason(self, seg: ImuSegment, dev: _DeviceBuffer, verdict: str) -> str:
        ahead = f"{seg.t0 - dev.max_seen_t:,.0f} s ahead of its last sample" if math.isfinite(dev.max_seen_t) \
            else "the first frame of its stream"
        return (f"clock jump: seq {seg.seq} of {seg.device_id} starts at {seg.t0:.3f} s, {ahead} and "
                f"{seg.t0 - seg.produced_at:,.0f} s ahead of the broker's clock (bound {self.clock_jump_s:g} s); "
                f"{verdict}")

    def _finish(self, dev: _DeviceBuffer) -> list[Window]:
        """Decide everything buffered as if no frame were still on its way, then release it all."""
        if not dev.segments:
            return []
        tol = 0.5 / dev.segments[-1].rate_hz
        emitted = self._decide(dev, tol, final=True)
        # what remains are windows reaching past the last sample: they can never complete
        resume = math.ceil((dev.max_seen_t - tol) / self.hop_s)
        if dev.next_k is not None and resume > dev.next_k:
            self.stats.abandoned_windows += resume - dev.next_k
            dev.next_k = resume
        dev.decided_any = True
        dev.tail = dev.segments[-1]
        dev.segments = []
        return emitted

    def _refusal(self, dev: _DeviceBuffer, seg: ImuSegment, tol: float) -> tuple[str, str] | None:
        duration = seg.n / seg.rate_hz
        known_t0 = dev.seen_seqs.get(seg.seq)
        if known_t0 is not None and abs(known_t0 - seg.t0) < duration:
            return "duplicate", f"duplicate frame: seq {seg.seq} of {seg.device_id} was already received"
        i = bisect.bisect_left(dev.segments, seg.t0, key=lambda s: s.t0)
        for other in dev.segments[max(0, i - 1) : i + 1]:
            if seg.t0 < other.last_sample_t + tol and other.t0 < seg.last_sample_t + tol:
                return "duplicate", (
                    f"overlapping samples: seq {seg.seq} of {seg.device_id} covers "
                    f"{seg.t0:.3f}..{seg.last_sample_t:.3f} s, already buffered from seq {other.seq}"
                )
        if dev.decided_any and seg.last_sample_t < self.window_start(dev.next_k) - tol:
            return "late", (
                f"late frame: seq {seg.seq} of {seg.device_id} ends at {seg.last_sample_t:.3f} s, but windows "
                f"up to {self.window_start(dev.next_k):.3f} s were already decided "
                f"(lateness bound {self.lateness_s:g} s)"
            )
        return None

    def _decide(self, dev: _DeviceBuffer, tol: float, final: bool = False) -> list[Window]:
        emitted = []
        while True:
            start = self.window_start(dev.next_k)
            end = start + self.window_s
            last_sample = end - 2 * tol  # the window's last source sample (tol is half a sample period)
            if dev.max_seen_t < last_sample - tol:
                break  # the device has not reached this window's end yet
            used, hole = self._cover(dev, start, last_sample, tol)
            if hole is None:
                window = self._build(dev, used, start, end)
                if np.isfinite(window.acc).all() and (window.gyro is None or np.isfinite(window.gyro).all()):
                    emitted.append(window)
                else:
                    self.stats.invalid_windows += 1
                dev.next_k += 1
            else:
                before, after = hole
                paused = before is not None and after is not None and after.seq == before.seq + 1
                overdue = final or dev.max_seen_t - self.lateness_s >= end
                if not (paused or overdue):
                    break  # wait for an out-of-order frame to fill the hole
                dev.next_k = self._skip_gap(dev.next_k, before, after, tol)
            dev.decided_any = True
            self._release(dev, tol)
        self.stats.windows += len(emitted)
        return emitted

    def _cover(
        self, dev: _DeviceBuffer, start: float, last_sample: float, tol: float
    ) -> tuple[list[ImuSegment], tuple[ImuSegment | None, ImuSegment | None] | None]:
        """Segments covering [start, last_sample] without holes, or the hole (segments around it)."""
        used: list[ImuSegment] = []
        prev = dev.tail
        for seg in dev.segments:
            if seg.last_sample_t < start - self.max_gap_s:
                prev = seg
                continue
            reach = used[-1].last_sample_t if used else (prev.last_sample_t if prev is not None else -math.inf)
            # a hole is a pause longer than the gap bound AND than a sample and a half at the device's rate
            # (at 10 Hz the samples themselves are max_gap_s apart)
            if not used and seg.t0 <= start + tol:
                pass  # this segment opens the window by itself
            elif seg.t0 - reach > max(self.max_gap_s, 1.5 / seg.rate_hz):
                return used, (used[-1] if used else prev, seg)
            used.append(seg)
            if seg.last_sample_t >= last_sample - tol:
                return used, None
        return used, (used[-1] if used else prev, None)

    def _skip_gap(self, k: int, before: ImuSegment | None, after: ImuSegment | None, tol: float) -> int:
        """Jump past the windows a hole spoils; count those that held samples (the lost windows)."""
        if after is None:
            self.stats.gap_windows += 1
            return k + 1
        resume = max(math.ceil((after.t0 - tol) / self.hop_s), k + 1)
        lost, j = 0, k
        while j < resume and before is not None and self.window_start(j) <= before.last_sample_t:
            lost, j = lost + 1, j + 1  # windows holding samples before the hole
        j = max(j, resume - math.ceil(self.window_s / self.hop_s))
        while j < resume:
            lost += self.window_start(j) + self.window_s > after.t0  # windows holding samples after it
            j += 1
        self.stats.gap_windows += max(1, lost)
        return resume

    def _release(self, dev: _DeviceBuffer, tol: float) -> None:
        """Drop segments no undecided window can use (this is what lets the worker commit)."""
        horizon = self.window_start(dev.next_k) - self.max_gap_s
        while dev.segments and dev.segments[0].last_sample_t < horizon:
            dev.tail = dev.segments.pop(0)

    def _build(self, dev: _DeviceBuffer, used: list[ImuSegment], start: float, end: float) -> Window:
        times = np.concatenate([s.times() for s in used])
        source_rate = used[0].rate_hz
        # Model sample j summarises the source around start + (j + 1/2)/rate - 1/(2 source_rate): the
        # convention of models.encoder.resample (linear, align_corners=False), so a window resampled here
        # equals what the model would make of the raw window itself.
        targets = start + (np.arange(self.samples_per_window) + 0.5) / self.rate_hz - 0.5 / source_rate
        decimation = round(source_rate / self.rate_hz)
        with_gyro = all(s.gyro is not None for s in used)
        # acc and gyro side by side: one filter and one pass per window (this runs per window on the
        # worker's event loop, so its cost is the consume path's)
        channels = [np.hstack([s.acc, s.gyro]) if with_gyro else s.acc for s in used]
        resampled = _interp(targets, times, _low_pass(np.concatenate(channels), decimation))
        acc, gyro = (resampled[:, :3], resampled[:, 3:]) if with_gyro else (resampled, None)
        truth = None
        if all(s.labels is not None for s in used):
            labels = np.concatenate([s.labels for s in used])
            inside = labels[(times >= start - 1e-9) & (times < end)]
            truth = self._majority(inside)
        return Window(
            device_id=used[0].device_id,
            start=start,
            end=round(end, 6),
            rate_hz=self.rate_hz,
            acc=acc,
            gyro=gyro,
            placement=used[-1].placement,
            truth=truth,
            partition=dev.partition,
            first_offset=min(s.offset for s in used),
            completed_at=max(s.produced_at for s in used),
        )

    def _majority(self, labels: np.ndarray) -> str | None:
        if len(labels) == 0 or not np.isin(labels, BASIC_HAPT_IDS).all():
            return None
        counts = np.bincount(labels.astype(np.int64), minlength=7)[1:7]
        index = int(np.argmax(counts))
        return self.labels[index] if index < len(self.labels) else None


def _low_pass(values: np.ndarray, width: int) -> np.ndarray:
    """Box filter over `width` samples before decimating, the same anti-aliasing as
    models.encoder.resample: without it 50 Hz walking harmonics fold into the 25 Hz band and the model
    sees a signal unlike the one it was trained on."""
    if width <= 1:
        return values
    # float64: the running sum of a float32 stream loses precision (and, unchecked, could overflow).
    # The edges repeat the first and last sample (np.pad's "edge", built by hand: np.pad costs more than
    # the filter at these sizes); the leading zero row starts the running sum.
    before, after = (width - 1) // 2, width // 2
    padded = np.empty((len(values) + before + after + 1, values.shape[1]))
    padded[0] = 0.0
    padded[1:before + 1] = values[0]
    padded[before + 1:before + 1 + len(values)] = values
    padded[before + 1 + len(values):] = values[-1]
    cumulative = np.cumsum(padded, axis=0)
    return (cumulative[width:] - cumulative[:-width]) / width


def _interp(targets: np.ndarray, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear resampling of (n, 3) values at sample times onto target times: (T, 3) float32."""
    return np.stack([np.interp(targets, times, values[:, axis]) for axis in range(values.shape[1])], 1).astype(
        np.float32
    )
