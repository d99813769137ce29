"""Pipeline windows/s vs encoder-only windows/s, and end-to-end latency, on this machine.

    python -m benchmarks.bench_pipeline [--devices 20] [--duration 60] [--latency-speed 2] [--threads 1]

- encoder only: the worker's classifier on ready windows in batches of settings.workers.batch_max;
- pipeline, throughput: a replay sent as fast as possible through Kafka, two workers, PostgreSQL and
  Redis (`iotlm demo` at speed 0): results written per second, first to last;
- pipeline, latency: the same at `--latency-speed` (event time that many times real time), so frames
  arrive as devices would send them: p50/p99 from a frame reaching Kafka to its window's row written.
Uses private topics and consumer groups. Needs the stack (started if down). Writes
benchmarks/results/pipeline.json with the machine description.
"""

from __future__ import annotations

import argparse
import time
import uuid


def private(settings, tag: str):
    return settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"bench.{tag}.frames", "dlq_topic": f"bench.{tag}.dlq",
            "alerts_topic": f"bench.{tag}.alerts", "control_topic": f"bench.{tag}.control",
        }),
        "workers": settings.workers.model_copy(update={"consumer_group": f"bench-{tag}",
                                                       "model_key": f"bench:{tag}:model"}),
    })


def drop_topics(settings) -> None:
    from kafka import KafkaAdminClient

    from deploy.topics import topic_partitions

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="iotlm-bench-cleanup")
    try:
        admin.delete_topics(list(topic_partitions(settings)))
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--latency-speed", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from benchmarks.bench_batching import hapt_windows
    from benchmarks.machine import write_result
    from iotlm.settings import Settings
    from models.inference import MotionClassifier
    from stream_workers.demo import run_demo
    from stream_workers.inference import WindowClassifier

    torch.set_num_threads(args.threads)
    console = Console()
    settings = Settings()
    w = settings.workers
    model = MotionClassifier.load(settings.models.default_model, device=settings.models.device,
                                  checkpoint_dir=settings.models.checkpoint_dir)
    windows = hapt_windows(1024, model.rate_hz, w.window_s, w.hop_s, w.labels)
    classify = WindowClassifier(model, w.labels)
    classify(windows[:8])
    started = time.perf_counter()
    for i in range(0, len(windows), w.batch_max):
        classify(windows[i:i + w.batch_max])
    encoder_only = len(windows) / (time.perf_counter() - started)
    console.print(f"encoder only: {encoder_only:.1f} windows/s")

    hop = w.hop_s
    runs = {}
    for name, speed in (("throughput", 0.0), ("latency", args.latency_speed)):
        console.rule(f"pipeline, {name} (speed {speed:g})")
        start = (time.time() - 3600 if speed == 0 else time.time()) // hop * hop
        run_settings = private(settings, uuid.uuid4().hex[:8])
        try:
            report = run_demo(run_settings, duration_s=args.duration, devices=args.devices, speed=speed,
                              workers=2, console=console, start_time=start)
        finally:
            drop_topics(run_settings)
        runs[name] = report.to_dict() | {"speed": speed}
        console.print(runs[name])
    result = {
        "model_version": model.version, "torch_threads": args.threads, "devices": args.devices,
        "duration_s": args.duration, "batch_max": w.batch_max, "batch_wait_ms": w.batch_wait_ms,
        "encoder_only_windows_per_s": encoder_only,
        "pipeline_windows_per_s": runs["throughput"]["windows_per_s"],
        "pipeline_over_encoder": runs["throughput"]["windows_per_s"] / encoder_only,
        "latency_p50_s": runs["latency"]["latency_p50_s"], "latency_p99_s": runs["latency"]["latency_p99_s"],
        "runs": runs,
    }
    path = write_result("pipeline", result)
    console.print(f"pipeline {result['pipeline_windows_per_s']:.1f} windows/s vs encoder only "
                  f"{encoder_only:.1f}; latency p50 {result['latency_p50_s']:.2f} s, "
                  f"p99 {result['latency_p99_s']:.2f} s -> {path}")


if __name__ == "__main__":
    main()
