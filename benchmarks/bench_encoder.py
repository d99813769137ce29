"""CPU inference throughput of the motion encoder (MotionClassifier.predict_proba), windows per second.

    python -m benchmarks.bench_encoder [--model motion-v1] [--windows 2048] [--threads 1 2]

Windows are 2.56 s of HAPT test-subject data at 50 Hz (acc + gyro), scored against the six HAPT
labels, the whole path included (resampling, encoder, text-space scoring). Writes
benchmarks/results/encoder.json with the machine description.
"""

from __future__ import annotations

import argparse
import time

BATCH_SIZES = (1, 32, 256, 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint name or directory (default: settings)")
    parser.add_argument("--windows", type=int, default=2048)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import numpy as np
    import torch
    from rich.console import Console
    from tqdm import tqdm

    from benchmarks.machine import write_result
    from models.datasets import HAPT_TEST_SUBJECTS, hapt_windows
    from models.inference import MotionClassifier

    console = Console()
    classifier = MotionClassifier.load(args.model, device="cpu")
    windows = hapt_windows(HAPT_TEST_SUBJECTS)
    index = np.resize(np.arange(len(windows)), args.windows)
    acc, gyro = windows.acc[index], windows.gyro[index]
    classifier.predict_proba(acc[:8], gyro[:8], 50.0, windows.labels)  # warm-up
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in tqdm(BATCH_SIZES, desc=f"{threads} thread(s)"):
            n = min(args.windows, max(size * 4, 256))
            started = time.perf_counter()
            for start in range(0, n, size):
                classifier.predict_proba(acc[start : start + size], gyro[start : start + size], 50.0, windows.labels)
            seconds = time.perf_counter() - started
            rows.append({"threads": threads, "batch_size": size, "windows": n, "windows_per_s": round(n / seconds, 1),
                         "ms_per_batch": round(1000 * seconds / int(np.ceil(n / size)), 2)})
            console.print(f"threads {threads} batch {size:5d}: {n / seconds:8.1f} windows/s")
    n_params = sum(p.numel() for p in classifier.model.parameters())
    path = write_result("encoder", {
        "model_version": classifier.version, "parameters": n_params,
        "note": "shared 2-core machine; other processes were running, so these are lower bounds",
        "rows": rows,
    })
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
