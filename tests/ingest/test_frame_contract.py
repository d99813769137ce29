"""Frame contract v1: what a valid frame is, and the reason given for each way of breaking it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ingest.frame import EnvStream, Frame, FrameError, FrameLimits, ImuStream, SensorStream

NOW = 1_764_000_000.0  # a fixed 2025 instant keeps messages reproducible


def imu(n=50, rate=50.0, gyro=True, seed=0):
    rng = np.random.default_rng(seed)
    return ImuStream(rate, rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) if gyro else None)


def frame(**overrides):
    fields = dict(device_id="dev-1", seq=0, t0=NOW, duration_s=1.0, placement="wrist", imu=imu())
    return Frame(**(fields | overrides))


def reason_of(build) -> FrameError:
    with pytest.raises(FrameError) as info:
        build()
    return info.value


class TestValidFrames:
    def test_arrays_become_read_only_float32(self):
        f = frame()
        assert f.imu.acc.dtype == np.float32 and f.imu.acc.shape == (50, 3)
        with pytest.raises(ValueError):
            f.imu.acc[0, 0] = 1.0

    def test_streams_with_own_rates_share_one_frame(self):
        f = frame(
            duration_s=2.0,
            imu=imu(n=100),
            env=EnvStream(0.5, {"co2": [412.0], "temperature": [21.5], "pir": [1]}),
            streams=(SensorStream("ppg", 64, {"bvp": np.zeros(128)}, {"bvp": "a.u."}),),
        )
        assert [type(s).__name__ for s in f.all_streams()] == ["ImuStream", "EnvStream", "SensorStream"]
        assert f.env.units == {"co2": "ppm", "temperature": "C", "pir": "0/1"}

    def test_slow_sensor_may_hold_floor_or_ceil_of_rate_times_duration(self):
        for n in (0, 1):  # 0.2 Hz over 1 s: 0.2 samples, so either count is honest
            frame(env=EnvStream(0.2, {"co2": np.full(n, 400.0)}))


class TestInvalidFrames:
    def test_nan_names_stream_sample_and_axis(self):
        acc = np.ones((50, 3))
        acc[17, 1] = np.nan
        err = reason_of(lambda: ImuStream(50, acc))
        assert (err.code, err.reason) == ("non_finite", "imu.acc has NaN at sample 17, axis y")

    def test_inf_in_env_channel(self):
        err = reason_of(lambda: EnvStream(1, {"co2": [400, np.inf, -np.inf]}))
        assert err.code == "non_finite" and "env.co2 has +inf at sample 1 (2 non-finite" in err.reason

    def test_length_against_rate_and_duration(self):
        err = reason_of(lambda: frame(imu=imu(n=49)))
        assert err.code == "length_mismatch"
        assert err.reason == "imu has 49 samples but 50 Hz x 1 s needs 50"

    def test_length_between_channels(self):
        err = reason_of(lambda: ImuStream(50, np.zeros((50, 3)), np.zeros((48, 3))))
        assert err.code == "length_mismatch" and "imu.gyro has 48 samples but imu.acc has 50" in err.reason

    def test_wrong_shape(self):
        err = reason_of(lambda: ImuStream(50, np.zeros((50, 2))))
        assert err.code == "shape" and "imu.acc must have shape (n, 3)" in err.reason

    @pytest.mark.parametrize("rate", [0, -50, float("nan"), float("inf")])
    def test_bad_rate(self, rate):
        assert reason_of(lambda: ImuStream(rate, np.zeros((50, 3)))).code == "bad_rate"

    def test_text_in_samples(self):
        err = reason_of(lambda: EnvStream(1, {"co2": ["400"]}))
        assert err.code == "wrong_type" and "env.co2 must hold numbers" in err.reason

    def test_unknown_placement_lists_the_known_ones(self):
        err = reason_of(lambda: frame(placement="forehead"))
        assert err.code == "unknown_placement" and "wrist, waist" in err.reason

    def test_unknown_schema_version(self):
        assert reason_of(lambda: frame(schema_version=2)).code == "schema_version"

    @pytest.mark.parametrize("t0", [0.0, NOW * 1000, float("nan")])
    def test_absurd_timestamps(self, t0):
        assert reason_of(lambda: frame(t0=t0)).code == "bad_timestamp"

    def test_future_timestamp_needs_the_clock_limit(self):
        f = frame(t0=time.time() + 3 * 86_400)
        err = reason_of(lambda: FrameLimits(max_future_skew_s=86_400).check_clock(f))
        assert err.code == "bad_timestamp" and "in the future" in err.reason

    def test_frame_without_modality(self):
        assert reason_of(lambda: frame(imu=None)).code == "no_modality"

    def test_unknown_env_channel_points_to_streams(self):
        err = reason_of(lambda: EnvStream(1, {"radon": [3.0]}))
        assert err.code == "unknown_channel" and "named stream" in err.reason

    @pytest.mark.parametrize("seq", [-1, True, 1.5])
    def test_bad_seq(self, seq):
        assert reason_of(lambda: frame(seq=seq)).code == "bad_seq"

    @pytest.mark.parametrize("device_id", ["", "a b", 7, "x" * 200])
    def test_bad_device_id(self, device_id):
        assert reason_of(lambda: frame(device_id=device_id)).code == "bad_device_id"

    def test_oversized_payload(self):
        err = reason_of(lambda: FrameLimits(max_frame_bytes=1000).check_size(10_485_760))
        assert err.code == "oversized" and "10,485,760 bytes" in err.reason


class TestPhysicalBounds:
    def test_an_accelerometer_reading_past_any_sensor_is_refused_with_where(self):
        acc = np.zeros((50, 3))
        acc[17, 1] = 3.0e38
        err = reason_of(lambda: ImuStream(50, acc))
        assert err.code == "out_of_range" and "imu.acc reads 3e+38 at sample 17, axis y" in err.reason

    def test_a_high_g_impact_is_still_a_reading(self):
        acc = np.zeros((50, 3))
        acc[3] = [0, 0, 1500.0]  # about 150 g: a hard fall on a high-g sensor
        assert ImuStream(50, acc).acc[3, 2] == 1500.0

    @pytest.mark.parametrize("channel, value", [("co2", -5.0), ("humidity", 130.0), ("pir", 2.0), ("pressure", 5.0)])
    def test_room_channels_outside_their_physics_are_refused(self, channel, value):
        assert reason_of(lambda: EnvStream(1, {channel: [value]})).code == "out_of_range"

    @pytest.mark.parametrize("rate", [0.001, 2.0, 5000.0])
    def test_imu_rates_no_motion_model_can_serve_are_refused(self, rate):
        err = reason_of(lambda: ImuStream(rate, np.zeros((max(1, int(rate)), 3))))
        assert err.code == "bad_rate" and "for this modality" in err.reason

    def test_a_room_sensor_reporting_every_ten_minutes_is_fine(self):
        assert EnvStream(1 / 600, {"co2": [612.0]}).rate_hz == pytest.approx(1 / 600)


class TestTruthHeader:
    @pytest.mark.parametrize("doc, says", [
        ({"labels": [[1, 2], [3]], "dataset": "hapt"}, "labels must be integers"),
        ({"labels": [1, 40000], "dataset": "hapt"}, "labels must be integers in [-1, 32767]"),
        ({"labels": [1, 2], "dataset": ["hapt"]}, "needs dataset"),
        ({"labels": [1], "dataset": "hapt", "names": {"1": ["x"]}}, "names must map"),
        ([1, 2, 3], "must be a JSON object"),
    ])
    def test_a_bad_truth_header_is_refused_with_a_reason(self, doc, says):
        from ingest.codec import Truth

        err = reason_of(lambda: Truth.from_header(json.dumps(doc).encode()))
        assert err.code == "bad_truth" and says in err.reason
