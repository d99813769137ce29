"""Frame contract v1: what one device sends for one stretch of time.

A frame covers ``[t0, t0 + duration_s)`` of one device and carries one stream per modality. Each
stream has its own sample rate and units, so a 50 Hz IMU and a 0.2 Hz CO2 sensor travel together:

- ``imu``: ``acc`` (n, 3) m/s^2 with gravity included, optional ``gyro`` (n, 3) rad/s and ``mag``
  (n, 3) uT, all sampled at ``imu.rate_hz``.
- ``env``: any subset of the scalar room channels in :data:`ENV_UNITS`, each (n,) at ``env.rate_hz``.
- ``streams``: further modalities as :class:`SensorStream` (named channels, rate, units), so a new
  sensor does not need a new schema version.

Objects here cannot be built invalid: every constructor checks its arguments and raises
:class:`FrameError` with a reason a person can act on ("imu.acc has NaN at sample 17, axis y").
Checks that depend on configuration (payload size, how far in the future ``t0`` may be) live in
:class:`FrameLimits`, applied by the codec and the ingest gate.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from ingest.placements import FRAME_PLACEMENTS as PLACEMENTS  # the one vocabulary (also the encoder's)
from ingest.placements import UNSERVED_PLACEMENTS, normalise_placement, unserved_reason

SCHEMA_VERSION = 1

# Scalar room channels and the one unit each is sent in; a sensor reporting another unit converts.
ENV_UNITS: dict[str, str] = {
    "temperature": "C",
    "humidity": "%",
    "co2": "ppm",
    "light": "lux",
    "noise": "dB",
    "pir": "0/1",
    "pressure": "hPa",
    "voc": "ppb",
}

IMU_UNITS: dict[str, str] = {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}

# What a real sensor of each channel can read, with headroom: beyond it the value is a bug or an attack
# (an accelerometer does not read 3e38 m/s^2), and refusing it here keeps every later sum, filter and
# average far from float32 overflow. IMU limits are per sample and axis.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "acc": (-2000.0, 2000.0),  # m/s^2: about 200 g, past high-g impact sensors (MEMS wearables: 16-32 g)
    "gyro": (-100.0, 100.0),  # rad/s: about 5,700 deg/s, past the 4,000 deg/s of the widest MEMS gyros
    "mag": (-5000.0, 5000.0),  # uT: Earth's field is 25-65 uT; MEMS magnetometers saturate near 4,900 uT
    "temperature": (-60.0, 120.0),
    "humidity": (0.0, 100.0),
    "co2": (0.0, 100_000.0),
    "light": (0.0, 250_000.0),  # direct sunlight is about 120,000 lux
    "noise": (0.0, 200.0),
    "pir": (0.0, 1.0),
    "pressure": (250.0, 1200.0),
    "voc": (0.0, 100_000.0),
}

# Sample rates each modality can be served at. An IMU slower than 5 Hz cannot show human motion, and
# its samples would sit further apart than any window tolerates (one 188-byte frame at 0.001 Hz would
# otherwise span an hour of windows); room sensors report every 10 s to 1 h.
RATE_RANGES: dict[str, tuple[float, float]] = {"imu": (5.0, 2000.0), "env": (1 / 3600, 100.0)}

# 2000-01-01 UTC: no device of ours has a clock older than this unless it was never set.
EARLIEST_T0 = 946_684_800.0
MAX_DURATION_S = 3600.0
MAX_RATE_HZ = 100_000.0
# 64 characters: the width of every device_id column in storage, so a valid frame is always storable.
MAX_DEVICE_ID_LENGTH = 64
DEVICE_ID_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_DEVICE_ID_LENGTH - 1}}}$")
MODALITY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
CHANNEL_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_AXES = "xyz"


class FrameError(ValueError):
    """A frame (or its bytes) breaks the contract. ``reason`` is for people, ``code`` for machines."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __reduce__(self):  # keep both fields when pickled across processes
        return (type(self), (self.reason, self.code))


