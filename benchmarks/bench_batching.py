"""Batched vs one-window-at-a-time inference with the served model (MotionClassifier) on this machine.

    python -m benchmarks.bench_batching [--windows 512] [--threads 1]

Windows are cut from HAPT test subjects, resampled to the model's rate exactly as the workers do.
Writes benchmarks/results/batching.json with the machine description.
"""

from __future__ import annotations

import argparse
import time

BATCH_SIZES = (1, 8, 32, 128, 256)


def hapt_windows(n: int, rate_hz: float, workers) -> list:
    """`n` windows of HAPT test subjects, cut by the assembler the workers run (`workers`: WorkerSettings)."""
    from ingest.simulate import hapt_devices
    from stream_workers.app import segment_from_frame
    from stream_workers.windows import WindowAssembler

    assembler = WindowAssembler.from_settings(workers, rate_hz)
    windows = []
    for device_id, signal in hapt_devices(9):
        seq = 0
        while len(windows) < n and (cut := signal.frame(device_id, seq, 1_700_000_000.0 + seq, 1.0)) is not None:
            frame, truth = cut
            windows += assembler.add(segment_from_frame(frame, truth.labels, 0, seq, 0.0)).windows
            seq += 1
    return windows[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from benchmarks.machine import write_result
    from iotlm.settings import Settings
    from models.inference import MotionClassifier
    from stream_workers.inference import WindowClassifier

    torch.set_num_threads(args.threads)
    console = Console()
    settings = Settings()
    model = MotionClassifier.load(settings.models.default_model, device=settings.models.device,
                                  checkpoint_dir=settings.models.checkpoint_dir)
    classify = WindowClassifier(model, settings.workers.labels)
    windows = hapt_windows(args.windows, model.rate_hz, settings.workers)
    classify(windows[:8])  # warm-up: first call allocates
    rows = {}
    with console.status("timing") as status:
        for size in BATCH_SIZES:
            status.update(f"batch size {size}")
            started = time.perf_counter()
            for i in range(0, len(windows), size):
                classify(windows[i:i + size])
            seconds = time.perf_counter() - started
            rows[size] = {"windows_per_s": len(windows) / seconds, "ms_per_window": 1000 * seconds / len(windows)}
            console.print(f"batch {size:4d}: {rows[size]['windows_per_s']:8.1f} windows/s")
    ratio = rows[max(BATCH_SIZES)]["windows_per_s"] / rows[1]["windows_per_s"]
    path = write_result("batching", {
        "model_version": model.version, "device": model.device, "torch_threads": args.threads,
        "windows": len(windows), "by_batch_size": rows, "batched_over_single": ratio,
    })
    console.print(f"batched ({max(BATCH_SIZES)}) / one at a time: x{ratio:.1f}  -> {path}")


if __name__ == "__main__":
    main()
