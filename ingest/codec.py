"""Bytes <-> :class:`~ingest.frame.Frame`, in two encodings, plus the ground-truth Kafka header.

- ``json``: for interop (a shell, a microcontroller with a JSON library). Arrays are nested lists.
  Bit-exact for float32 too: every float32 is exactly a double, and Python prints doubles so they
  parse back to the same bits.
- ``msgpack``: what travels on Kafka. Arrays are raw float32 little-endian bytes with their shape,
  so a 50 Hz acc+gyro second is 1.2 kB instead of ~3.6 kB of decimal text, decodes with one
  ``np.frombuffer`` instead of parsing 300 numbers, and cannot lose a bit to decimal rounding.

Both share one document layout (``schema_version``, ``device_id``, ``seq``, ``t0``, ``duration_s``,
``placement``, ``imu``, ``env``, ``streams``). :func:`decode` tells them apart by the first byte:
a JSON document starts with ``{`` (after whitespace); a msgpack map never does.

Ground truth (dataset labels) is not part of a frame: devices in the field have none. Replays put
it in the ``iotlm-truth`` Kafka header, see :class:`Truth`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import msgpack
import numpy as np

from ingest.frame import (
    SCHEMA_VERSION,
    EnvStream,
    Frame,
    FrameError,
    FrameLimits,
    ImuStream,
    SensorStream,
)

Format = Literal["json", "msgpack"]
FORMATS: tuple[Format, ...] = ("json", "msgpack")
CONTENT_TYPES: dict[Format, str] = {
    "json": "application/json",
    "msgpack": "application/vnd.iotlm.frame.v1+msgpack",
}
CONTENT_TYPE_HEADER = "content-type"
TRUTH_HEADER = "iotlm-truth"

TRUTH_LABEL_MIN, TRUTH_LABEL_MAX = -1, 32767  # label ids travel as int16

_TOP_LEVEL = {"schema_version", "device_id", "seq", "t0", "duration_s", "placement", "imu", "env", "streams"}


# ----------------------------------------------------------------------------------------- encode
def _array_json(array: np.ndarray) -> list:
    return array.tolist()


def _array_msgpack(array: np.ndarray) -> dict:
    return {"shape": list(array.shape), "f4le": array.astype("<f4", copy=False).tobytes()}


def _document(frame: Frame, pack_array: Callable[[np.ndarray], Any]) -> dict:
    doc: dict[str, Any] = {
        "schema_version": frame.schema_version,
        "device_id": frame.device_id,
        "seq": frame.seq,
        "t0": frame.t0,
        "duration_s": frame.duration_s,
        "placement": frame.placement,
    }
    if frame.imu is not None:
        doc["imu"] = {"rate_hz": frame.imu.rate_hz} | {
            name: pack_array(a) for name, a in frame.imu.channels().items()
        }
    if frame.env is not None:
        doc["env"] = {
            "rate_hz": frame.env.rate_hz,
            "channels": {name: pack_array(a) for name, a in frame.env.channels.items()},
        }
    if frame.streams:
        doc["streams"] = {
            s.modality: {
                "rate_hz": s.rate_hz,
                "channels": {name: pack_array(a) for name, a in s.channels.items()},
                "units": dict(s.units),
            }
            for s in frame.streams
        }
    return doc


def encode(frame: Frame, fmt: Format = "msgpack") -> bytes:
    """The frame as bytes. A Frame is valid by construction, so this cannot fail on content."""
    if fmt == "msgpack":
        return msgpack.packb(_document(frame, _array_msgpack), use_bin_type=True)
    if fmt == "json":
        return json.dumps(_document(frame, _array_json), separators=(",", ":")).encode()
    raise ValueError(f"unknown frame format {fmt!r}; one of {FORMATS}")


# ----------------------------------------------------------------------------------------- decode
def detect_format(data: bytes) -> Format:
    return "json" if data.lstrip(b" \t\r\n")[:1] == b"{" else "msgpack"


def _require(doc: dict, key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise FrameError(f"{where}{key} is missing", "missing_field")
    value = doc[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise FrameError(f"{where}{key} must be {_kind_name(kinds)}, got a boolean", "wrong_type")
    if not isinstance(value, kinds):
        raise FrameError(
            f"{where}{key} must be {_kind_name(kinds)}, got {type(value).__name__} {_preview(value)}",
            "wrong_type",
        )
    return value


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _array_from_json(value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise FrameError(f"{where} must be a list of numbers, got {type(value).__name__}", "wrong_type")
    return value  # the stream constructors turn it into checked float32


def _array_from_msgpack(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, dict) or not isinstance(value.get("f4le"), bytes):
        raise FrameError(f"{where} must be {{shape, f4le}} with float32 bytes", "wrong_type")
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FrameError(f"{where}.shape must be a list of non-negative integers, got {_preview(shape)}", "shape")
    data = value["f4le"]
    expected = 4 * math.prod(shape)
    if len(data) != expected:
        raise FrameError(
            f"{where} has {len(data)} bytes but shape {tuple(shape)} of float32 needs {expected}", "shape"
        )
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def _channels(doc: dict, where: str, read_array) -> dict:
    channels = _require(doc, "channels", dict, where)
    return {name: read_array(value, f"{where}{name}") for name, value in channels.items()}


def _frame_from_document(doc: Any, read_array) -> Frame:
    if not isinstance(doc, dict):
        raise FrameError(f"a frame is an object/map at the top level, got {type(doc).__name__}", "wrong_type")
    version = _require(doc, "schema_version", int, "")
    if version != SCHEMA_VERSION:  # before anything else: a newer layout may name fields differently
        raise FrameError(
            f"schema_version {version} is not supported (this ingest speaks {SCHEMA_VERSION})", "schema_version"
        )
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise FrameError(f"unknown top-level field(s) {unknown} in a v1 frame", "unknown_field")
    imu = env = None
    if doc.get("imu") is not None:
        raw = _require(doc, "imu", dict, "")
        extra = sorted(set(raw) - {"rate_hz", "acc", "gyro", "mag"})
        if extra:
            raise FrameError(f"imu has unknown field(s) {extra}; IMU channels are acc, gyro, mag", "unknown_field")
        imu = ImuStream(
            rate_hz=_require(raw, "rate_hz", (int, float), "imu."),
            acc=read_array(_require(raw, "acc", (list, dict), "imu."), "imu.acc"),
            gyro=read_array(raw["gyro"], "imu.gyro") if raw.get("gyro") is not None else None,
            mag=read_array(raw["mag"], "imu.mag") if raw.get("mag") is not None else None,
        )
    if doc.get("env") is not None:
        raw = _require(doc, "env", dict, "")
        env = EnvStream(rate_hz=_require(raw, "rate_hz", (int, float), "env."), channels=_channels(raw, "env.", read_array))
    streams = []
    for modality, raw in (_require(doc, "streams", dict, "") if doc.get("streams") is not None else {}).items():
        where = f"streams.{modality}."
        if not isinstance(raw, dict):
            raise FrameError(f"streams.{modality} must be an object, got {type(raw).__name__}", "wrong_type")
        streams.append(
            SensorStream(
                modality=modality,
                rate_hz=_require(raw, "rate_hz", (int, float), where),
                channels=_channels(raw, where, read_array),
                units=_require(raw, "units", dict, where),
            )
        )
    return Frame(
        schema_version=version,
        device_id=_require(doc, "device_id", str, ""),
        seq=_require(doc, "seq", int, ""),
        t0=_require(doc, "t0", (int, float), ""),
        duration_s=_require(doc, "duration_s", (int, float), ""),
        placement=_require(doc, "placement", str, ""),
        imu=imu,
        env=env,
        streams=tuple(streams),
    )


def _parse_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(
            f"JSON frame is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}", "bad_encoding"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"JSON frame does not parse: {exc.msg} at line {exc.lineno} column {exc.colno}", "bad_json") from None
    except RecursionError:
        raise FrameError("JSON frame nests arrays or objects too deeply to parse", "bad_json") from None


def _parse_msgpack(data: bytes) -> Any:
    if not data:
        raise FrameError("payload is empty", "empty")
    if not (0x80 <= data[0] <= 0x8F or data[0] in (0xDE, 0xDF)):  # msgpack fixmap, map16, map32
        raise FrameError(
            f"payload is neither JSON (starts with '{{') nor a msgpack frame (starts with a map); "
            f"it starts with {data[:16]!r}",
            "unknown_format",
        )
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.exceptions.ExtraData as exc:
        raise FrameError(f"binary frame has {len(exc.extra)} trailing bytes after the frame", "bad_msgpack") from None
    except ValueError as exc:
        # unpackb bounds every declared length by the bytes present, so "exceeds" also means cut short
        if "incomplete" in str(exc) or "exceeds max_" in str(exc):
            raise FrameError(
                f"binary frame is truncated: {len(data)} bytes end in the middle of a value", "truncated"
            ) from None
        raise FrameError(f"binary frame does not unpack: {exc}", "bad_msgpack") from None
    except Exception as exc:  # msgpack raises a handful of other types on hostile input
        raise FrameError(f"binary frame does not unpack: {type(exc).__name__}: {exc}", "bad_msgpack") from None


def decode(data: bytes, limits: FrameLimits | None = None) -> Frame:
    """A valid frame from ``data`` (JSON or msgpack, detected), or :class:`FrameError` saying why not."""
    limits = limits or FrameLimits()
    limits.check_size(len(data))
    if detect_format(data) == "json":
        frame = _frame_from_document(_parse_json(data), _array_from_json)
    else:
        frame = _frame_from_document(_parse_msgpack(data), _array_from_msgpack)
    limits.check_clock(frame)
    return frame


# ------------------------------------------------------------------------------------ truth header
@dataclass(frozen=True, eq=False)
class Truth:
    """Ground truth for a replayed frame: one label id per IMU sample (``-1`` = unlabelled).

    ``dataset`` names the label space (``"hapt"``: ``ingest.hapt.HAPT_ACTIVITIES``; ``"synthetic"``:
    the simulator's activity catalogue); ``names`` maps the ids present in this frame to their
    names, so a consumer needs neither catalogue to read it.
    """

    labels: np.ndarray  # (n,) int16, aligned with frame.imu rows
    dataset: str
    names: dict[int, str] = field(default_factory=dict)
    subject: int | None = None
    experiment: int | None = None

    def to_header(self) -> bytes:
        doc = {
            "labels": self.labels.astype(int).tolist(),
            "dataset": self.dataset,
            "names": {str(k): v for k, v in self.names.items()},
        }
        if self.subject is not None:
            doc["subject"] = self.subject
        if self.experiment is not None:
            doc["experiment"] = self.experiment
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_header(cls, value: bytes) -> Truth:
        """The header parsed and checked like any input: FrameError (code ``bad_truth``) says what is wrong.
        Consumers trust what comes out (labels flat int16 ids, names and dataset short strings)."""

        def bad(reason: str) -> FrameError:
            return FrameError(f"{TRUTH_HEADER} header {reason}", "bad_truth")

        try:
            doc = json.loads(value)
        except (ValueError, TypeError, RecursionError) as exc:
            raise bad(f"is not JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise bad(f"must be a JSON object, got {type(doc).__name__}")
        labels = doc.get("labels")
        if not isinstance(labels, list):
            raise bad("needs labels: a list of integer label ids")
        if not all(isinstance(x, int) and not isinstance(x, bool) and TRUTH_LABEL_MIN <= x <= TRUTH_LABEL_MAX
                   for x in labels):
            raise bad(f"labels must be integers in [{TRUTH_LABEL_MIN}, {TRUTH_LABEL_MAX}] (-1: unlabelled)")
        dataset = doc.get("dataset")
        if not isinstance(dataset, str) or not 0 < len(dataset) <= 32:
            raise bad("needs dataset: a name of 1-32 characters")
        names = doc.get("names", {})
        if not isinstance(names, dict) or not all(
            isinstance(v, str) and len(v) <= 64 and k.lstrip("-").isdigit() and len(k) <= 6 for k, v in names.items()
        ):
            raise bad("names must map label ids to names of at most 64 characters")
        extra = {}
        for key in ("subject", "experiment"):
            number = doc.get(key)
            if number is not None and (not isinstance(number, int) or isinstance(number, bool) or abs(number) >= 2**31):
                raise bad(f"{key} must be an integer")
            extra[key] = number
        return cls(labels=np.asarray(labels, dtype=np.int16), dataset=dataset,
                   names={int(k): v for k, v in names.items()}, **extra)


def truth_for_frame(value: bytes, frame: Frame) -> Truth:
    """The truth header of ``frame``, checked (FrameError ``bad_truth``): one label per IMU sample."""
    truth = Truth.from_header(value)
    n = frame.imu.n_samples if frame.imu is not None else None
    if n is not None and len(truth.labels) != n:
        raise FrameError(f"{TRUTH_HEADER} has {len(truth.labels)} labels for {n} IMU samples", "bad_truth")
    return truth


def header(headers: list[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """The value of Kafka header ``name`` (the last one wins), or None."""
    found = None
    for key, value in headers or ():
        if key == name:
            found = value
    return found
