"""The motion encoder's CPU inference, the product's path against the same model in ONNX Runtime.

    iotlm bench encoder [--model motion-v1] [--batch-size 256] [--repeats 5] [--threads 2] [--json]

Windows are 2.56 s of HAPT test-subject data at 50 Hz (acc + gyro), scored against the six HAPT labels
along the workers' whole path (`MotionClassifier.predict_proba`: resampling, masking, encoder,
text-space scoring). The ONNX Runtime variant swaps only the encoder's forward pass (the same weights,
exported by torch.onnx with a dynamic batch) and checks that its probabilities match torch's within
`TOLERANCE`. Single = one window per call; batched = `--batch-size` windows per call (the workers'
`batch_max`). A checkpoint with a fused feature SVM (`--model motion-v1-hapt`, models/fusion.py) is also timed
with it ("fused", batched): the encoder rows then leave the SVM out. Every figure is the median of `--repeats` runs, interleaved engine by engine so the
machine's noise falls on both alike, with the spread (min-max). FLOPs per window come from torch's
FLOP counter; the machine's peak is cores x clock x FLOPs per cycle of its vector units (AVX-512:
64 fp32 FLOPs per cycle, AVX2 with FMA: 32, else 8), an upper bound no real code reaches.
Writes benchmarks/results/encoder.json and appends a section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # largest absolute difference in any probability, ONNX Runtime vs torch


class OnnxEncoder:
    """The classifier's encoder as an ONNX Runtime session: `embed` with torch's signature."""

    INPUTS = ("signal", "mask", "has_gyro", "placement")

    def __init__(self, classifier, threads: int):
        import onnxruntime as ort
        import torch

        model = classifier.model.eval()

        class Embed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, signal, mask, has_gyro, placement):
                return self.model.embed(signal, mask, has_gyro, placement)

        n = model.encoder.config.n_samples
        example = (torch.zeros(4, n, 6), torch.ones(4, n, dtype=torch.bool), torch.ones(4, dtype=torch.bool),
                   torch.zeros(4, dtype=torch.long))
        path = Path(tempfile.mkdtemp(prefix="iotlm-onnx-")) / "encoder.onnx"
        batch = torch.export.Dim("batch", min=1, max=65536)
        # torch.export's exporter: the legacy TorchScript one got this encoder wrong (probabilities off by
        # up to 0.28, measured), this one matches torch to 1e-7
        torch.onnx.export(Embed().eval(), example, str(path), dynamo=True, input_names=list(self.INPUTS),
                          output_names=["motion_unit"], dynamic_shapes=tuple({0: batch} for _ in self.INPUTS))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, signal, mask, has_gyro, placement):
        import torch

        arrays = (signal, mask, has_gyro, placement)
        out = self.session.run(None, {name: a.numpy() for name, a in zip(self.INPUTS, arrays)})[0]
        return torch.from_numpy(out)


def peak_flops(cores: int) -> tuple[float | None, str]:
    """(FLOP/s, how it was estimated) from /proc/cpuinfo; None where the clock is not known."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    mhz = [float(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    per_cycle, unit = ((64, "AVX-512") if "avx512f" in flags else (32, "AVX2+FMA") if "avx2" in flags and "fma" in flags
                       else (8, "SSE"))
    if not mhz:
        return None, unit
    return cores * max(mhz) * 1e6 * per_cycle, f"{cores} cores x {max(mhz):.0f} MHz x {per_cycle} fp32 FLOP/cycle ({unit})"


def flops_per_window(classifier) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    config = classifier.model.encoder.config
    n = config.n_samples
    inputs = (torch.zeros(1, n, 6), torch.ones(1, n, dtype=torch.bool), torch.ones(1, dtype=torch.bool),
              torch.zeros(1, dtype=torch.long))
    # the counter sees aten ops; inference's fused transformer kernel would hide its matmuls from it
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            classifier.model.embed(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def run(model: str | None = None, batch_size: int = 256, repeats: int = 5, threads: int = 2,
        windows_per_run: int = 2048, progress=None) -> dict:
    import torch

    from models.datasets import HAPT_TEST_SUBJECTS, hapt_windows
    from models.inference import MotionClassifier

    torch.set_num_threads(threads)
    classifier = MotionClassifier.load(model, device="cpu")
    data = hapt_windows(HAPT_TEST_SUBJECTS)
    index = np.resize(np.arange(len(data)), windows_per_run)
    acc, gyro, labels = data.acc[index], data.gyro[index], list(data.labels)
    onnx = OnnxEncoder(classifier, threads)
    torch_embed, fusion = classifier.model.embed, classifier.fusion

    def use(engine: str) -> None:
        classifier.model.embed = onnx if engine == "onnxruntime" else torch_embed
        classifier.fusion = fusion if engine == "fused" else None

    def probabilities(engine: str, n: int) -> np.ndarray:
        use(engine)
        return classifier.predict_proba(acc[:n], gyro[:n], 50.0, labels)

    difference = float(np.abs(probabilities("torch", 512) - probabilities("onnxruntime", 512)).max())
    cases = [("torch", batch_size), ("torch", 1), ("onnxruntime", batch_size), ("onnxruntime", 1)]
    if fusion is not None:
        cases.append(("fused", batch_size))
    rates: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    for repeat in range(repeats):
        for engine, size in cases:
            use(engine)
            n = windows_per_run if size > 1 else max(64, windows_per_run // 16)  # one at a time is slow
            classifier.predict_proba(acc[:size], gyro[:size], 50.0, labels)  # warm-up at this shape
            started = time.perf_counter()
            for start in range(0, n, size):
                classifier.predict_proba(acc[start:start + size], gyro[start:start + size], 50.0, labels)
            rates[(engine, size)].append(n / (time.perf_counter() - started))
            if progress:
                progress(repeat, engine, size)
    use("fused" if fusion is not None else "torch")
    median = {case: statistics.median(values) for case, values in rates.items()}
    flops = flops_per_window(classifier)
    peak, peak_how = peak_flops(threads)
    batched = median[("torch", batch_size)]
    return {
        "model_version": classifier.version,
        "device": "cpu",
        "threads": threads,
        "batch_size": batch_size,
        "repeats": repeats,
        "batched_windows_per_s": round(batched, 1),
        "single_windows_per_s": round(median[("torch", 1)], 1),
        "ratio": round(batched / median[("torch", 1)], 2),
        "onnxruntime_windows_per_s": round(median[("onnxruntime", batch_size)], 1),
        "onnxruntime_single_windows_per_s": round(median[("onnxruntime", 1)], 1),
        "torch_vs_onnxruntime": round(batched / median[("onnxruntime", batch_size)], 2),
        "fused_windows_per_s": round(median[("fused", batch_size)], 1) if fusion is not None else None,
        "encoder_vs_fused": round(batched / median[("fused", batch_size)], 2) if fusion is not None else None,
        "spread_windows_per_s": {f"{engine}@{size}": [round(min(v), 1), round(max(v), 1)]
                                 for (engine, size), v in rates.items()},
        "max_probability_difference": difference,
        "outputs_match": difference <= TOLERANCE,
        "flops_per_window": flops,
        "achieved_gflops": round(batched * flops / 1e9, 2),
        "peak_gflops": round(peak / 1e9, 1) if peak else None,
        "peak_estimate": peak_how,
        "share_of_peak": round(batched * flops / peak, 4) if peak else None,
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "peak_rss_mib": _peak_rss_mib(),  # ru_maxrss: the high-water mark so far
        "versions": _versions(),
    }


def _peak_rss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _versions() -> dict:
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
