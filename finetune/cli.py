"""`iotlm jobs run|submit|watch|show|cancel` and `iotlm models list|promote|rollback`.

`jobs run` is the job runner (on the database, as the API's principal); the others call the admin API
with IOTLM_API_KEY, as `iotlm devices|labels|alarms` do.
"""

from __future__ import annotations

import json
import time

import typer

jobs_app = typer.Typer(help="Fine-tune jobs: the runner, and jobs through the admin API.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry, through the admin API.", no_args_is_help=True)
JsonOption = typer.Option(False, "--json", help="Print JSON (for machines).")
FINISHED = ("succeeded", "failed", "cancelled")


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(models_app, name="models")


def _settings():
    from iotlm.settings import Settings

    return Settings()


def _client():
    from admin.client import ApiClient

    return ApiClient(_settings())


def _print(doc) -> None:
    typer.echo(json.dumps(doc, default=str))


@jobs_app.command("run")
def run(once: bool = typer.Option(False, "--once", help="Run at most one queued job, then exit.")) -> None:
    """The job runner: claim queued fine-tune jobs and run them until SIGINT/SIGTERM (several may run)."""
    import logging
    import signal
    import threading

    from finetune.runner import JobRunner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = JobRunner(_settings())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if once:
            runner.run_once()
        else:
            runner.run_forever(stop)
    finally:
        runner.close()


@jobs_app.command("submit")
def submit(devices: str = typer.Option(None, help="Comma-separated device ids (default: every labeled device)."),
           labels: str = typer.Option(None, help="Comma-separated label set (default: every labeled activity)."),
           start: str = typer.Option(None, help="ISO 8601 start of the labeled time range."),
           end: str = typer.Option(None, help="ISO 8601 end of the labeled time range."),
           base: str = typer.Option(None, "--base", help="Base version (default: the promoted one)."),
           epochs: int = typer.Option(None), as_json: bool = JsonOption) -> None:
    """Queue a fine-tune job (POST /v1/finetune)."""
    body = {"devices": devices.split(",") if devices else None, "labels": labels.split(",") if labels else None,
            "start": start, "end": end, "base_version": base, "epochs": epochs}
    job = _client()("POST", "/v1/finetune", json={k: v for k, v in body.items() if v is not None}).json()
    _print(job) if as_json else typer.echo(f"job {job['id']} queued (base {job['base_version']})")


@jobs_app.command("show")
def show(job_id: int, as_json: bool = JsonOption) -> None:
    """A job's stage, progress, log tail and result."""
    job = _client()("GET", f"/v1/jobs/{job_id}").json()
    if as_json:
        _print(job)
        return
    typer.echo(f"job {job['id']}: {job['status']} ({job['stage']}, {job['percent']:.0f} %)")
    for line in job["log"]:
        typer.echo(f"  {line}")
    if job.get("error"):
        typer.echo(f"error: {job['error']}")


@jobs_app.command("cancel")
def cancel(job_id: int) -> None:
    job = _client()("POST", f"/v1/jobs/{job_id}/cancel").json()
    typer.echo(f"job {job['id']}: {job['status']}" + (" (cancel requested)" if job["cancel_requested"] else ""))


def watch_job(get, job_id: int, poll_s: float = 1.0, console=None) -> dict:
    """Follow a job with a progress bar until it ends; `get(job_id)` returns the job document."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    seen = 0
    with Progress(TextColumn("job {task.fields[job]}"), TextColumn("{task.fields[stage]:<9}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f} %"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("job", total=100, job=job_id, stage="")
        while True:
            job = get(job_id)
            for line in job["log"][seen:] if len(job["log"]) > seen else []:
                bar.console.print(f"[dim]{line}[/dim]")
            seen = len(job["log"])
            bar.update(task, completed=job["percent"], stage=job["stage"])
            if job["status"] in FINISHED:
                return job
            time.sleep(poll_s)


@jobs_app.command("watch")
def watch(job_id: int, as_json: bool = JsonOption) -> None:
    """Progress bar and log of a job until it ends; exit 1 unless it succeeded."""
    client = _client()
    job = watch_job(lambda i: client("GET", f"/v1/jobs/{i}").json(), job_id)
    if as_json:
        _print(job)
    else:
        typer.echo(f"job {job_id} {job['status']}" + (f": {job['error']}" if job.get("error") else "")
                   + (f"; {job['result']['decision']['reason']}" if job.get("result", {}).get("decision") else ""))
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@models_app.command("list")
def list_models(as_json: bool = JsonOption) -> None:
    rows = _client()("GET", "/v1/models").json()
    if as_json:
        _print(rows)
        return
    for row in rows:
        typer.echo(f"{row['version']:<40} {row['status']:<10} parent {row.get('parent_version') or '-'}")


@models_app.command("promote")
def promote(version: str) -> None:
    row = _client()("POST", f"/v1/models/{version}/promote").json()
    typer.echo(f"{row['version']} promoted")


@models_app.command("rollback")
def rollback() -> None:
    row = _client()("POST", "/v1/models/rollback").json()
    typer.echo(f"rolled back: {row['version']} serves again")