def _as_float32(value: Any, where: str) -> np.ndarray:
    """A read-only C-contiguous float32 copy of ``value``; refuses text, None and ragged rows."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except ValueError as exc:  # numpy refuses ragged nested lists
            raise FrameError(f"{where} has rows of different lengths ({exc})", "shape") from None
    if array.dtype.kind not in "biuf":
        raise FrameError(
            f"{where} must hold numbers, got {array.dtype.name} values", "wrong_type"
        )
    if array.dtype == np.float32 and array.flags.c_contiguous and not array.flags.writeable:
        return array  # already an immutable float32 buffer (the binary codec's case)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, reported below
        array = np.array(array, dtype=np.float32, order="C", copy=True)
    array.setflags(write=False)
    return array


def _check_finite(array: np.ndarray, where: str) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    index = np.argwhere(~finite)[0]
    bad = array[tuple(index)]
    kind = "NaN" if np.isnan(bad) else ("+inf" if bad > 0 else "-inf")
    at = f"sample {index[0]}"
    if array.ndim == 2:
        at += f", axis {_AXES[index[1]]}" if array.shape[1] == 3 else f", column {index[1]}"
    count = int((~finite).sum())
    more = f" ({count} non-finite values in total)" if count > 1 else ""
    raise FrameError(f"{where} has {kind} at {at}{more}", "non_finite")


def _number(value: Any, where: str) -> float:
    """``value`` as a float (numpy scalars welcome); an integer too large for a float becomes inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise FrameError(f"{where} must be a number, got {type(value).__name__}", "wrong_type")
    try:
        return float(value)
    except OverflowError:
        return math.inf  # the caller's range check reports it


def _check_rate(rate_hz: Any, where: str) -> float:
    rate = _number(rate_hz, f"{where}.rate_hz")
    if not math.isfinite(rate) or rate <= 0 or rate > MAX_RATE_HZ:
        raise FrameError(f"{where}.rate_hz must be in (0, {MAX_RATE_HZ:g}] Hz, got {rate:g}", "bad_rate")
    low, high = RATE_RANGES.get(where, (0.0, MAX_RATE_HZ))
    if not low <= rate <= high:
        raise FrameError(f"{where}.rate_hz must be in [{low:.4g}, {high:g}] Hz for this modality, got {rate:g}",
                         "bad_rate")
    return rate


def _check_physical(array: np.ndarray, channel: str, where: str) -> None:
    """Finite values a real sensor of `channel` can read (PHYSICAL_RANGES); other channels are unchecked."""
    _check_finite(array, where)
    if channel not in PHYSICAL_RANGES or array.size == 0:
        return
    low, high = PHYSICAL_RANGES[channel]
    outside = (array < low) | (array > high)
    if not outside.any():
        return
    index = np.argwhere(outside)[0]
    at = f"sample {index[0]}" + (f", axis {_AXES[index[1]]}" if array.ndim == 2 and array.shape[1] == 3 else "")
    raise FrameError(
        f"{where} reads {float(array[tuple(index)]):.6g} at {at}, outside what a {channel} sensor can read "
        f"[{low:g}, {high:g}] ({int(outside.sum())} values outside)",
        "out_of_range",
    )


def _check_same_length(channels: Mapping[str, np.ndarray], where: str) -> None:
    lengths = {name: array.shape[0] for name, array in channels.items()}
    first, n = next(iter(lengths.items()))
    for name, count in lengths.items():
        if count != n:
            raise FrameError(
                f"{where}.{name} has {count} samples but {where}.{first} has {n}; "
                "channels of one stream share its sample clock",
                "length_mismatch",
            )


@dataclass(frozen=True, eq=False)
class ImuStream:
    """Inertial samples at one rate. acc (n, 3) m/s^2 incl. gravity; gyro (n, 3) rad/s; mag (n, 3) uT."""

    rate_hz: float
    acc: np.ndarray
    gyro: np.ndarray | None = None
    mag: np.ndarray | None = None

    modality: ClassVar[str] = "imu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_hz", _check_rate(self.rate_hz, "imu"))
        if self.acc is None:
            raise FrameError("imu.acc is missing; an IMU stream always carries acceleration", "missing_field")
        for name in IMU_UNITS:
            value = getattr(self, name)
            if value is None:
                continue
            array = _as_float32(value, f"imu.{name}")
            if array.ndim != 2 or array.shape[1] != 3:
                raise FrameError(
                    f"imu.{name} must have shape (n, 3) for x, y, z; got {array.shape}", "shape"
                )
            _check_physical(array, name, f"imu.{name}")
            object.__setattr__(self, name, array)
        _check_same_length(self.channels(), "imu")

    @property
    def n_samples(self) -> int:
        return self.acc.shape[0]

    @property
    def units(self) -> dict[str, str]:
        return {name: IMU_UNITS[name] for name in self.channels()}

    def channels(self) -> dict[str, np.ndarray]:
        """The channels present, in contract order."""
        return {n: getattr(self, n) for n in IMU_UNITS if getattr(self, n) is not None}


