"""Property-based fuzzing of the frame contract, the codec and the truth header (Hypothesis).

Whatever bytes arrive, `decode` returns a valid Frame or raises FrameError with a reason and a code:
no other exception escapes, so no payload can crash the gate or a worker. Bounded for CI: a few
hundred examples per property, a few seconds each on the 2-core machine.
"""

from __future__ import annotations

import json

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.codec import Truth, decode, encode, truth_for_frame
from ingest.frame import PLACEMENTS, Frame, FrameError, FrameLimits, ImuStream

NOW = 1_764_000_000.0
LIMITS = FrameLimits(max_frame_bytes=1_000_000, max_future_skew_s=86_400)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=30)
msgpack_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=True) \
    | st.text(max_size=20) | st.binary(max_size=64)  # what msgpack can carry
msgpack_values = st.recursive(msgpack_scalars,
                              lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                              max_leaves=30)


def refused_or_valid(data: bytes) -> Frame | FrameError:
    """decode's outcome; any exception other than FrameError fails the property."""
    try:
        return decode(data, LIMITS)
    except FrameError as exc:
        assert exc.reason and exc.code, f"refusal without a reason for {data[:60]!r}"
        return exc


@st.composite
def frames(draw) -> Frame:
    rate = draw(st.sampled_from([10.0, 25.0, 50.0, 100.0]))
    seconds = draw(st.sampled_from([0.5, 1.0, 2.0]))
    n = int(rate * seconds)
    finite = st.floats(-150.0, 150.0, width=32)
    acc = np.asarray(draw(st.lists(st.tuples(finite, finite, finite), min_size=n, max_size=n)), np.float32)
    return Frame(device_id=draw(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z")), seq=draw(st.integers(0, 2**40)),
                 t0=NOW + draw(st.floats(0, 1000)), duration_s=seconds, placement=draw(st.sampled_from(PLACEMENTS)),
                 imu=ImuStream(rate, acc))


@FUZZ
@given(json_values)
def test_any_json_document_is_a_frame_or_a_reason(doc):
    refused_or_valid(json.dumps(doc).encode())


@FUZZ
@given(msgpack_values)
def test_any_msgpack_document_is_a_frame_or_a_reason(doc):
    refused_or_valid(msgpack.packb(doc, use_bin_type=True))


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_are_a_frame_or_a_reason(data):
    refused_or_valid(data)


@FUZZ
@given(frames(), st.sampled_from(["json", "msgpack"]), st.data())
def test_a_valid_frame_damaged_anywhere_is_a_frame_or_a_reason(frame, fmt, data):
    raw = bytearray(encode(frame, fmt))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del raw[at:]
            if not raw:
                break
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    refused_or_valid(bytes(raw))


@FUZZ
@given(frames(), st.sampled_from(["device_id", "seq", "t0", "duration_s", "placement", "imu", "schema_version"]),
       msgpack_values)
def test_any_field_replaced_by_anything_is_a_frame_or_a_reason(frame, name, value):
    doc = msgpack.unpackb(encode(frame, "msgpack"), raw=False)
    doc[name] = value
    refused_or_valid(msgpack.packb(doc, use_bin_type=True))


@FUZZ
@given(frames(), st.sampled_from(["json", "msgpack"]))
def test_valid_frames_round_trip(frame, fmt):
    back = decode(encode(frame, fmt), LIMITS)
    assert (back.device_id, back.seq, back.t0, back.placement) == (frame.device_id, frame.seq, frame.t0, frame.placement)
    assert np.array_equal(back.imu.acc, frame.imu.acc)


@FUZZ
@given(frames(), json_values | st.fixed_dictionaries({"labels": json_values, "dataset": json_values}))
def test_any_truth_header_is_checked_or_refused_with_a_reason(frame, doc):
    try:
        truth = truth_for_frame(json.dumps(doc).encode(), frame)
    except FrameError as exc:
        assert exc.code == "bad_truth" and exc.reason
        return
    assert truth.labels.ndim == 1 and len(truth.labels) == frame.imu.n_samples


@FUZZ
@given(st.binary(max_size=512))
def test_truth_header_bytes_never_raise_anything_else(data):
    try:
        Truth.from_header(data)
    except FrameError as exc:
        assert exc.code == "bad_truth"
