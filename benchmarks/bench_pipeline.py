"""Pipeline windows/s vs encoder-only windows/s, and end-to-end latency, on this machine.

    python -m benchmarks.bench_pipeline [--devices 20] [--duration 60] [--latency-speed 2] [--threads 1]
                                        [--workers 2] [--engines faust,aiokafka]

- encoder only: the worker's classifier on ready windows in batches of settings.workers.batch_max;
- pipeline, throughput: a replay sent as fast as possible through Kafka, two workers, PostgreSQL and
  Redis (`iotlm demo` at speed 0), windows/s two ways:
  `windows_per_s` = results written per second from the first write to the last (the steady rate);
  `windows_per_wall_s` = windows over the run's wall time (workers joining the group, replay, and the
  demo's 3 s of quiet before it calls the stream done: what a user waits for);
- pipeline, latency: the same at `--latency-speed` (event time that many times real time), so frames
  arrive as devices would send them: p50/p99 from a frame reaching Kafka to its window's row written.
Each engine (`settings.workers.engine`) is measured in the same run, one after the other, so the Faust
app and the plain aiokafka consumer it replaced are compared on the same machine state.
Each run gets private topics, consumer group and PostgreSQL database (created, migrated, dropped), so
row counts are this run's alone. Needs the stack (started if down). Writes
benchmarks/results/pipeline.json with the machine description.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid

from iotlm.credentials import postgres_connect_kwargs


def private(settings, tag: str):
    """`settings` with this run's own topics, consumer group and database (on the PostgreSQL lane)."""
    return settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"bench.{tag}.frames", "dlq_topic": f"bench.{tag}.dlq",
            "alerts_topic": f"bench.{tag}.alerts", "control_topic": f"bench.{tag}.control",
        }),
        "workers": settings.workers.model_copy(update={"consumer_group": f"bench-{tag}",
                                                       "model_key": f"bench:{tag}:model"}),
        "stack": settings.stack.model_copy(update={"postgres_db": f"iotlm_bench_{tag}"}),
        "storage": settings.storage.model_copy(update={"lane": "postgresql"}),
    })


@contextlib.contextmanager
def private_run(settings):
    """A private copy of `settings` (see `private`) whose database exists and is migrated; its
    database and topics are dropped on exit. `settings`' own database must exist (the stack is up)."""
    import psycopg

    from storage.migrate import upgrade

    run_settings = private(settings, uuid.uuid4().hex[:8])
    db = run_settings.stack.postgres_db
    with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        upgrade(run_settings.database_url)
        yield run_settings
    finally:
        with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        drop_topics(run_settings)


def drop_topics(settings) -> None:
    from kafka.errors import UnknownTopicOrPartitionError

    from deploy.topics import admin_client, topic_partitions

    admin = admin_client(settings, client_id="iotlm-bench-cleanup")
    try:
        admin.delete_topics(list(topic_partitions(settings)))
    except UnknownTopicOrPartitionError:
        pass  # the run failed before creating them
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--latency-speed", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="workers in the group (1: no rebalance mid-run)")
    parser.add_argument("--engines", default="faust,aiokafka",
                        help="stream engines to measure side by side (settings.workers.engine), the first reported")
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from benchmarks.bench_batching import hapt_windows
    from benchmarks.machine import write_result
    from deploy.stack import Stack
    from iotlm.settings import Settings
    from models.inference import MotionClassifier
    from iotlm.demo import run_demo
    from stream_workers.inference import WindowClassifier

    torch.set_num_threads(args.threads)
    console = Console()
    settings = Settings()
    w = settings.workers
    model = MotionClassifier.load(settings.models.default_model, device=settings.models.device,
                                  checkpoint_dir=settings.models.checkpoint_dir)
    windows = hapt_windows(1024, model.rate_hz, w)
    classify = WindowClassifier(model, w.labels)
    classify(windows[:8])
    started = time.perf_counter()
    for i in range(0, len(windows), w.batch_max):
        classify(windows[i:i + w.batch_max])
    encoder_only = len(windows) / (time.perf_counter() - started)
    console.print(f"encoder only: {encoder_only:.1f} windows/s")

    hop = w.hop_s
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    per_engine = {}
    Stack(settings).up()  # the shared database must be there to create each run's own beside it
    for engine in engines:
        engine_settings = settings.model_copy(update={"workers": w.model_copy(update={"engine": engine})})
        runs = {}
        for name, speed in (("throughput", 0.0), ("latency", args.latency_speed)):
            console.rule(f"{engine}: pipeline, {name} (speed {speed:g})")
            start = (time.time() - 3600 if speed == 0 else time.time()) // hop * hop
            with private_run(engine_settings) as run_settings:
                report = run_demo(run_settings, duration_s=args.duration, devices=args.devices, speed=speed,
                                  workers=args.workers, console=console, start_time=start)
            runs[name] = report.to_dict() | {"speed": speed, "windows_per_wall_s": report.windows / report.wall_s}
            console.print(runs[name])
        per_engine[engine] = {
            "stream_engine": runs["throughput"]["stream_engine"],
            "pipeline_windows_per_s": runs["throughput"]["windows_per_s"],  # first write to last
            "pipeline_windows_per_wall_s": runs["throughput"]["windows_per_wall_s"],  # windows / wall time
            "pipeline_over_encoder": runs["throughput"]["windows_per_s"] / encoder_only,
            "latency_p50_s": runs["latency"]["latency_p50_s"], "latency_p99_s": runs["latency"]["latency_p99_s"],
            "runs": runs,
        }
    main_engine = engines[0]
    result = {
        "model_version": model.version, "torch_threads": args.threads, "devices": args.devices, "workers": args.workers,
        "duration_s": args.duration, "batch_max": w.batch_max, "batch_wait_ms": w.batch_wait_ms,
        "encoder_only_windows_per_s": encoder_only,
        **{k: v for k, v in per_engine[main_engine].items() if k != "runs"},
        "engines": per_engine,
    }
    if {"faust", "aiokafka"} <= set(per_engine):  # the Faust app against the consumer it replaced, same run
        f, a = per_engine["faust"], per_engine["aiokafka"]
        result["faust_over_aiokafka_throughput"] = f["pipeline_windows_per_s"] / a["pipeline_windows_per_s"]
        result["faust_over_aiokafka_p99"] = f["latency_p99_s"] / a["latency_p99_s"]
    path = write_result("pipeline", result)
    for engine, r in per_engine.items():
        console.print(f"{r['stream_engine']}: {r['pipeline_windows_per_s']:.1f} windows/s first-to-last write "
                      f"({r['pipeline_windows_per_wall_s']:.1f} over wall time) vs encoder only "
                      f"{encoder_only:.1f}; latency p50 {r['latency_p50_s']:.2f} s, p99 {r['latency_p99_s']:.2f} s")
    if "faust_over_aiokafka_throughput" in result:
        console.print(f"faust / aiokafka: throughput x{result['faust_over_aiokafka_throughput']:.2f}, "
                      f"p99 latency x{result['faust_over_aiokafka_p99']:.2f}")
    console.print(f"-> {path}")


if __name__ == "__main__":
    main()