@dataclass(frozen=True, eq=False)
class EnvStream:
    """Room conditions at one rate: any subset of :data:`ENV_UNITS`, each (n,) in that unit."""

    rate_hz: float
    channels: Mapping[str, np.ndarray]

    modality: ClassVar[str] = "env"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_hz", _check_rate(self.rate_hz, "env"))
        if not isinstance(self.channels, Mapping) or not self.channels:
            raise FrameError("env.channels must name at least one channel", "missing_field")
        checked: dict[str, np.ndarray] = {}
        for name, value in self.channels.items():
            if name not in ENV_UNITS:
                raise FrameError(
                    f"env.{name} is not an env channel (known: {', '.join(ENV_UNITS)}); "
                    "send other sensors as a named stream with their units",
                    "unknown_channel",
                )
            array = _as_float32(value, f"env.{name}")
            if array.ndim != 1:
                raise FrameError(f"env.{name} must have shape (n,); got {array.shape}", "shape")
            _check_physical(array, name, f"env.{name}")
            checked[name] = array
        _check_same_length(checked, "env")
        object.__setattr__(self, "channels", checked)

    @property
    def n_samples(self) -> int:
        return next(iter(self.channels.values())).shape[0]

    @property
    def units(self) -> dict[str, str]:
        return {name: ENV_UNITS[name] for name in self.channels}


@dataclass(frozen=True, eq=False)
class SensorStream:
    """Any other modality: named channels (n,) or (n, k) at one rate, each with its unit."""

    modality: str
    rate_hz: float
    channels: Mapping[str, np.ndarray]
    units: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.modality, str) or not MODALITY_PATTERN.match(self.modality):
            raise FrameError(
                f"stream modality {self.modality!r} must be lower-case letters, digits or _ "
                "(at most 32, starting with a letter)",
                "wrong_type",
            )
        if self.modality in ("imu", "env"):
            raise FrameError(
                f"stream modality {self.modality!r} is reserved; use the frame's {self.modality} field",
                "wrong_type",
            )
        where = f"streams.{self.modality}"
        object.__setattr__(self, "rate_hz", _check_rate(self.rate_hz, where))
        if not isinstance(self.channels, Mapping) or not self.channels:
            raise FrameError(f"{where}.channels must name at least one channel", "missing_field")
        if not isinstance(self.units, Mapping):
            raise FrameError(f"{where}.units must map channel names to units", "wrong_type")
        checked: dict[str, np.ndarray] = {}
        for name, value in self.channels.items():
            if not isinstance(name, str) or not CHANNEL_PATTERN.match(name):
                raise FrameError(
                    f"{where} channel name {str(name)[:40]!r} must be 1-64 letters, digits, '_', '.' or '-'",
                    "wrong_type",
                )
            unit = self.units.get(name)
            if not isinstance(unit, str) or not 0 < len(unit) <= 32 or not unit.isprintable():
                raise FrameError(
                    f"{where}.{name} needs its unit in {where}.units: printable text of 1-32 characters",
                    "missing_field",
                )
            array = _as_float32(value, f"{where}.{name}")
            if array.ndim not in (1, 2):
                raise FrameError(f"{where}.{name} must have shape (n,) or (n, k); got {array.shape}", "shape")
            _check_finite(array, f"{where}.{name}")
            checked[name] = array
        _check_same_length(checked, where)
        object.__setattr__(self, "channels", checked)
        object.__setattr__(self, "units", {name: self.units[name] for name in checked})

    @property
    def n_samples(self) -> int:
        return next(iter(self.channels.values())).shape[0]


Stream = ImuStream | EnvStream | SensorStream


