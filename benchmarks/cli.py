"""`iotlm bench ...`: the measurements behind the README's figures (benchmarks/RESULTS.md)."""

from __future__ import annotations

import json

import typer

bench_app = typer.Typer(help="Benchmarks: results with the machine's description in benchmarks/results and RESULTS.md.",
                        no_args_is_help=True)


@bench_app.command("encoder")
def encoder(model: str = typer.Option(None, help="Checkpoint name or folder (default: settings)."),
            batch_size: int = typer.Option(256, help="Windows per call when batched (the workers' batch_max)."),
            repeats: int = typer.Option(5, min=1, help="Runs per case; medians and spread are reported."),
            threads: int = typer.Option(2, min=1, help="CPU threads for both engines."),
            as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object.")) -> None:
    """The product's encoder path (torch), batched and one at a time, against ONNX Runtime on the same model."""
    from rich.progress import Progress

    from benchmarks.bench_encoder import run
    from benchmarks.machine import append_results_md, write_result

    with Progress(transient=True) as bar:
        task = bar.add_task("encoder", total=repeats * 5)  # 4 cases, 5 with a fused SVM
        result = run(model, batch_size, repeats, threads,
                     progress=lambda repeat, engine, size: bar.update(
                         task, advance=1, description=f"run {repeat + 1}: {engine} batch {size}"))
    write_result("encoder", result)
    model_option = f"--model {model} " if model else ""
    append_results_md("Encoder: torch vs ONNX Runtime", f"iotlm bench encoder {model_option}--batch-size {batch_size} "
                      f"--repeats {repeats} --threads {threads}", result,
                      ["batched_windows_per_s", "single_windows_per_s", "ratio", "onnxruntime_windows_per_s",
                       "onnxruntime_single_windows_per_s", "torch_vs_onnxruntime", "spread_windows_per_s",
                       "max_probability_difference", "flops_per_window", "achieved_gflops", "peak_gflops",
                       "share_of_peak", "peak_rss_mib"]
                      + (["fused_windows_per_s", "encoder_vs_fused"] if result["fused_windows_per_s"] else []))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


PIPELINE_KEYS = ["frames_per_s", "windows_per_s", "encoder_ceiling_windows_per_s", "pipeline_over_encoder",
                 "latency_p50_s", "latency_p99_s", "lost", "duplicates", "saturated_stage", "spread"]


def _logs_dir(settings):
    path = settings.state_dir / "bench-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@bench_app.command("storage")
def storage(rows: int = typer.Option(1_000_000, min=1000, help="Window predictions written on the PostgreSQL lane."),
            chunk: int = typer.Option(50_000, min=100, help="Rows per call; the two paths alternate per chunk."),
            devices: int = typer.Option(200, min=1),
            timescale_rows: int = typer.Option(20_000, min=0, help="Rows on the TimescaleDB lane (PGlite); 0 skips it."),
            as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object.")) -> None:
    """The idempotent result writer against the bare-write ceiling of each lane (COPY; PGlite: plain INSERT)."""
    from benchmarks.bench_storage import run, save
    from benchmarks.machine import append_results_md

    result = save(run(rows, chunk, devices, timescale_rows))
    pg = result["postgresql"]
    figures = {"postgresql_writer_rows_per_s": pg["prediction_writer"]["rows_per_s"],
               "postgresql_raw_copy_rows_per_s": pg["raw_copy_plain_table"]["rows_per_s"],
               "postgresql_writer_vs_raw_copy": pg["writer_vs_raw_copy"],
               "postgresql_raw_copy_indexed_rows_per_s": pg["raw_copy_indexed_table"]["rows_per_s"],
               "postgresql_writer_vs_raw_copy_indexed": pg["writer_vs_raw_copy_indexed"],
               "postgresql_writer_vs_raw_copy_per_chunk": pg["writer_vs_raw_copy_per_chunk"],
               "redelivered_chunk_new_rows": pg["redelivery_of_a_chunk"]["new_rows"]}
    if "timescaledb" in result:
        ts = result["timescaledb"]
        figures |= {"timescaledb_writer_rows_per_s": ts["rows_per_s"],
                    "timescaledb_plain_insert_rows_per_s": ts["plain_insert"]["rows_per_s"],
                    "timescaledb_writer_vs_plain_insert": ts["writer_vs_plain_insert"]}
    figures["load_average_1m"] = result["load_average_1m"]
    append_results_md("Storage: result writer vs the bare-write ceiling", f"iotlm bench storage --rows {rows} "
                      f"--chunk {chunk} --timescale-rows {timescale_rows}", figures, list(figures))
    typer.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


@bench_app.command("pipeline")
def pipeline(devices: int = typer.Option(1000, min=1, help="Replayed HAPT devices, each at real time."),
             duration: float = typer.Option(30.0, min=5, help="Seconds of frames each device sends."),
             workers: int = typer.Option(2, min=1, help="Worker processes in the consumer group."),
             repeats: int = typer.Option(3, min=1, help="Runs of the same load; medians and spread are reported."),
             threads: int = typer.Option(2, min=1, help="torch threads for the encoder-alone ceiling."),
             as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object.")) -> None:
    """The whole path on the real stack: throughput, latency, lost and duplicated windows, the saturated stage."""
    from rich.console import Console

    from benchmarks.bench_pipeline import pipeline as run
    from benchmarks.machine import append_results_md, write_result
    from iotlm.settings import Settings

    settings = Settings()
    console = Console(stderr=True)
    result = run(settings, devices, duration, workers, repeats, threads, _logs_dir(settings), console)
    engine = settings.workers.engine
    write_result(f"pipeline-{devices}d-{workers}w-{engine}", result)
    append_results_md(f"Pipeline: {devices} devices, {workers} worker(s), {engine}",
                      ("" if engine == "faust" else f"IOTLM_WORKERS__ENGINE={engine} ") + f"iotlm bench pipeline --devices {devices} "
                      f"--duration {duration:g} --workers {workers} --repeats {repeats}", result, PIPELINE_KEYS)
    typer.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {result[k]}" for k in PIPELINE_KEYS))


@bench_app.command("sweep")
def sweep(devices: str = typer.Option("10,100,300,1000,3000,5000", help="Device counts, in order; each worker count stops at the first that saturates."),
          workers: str = typer.Option("1,2", help="Worker counts, comma-separated."),
          duration: float = typer.Option(30.0, min=5, help="Seconds of frames each device sends, per point."),
          threads: int = typer.Option(2, min=1, help="torch threads for the encoder-alone ceiling.")) -> None:
    """The scaling curve: throughput and p99 latency against devices, 1 and 2 workers, until saturation; a plot."""
    from rich.console import Console

    from benchmarks.bench_pipeline import plot_sweep
    from benchmarks.bench_pipeline import sweep as run
    from benchmarks.machine import RESULTS_DIR, append_results_md, write_result
    from iotlm.settings import Settings

    settings = Settings()
    console = Console(stderr=True)
    device_counts = [int(d) for d in devices.split(",")]
    worker_counts = [int(w) for w in workers.split(",")]
    result = run(settings, device_counts, worker_counts, duration, threads, _logs_dir(settings), console)
    write_result("sweep", result)
    plot_sweep(result, RESULTS_DIR / "sweep.png")
    rows = {}
    for w, points in result["points"].items():
        for p in points:
            rows[f"{p['devices']} devices, {w} worker(s)"] = (
                f"{p['windows_per_s']:.0f} of {p['offered_windows_per_s']:.0f} windows/s, p99 "
                f"{p['latency_p99_s'] or float('nan'):.2f} s, lost {p['lost']}, duplicates {p['duplicates']}, "
                f"saturated: {p['saturated_stage']}, cores {p['cpu_cores_used']}")
    for w, s in result["saturation"].items():
        rows[f"saturation, {w} worker(s)"] = json.dumps({k: v for k, v in s.items() if k != "at_80_percent"})
        if "at_80_percent" in s:
            p = s["at_80_percent"]
            rows[f"80 % load ({p['devices']} devices), {w} worker(s)"] = (
                f"{p['windows_per_s']:.0f} windows/s, p99 {p['latency_p99_s'] or float('nan'):.2f} s, lost {p['lost']}")
    rows["stages alone"] = json.dumps({k: (v["records_per_s"] if isinstance(v, dict) else round(v, 2 if v < 10 else None))
                                       for k, v in result["stages_alone"].items()})
    append_results_md("Scaling sweep (plot: benchmarks/results/sweep.png)",
                      f"iotlm bench sweep --devices {devices} --workers {workers} --duration {duration:g}",
                      rows, list(rows))
    for key, value in rows.items():
        typer.echo(f"{key}: {value}")


@bench_app.command("llm")
def llm(answers: int = typer.Option(20, min=2, help="Questions timed one at a time."),
        narration_items: int = typer.Option(32, min=1, help="Closed episodes offered to the narration stage."),
        batch_size: int = typer.Option(8, min=1, help="Narration lines per LLM call."),
        threads: int = typer.Option(2, min=1, help="torch threads."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object.")) -> None:
    """The adapter-LLM's answer latency (p50/p95) and the narration stage's throughput (benchmarks/bench_llm.py)."""
    from rich.progress import Progress

    from benchmarks.bench_llm import run
    from benchmarks.machine import append_results_md, write_result

    with Progress(transient=True) as bar:
        task = bar.add_task("answers", total=answers)
        result = run(answers, narration_items, batch_size, threads,
                     progress=lambda what, done, total: bar.update(task, completed=done, description=what))
    write_result("llm", result)
    append_results_md("Adapter-LLM: answer latency and narration throughput",
                      f"iotlm bench llm --answers {answers} --narration-items {narration_items} "
                      f"--batch-size {batch_size} --threads {threads}", result,
                      ["answer_p50_s", "answer_p95_s", "phrase_p50_s", "phrase_p95_s", "narration_lines_per_s",
                       "episodes_per_device_minute", "devices_kept_up_with", "kept_fraction_at_9_devices", "load_s"])
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
