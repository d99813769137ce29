"""Codecs: bit-exact round trips in both encodings, format detection, and decode-time reasons."""

from __future__ import annotations

import json
import random
from collections import Counter

import msgpack
import numpy as np
import pytest

from ingest.codec import FORMATS, Truth, decode, detect_format, encode
from ingest.frame import EnvStream, Frame, FrameError, ImuStream, SensorStream

NOW = 1_764_000_000.0


@pytest.fixture
def rich_frame() -> Frame:
    """Every modality, with float32 values that decimal text would round if we were careless."""
    rng = np.random.default_rng(7)
    tiny = np.float32(1e-38) * rng.random((100, 3)).astype(np.float32)  # subnormal-ish values
    return Frame(
        device_id="dev-roundtrip",
        seq=41,
        t0=NOW + 0.123456789,
        duration_s=2.0,
        placement="chest",
        imu=ImuStream(50.0, rng.normal(size=(100, 3)) * 9.81, rng.normal(size=(100, 3)), tiny),
        env=EnvStream(1.0, {"temperature": [21.25, 21.5], "co2": [400.1, 401.7], "pir": [0, 1]}),
        streams=(SensorStream("ppg", 64.0, {"bvp": rng.normal(size=128), "xyz": rng.normal(size=(128, 2))},
                              {"bvp": "a.u.", "xyz": "g"}),),
    )


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_bit_exact(rich_frame, fmt):
    data = encode(rich_frame, fmt)
    assert detect_format(data) == fmt
    back = decode(data)
    assert (back.device_id, back.seq, back.t0, back.duration_s, back.placement) == (
        "dev-roundtrip", 41, rich_frame.t0, 2.0, "chest")
    for name, array in rich_frame.imu.channels().items():
        assert same_bits(getattr(back.imu, name), array), name
    for name, array in rich_frame.env.channels.items():
        assert same_bits(back.env.channels[name], array), name
    (ppg,) = back.streams
    assert ppg.units == {"bvp": "a.u.", "xyz": "g"}
    for name, array in rich_frame.streams[0].channels.items():
        assert same_bits(ppg.channels[name], array), name
    assert encode(back, fmt) == data


def test_binary_is_much_smaller_than_json(rich_frame):
    assert len(encode(rich_frame, "msgpack")) * 2.5 < len(encode(rich_frame, "json"))


def test_truth_header_round_trip():
    truth = Truth(labels=np.array([5, 5, -1, 7], np.int16), dataset="hapt", subject=2, experiment=3)
    back = Truth.from_header(truth.to_header())
    assert back.labels.tolist() == [5, 5, -1, 7] and (back.subject, back.experiment) == (2, 3)


def json_doc(**overrides) -> bytes:
    doc = {"schema_version": 1, "device_id": "dev-1", "seq": 0, "t0": NOW, "duration_s": 1.0,
           "placement": "wrist", "imu": {"rate_hz": 50, "acc": [[0.0, 0.0, 9.81]] * 50}}
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "data, code, words",
    [
        (json_doc(seq="12"), "wrong_type", "seq must be an integer, got str '12'"),
        (json_doc(t0=True), "wrong_type", "t0 must be a number, got a boolean"),
        (json_doc(imu={"rate_hz": 50}), "missing_field", "imu.acc is missing"),
        (json_doc(imu={"rate_hz": 50, "acc": [[0, 0, 9.8]] * 49 + [[0, 0]]}), "shape", "rows of different lengths"),
        (json_doc(imu={"rate_hz": 50, "acc": [[0, 0, None]] * 50}), "wrong_type", "must hold numbers"),
        (json_doc(colour="red"), "unknown_field", "colour"),
        (json_doc(schema_version=3, anything="else"), "schema_version", "schema_version 3"),
        (b'{"schema_version": 1, "device_id": "caf\xe9"}', "bad_encoding", "byte 0xe9 at offset 39"),
        (b'{"schema_version": 1,', "bad_json", "does not parse"),
        (b"", "empty", "empty"),
        (b"GET / HTTP/1.1", "unknown_format", "neither JSON"),
        (msgpack.packb({"schema_version": 1, "device_id": "dev-1", "seq": 0, "t0": NOW, "duration_s": 1.0,
                        "placement": "wrist", "imu": {"rate_hz": 50.0, "acc": {"shape": [50, 3], "f4le": b"\0" * 599}}}),
         "shape", "599 bytes but shape (50, 3) of float32 needs 600"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_decode_reasons(data, code, words):
    with pytest.raises(FrameError) as info:
        decode(data)
    assert info.value.code == code and words in info.value.reason


def test_truncated_binary_at_every_length(rich_frame):
    data = encode(rich_frame, "msgpack")
    for cut in range(1, len(data), 97):
        with pytest.raises(FrameError) as info:
            decode(data[:cut])
        assert info.value.code == "truncated", (cut, info.value.reason)


def test_mutated_payloads_only_ever_raise_frame_error(rich_frame):
    """Random byte flips, cuts and insertions: decode accepts or explains, it never crashes."""
    rnd = random.Random(0)
    originals = [encode(rich_frame, fmt) for fmt in FORMATS]
    outcomes = Counter()
    for _ in range(3000):
        data = bytearray(rnd.choice(originals))
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(len(data) or 1)
            kind = rnd.random()
            if kind < 0.5:
                data[at:at + 1] = bytes([rnd.randrange(256)])
            elif kind < 0.7:
                del data[at:at + rnd.randint(1, 16)]
            elif kind < 0.9:
                data[at:at] = rnd.randbytes(rnd.randint(1, 8))
            else:
                del data[at:]
        try:
            decode(bytes(data))
            outcomes["accepted"] += 1
        except FrameError as exc:
            outcomes[exc.code] += 1
    assert sum(outcomes.values()) == 3000 and len(outcomes) > 5


@pytest.mark.parametrize(
    "changes, code",
    [
        (dict(t0=10**400), "bad_timestamp"),
        (dict(duration_s=10**400), "bad_duration"),
        (dict(seq=10**30), "bad_seq"),
        (dict(imu={"rate_hz": 10**400, "acc": [[0, 0, 9.8]] * 50}), "bad_rate"),
    ],
)
def test_numbers_beyond_float_range(changes, code):
    with pytest.raises(FrameError) as info:
        decode(json_doc(**changes))
    assert info.value.code == code


def test_absurdly_deep_json():
    with pytest.raises(FrameError) as info:
        decode(b'{"imu": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert info.value.code == "bad_json" and "too deeply" in info.value.reason