@dataclass(frozen=True, eq=False)
class Frame:
    """One device's multisensor frame covering ``[t0, t0 + duration_s)`` (epoch seconds)."""

    device_id: str
    seq: int
    t0: float
    duration_s: float
    placement: str = "unknown"
    imu: ImuStream | None = None
    env: EnvStream | None = None
    streams: tuple[SensorStream, ...] = field(default_factory=tuple)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise FrameError(
                f"schema_version {self.schema_version!r} is not supported (this ingest speaks {SCHEMA_VERSION})",
                "schema_version",
            )
        if not isinstance(self.device_id, str) or not DEVICE_ID_PATTERN.match(self.device_id):
            raise FrameError(
                f"device_id {self.device_id!r} must be 1-{MAX_DEVICE_ID_LENGTH} characters of letters, digits, '.', '_', ':' or '-'",
                "bad_device_id",
            )
        if isinstance(self.seq, (bool, np.bool_)) or not isinstance(self.seq, numbers.Integral) or not 0 <= self.seq < 2**63:
            raise FrameError(f"seq must be an integer in [0, 2^63), got {str(self.seq)[:40]}", "bad_seq")
        object.__setattr__(self, "seq", int(self.seq))
        object.__setattr__(self, "t0", self._check_t0())
        object.__setattr__(self, "duration_s", self._check_duration())
        if self.placement not in PLACEMENTS:
            untrained = unserved_reason(self.placement) if isinstance(self.placement, str) else None
            raise FrameError(
                untrained if untrained and normalise_placement(self.placement) in UNSERVED_PLACEMENTS
                else f"placement {self.placement!r} is unknown (one of: {', '.join(PLACEMENTS)})",
                "unknown_placement",
            )
        object.__setattr__(self, "streams", tuple(self.streams))
        for name, kind in (("imu", ImuStream), ("env", EnvStream)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise FrameError(f"{name} must be an {kind.__name__}, got {type(value).__name__}", "wrong_type")
        modalities = [s.modality for s in self.streams if isinstance(s, SensorStream)]
        if len(modalities) != len(self.streams):
            raise FrameError("streams must all be SensorStream objects", "wrong_type")
        if len(set(modalities)) != len(modalities):
            raise FrameError(f"streams repeat a modality: {modalities}", "wrong_type")
        if not self.all_streams():
            raise FrameError("frame carries no modality (imu, env or streams)", "no_modality")
        for stream in self.all_streams():
            self._check_length(stream)

    def _check_t0(self) -> float:
        t0 = _number(self.t0, "t0 (epoch seconds)")
        if not math.isfinite(t0):
            raise FrameError(f"t0 {t0} is not finite", "bad_timestamp")
        if t0 < EARLIEST_T0:
            raise FrameError(f"t0 {t0:.3f} is before 2000-01-01: is the device clock set?", "bad_timestamp")
        if t0 > 32_503_680_000:  # year 3000: almost surely milliseconds or microseconds
            raise FrameError(f"t0 {t0:.6g} is after year 3000; send epoch seconds, not milliseconds", "bad_timestamp")
        return t0

    def _check_duration(self) -> float:
        d = _number(self.duration_s, "duration_s")
        if not math.isfinite(d) or d <= 0 or d > MAX_DURATION_S:
            raise FrameError(f"duration_s must be in (0, {MAX_DURATION_S:g}] s, got {d:g}", "bad_duration")
        return d

    def _check_length(self, stream: Stream) -> None:
        """A stream holds rate x duration samples (floor or ceil when that is not whole)."""
        expected = stream.rate_hz * self.duration_s
        low, high = math.floor(expected + 1e-6), math.ceil(expected - 1e-6)
        n = stream.n_samples
        if low <= n <= high:
            return
        where = "imu" if isinstance(stream, ImuStream) else (
            "env" if isinstance(stream, EnvStream) else f"streams.{stream.modality}"
        )
        need = str(low) if low == high else f"{low} or {high}"
        raise FrameError(
            f"{where} has {n} samples but {stream.rate_hz:g} Hz x {self.duration_s:g} s needs {need}",
            "length_mismatch",
        )

    def all_streams(self) -> list[Stream]:
        """Every modality present: imu, env, then the named streams."""
        return [s for s in (self.imu, self.env) if s is not None] + list(self.streams)

    @property
    def t_end(self) -> float:
        return self.t0 + self.duration_s


@dataclass(frozen=True)
class FrameLimits:
    """The checks that depend on configuration rather than on the frame alone."""

    max_frame_bytes: int = 1_000_000
    max_future_skew_s: float = 86_400.0

    @classmethod
    def from_settings(cls, settings) -> FrameLimits:
        return cls(
            max_frame_bytes=settings.kafka.max_frame_bytes,
            max_future_skew_s=settings.ingest.max_future_skew_s,
        )

    def check_size(self, n_bytes: int) -> None:
        if n_bytes > self.max_frame_bytes:
            raise FrameError(
                f"payload is {n_bytes:,} bytes; frames are limited to {self.max_frame_bytes:,} bytes "
                "(settings.kafka.max_frame_bytes): send shorter frames",
                "oversized",
            )

    def check_clock(self, frame: Frame, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if frame.t0 > now + self.max_future_skew_s:
            raise FrameError(
                f"t0 {frame.t0:.3f} is {frame.t0 - now:,.0f} s in the future "
                f"(limit {self.max_future_skew_s:,.0f} s): is the device clock set?",
                "bad_timestamp",
            )
