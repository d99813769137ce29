"""The pipeline benchmark's own bookkeeping: a small real run through a real `iotlm worker` process, and
how it names the stage that saturates."""

from __future__ import annotations

import pytest

from benchmarks.bench_pipeline import FRAME_S, build_load, keeping_up, run_load, saturated_stage


def _result(**changes) -> dict:
    base = {"lost": 0, "latency_p99_s": 0.3, "producer_late_s": 0.1, "windows_per_s": 99.0,
            "offered_windows_per_s": 100.0,
            "cpu_cores_used": {"broker": 0.1, "postgres": 0.05, "redis": 0.01, "workers": 0.9, "producer": 0.1},
            "worker_cpu_s": {"decode_assemble": 10.0, "inference": 5.0, "sink": 30.0, "other": 0.0}}
    return base | changes


class TestSaturatedStage:
    def test_a_path_that_keeps_up_names_no_stage(self):
        assert keeping_up(_result())
        assert saturated_stage(_result()) == "none"

    def test_storing_fewer_windows_per_second_than_offered_is_saturation(self):
        assert not keeping_up(_result(windows_per_s=80.0))

    def test_one_burst_short_of_the_rate_is_within_the_steady_rates_resolution(self):
        # 12 devices, a span of three hops: the span counts 2 bursts (6.25/s); one burst late leaves 1
        short = _result(offered_windows_per_s=6.0, windows_per_s=3.125, windows_per_s_resolution=3.125)
        assert keeping_up(short)
        assert not keeping_up(short | {"windows_per_s": 0.0})

    def test_a_lost_window_is_never_keeping_up(self):
        assert not keeping_up(_result(lost=1))

    def test_a_producer_behind_its_schedule_is_the_limit_when_that_is_most_of_the_latency(self):
        assert saturated_stage(_result(windows_per_s=60.0, latency_p99_s=9.0, producer_late_s=6.0)) == "producer"
        # a producer a little late behind workers 40 s behind: the workers are the limit
        assert saturated_stage(_result(windows_per_s=60.0, latency_p99_s=40.0, producer_late_s=3.0)) == "worker sink"

    def test_otherwise_the_busiest_component_with_the_workers_split_by_stage_cpu(self):
        late = _result(windows_per_s=60.0, latency_p99_s=9.0)
        assert saturated_stage(late) == "worker sink"  # 0.9 cores x 30/45 of the workers' stage CPU
        broker_bound = late | {"cpu_cores_used": late["cpu_cores_used"] | {"broker": 0.7}}
        assert saturated_stage(broker_bound) == "broker"


@pytest.mark.services
def test_a_small_real_run_stores_every_expected_window_once(settings, stack, tmp_path):
    """12 HAPT devices for 8 s through one worker process: the windows the offline assembler expects
    are the windows stored, once each, with latencies measured from each window's last frame."""
    load = build_load(settings, devices=12, duration_s=8, rate_hz=25.0)
    assert load.n_frames == 12 * 8 and len(load.frames) == int(8 / FRAME_S)
    result = run_load(settings, load, workers=1, logs_dir=tmp_path)
    assert result["windows_expected"] >= 12 * 4  # 8 s of 2.56 s windows every 1.28 s: at least 4 per device
    assert (result["windows_stored"], result["lost"], result["unexpected"], result["duplicates"]) == (
        result["windows_expected"], 0, 0, 0)
    assert result["raw_frame_rows"] == load.n_frames
    assert 0 < result["latency_p50_s"] <= result["latency_p99_s"] <= result["latency_max_s"] < 60
    assert result["dead_lettered"] == 0
    assert all(result["worker_cpu_s"][stage] > 0 for stage in ("decode_assemble", "inference", "sink")) and result["cpu_cores_used"]["workers"] > 0
    assert result["saturated_stage"] == "none"  # 12 devices are far below what one worker sustains
