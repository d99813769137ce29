"""`iotlm bench encoder`'s measurement: the ONNX Runtime copy of the encoder answers as torch does,
and every figure the issue asks for is reported (speeds themselves are not asserted: benchmarks/)."""

from __future__ import annotations


def test_the_onnx_runtime_encoder_matches_torch_and_every_figure_is_reported():
    from benchmarks.bench_encoder import TOLERANCE, run

    result = run(batch_size=16, repeats=1, threads=1, windows_per_run=64)
    assert result["outputs_match"] and result["max_probability_difference"] <= TOLERANCE
    for key in ("batched_windows_per_s", "single_windows_per_s", "ratio", "batch_size", "device",
                "onnxruntime_windows_per_s", "flops_per_window"):
        assert key in result
    assert result["batch_size"] == 16 and result["device"] == "cpu"
    # 4 transformer layers over 16 tokens of width 128 cost far more than the fused kernel's count
    assert result["flops_per_window"] > 10_000_000
    assert result["single_windows_per_s"] > 0 and result["onnxruntime_windows_per_s"] > 0


def test_a_checkpoint_with_a_fused_svm_is_timed_with_and_without_it():
    from benchmarks.bench_encoder import run

    result = run("motion-v1-hapt", batch_size=16, repeats=1, threads=1, windows_per_run=32)
    assert result["outputs_match"] and result["fused_windows_per_s"] > 0 and result["encoder_vs_fused"] > 0
    assert run(batch_size=16, repeats=1, threads=1, windows_per_run=32)["fused_windows_per_s"] is None
