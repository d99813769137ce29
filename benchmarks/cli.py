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
        task = bar.add_task("encoder", total=repeats * 4)
        result = run(model, batch_size, repeats, threads,
                     progress=lambda repeat, engine, size: bar.update(
                         task, advance=1, description=f"run {repeat + 1}: {engine} batch {size}"))
    write_result("encoder", result)
    append_results_md("Encoder: torch vs ONNX Runtime", f"iotlm bench encoder --batch-size {batch_size} "
                      f"--repeats {repeats} --threads {threads}", result,
                      ["batched_windows_per_s", "single_windows_per_s", "ratio", "onnxruntime_windows_per_s",
                       "onnxruntime_single_windows_per_s", "torch_vs_onnxruntime", "spread_windows_per_s",
                       "max_probability_difference", "flops_per_window", "achieved_gflops", "peak_gflops",
                       "share_of_peak", "peak_rss_mib"])
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for key, value in result.items():
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
