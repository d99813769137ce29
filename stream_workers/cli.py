"""Commands of this part, added to the root `iotlm` app by `register`: `iotlm worker`, `iotlm demo`."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    app.command("worker")(worker)
    app.command("demo")(demo)


def worker(
    ctx: typer.Context,
    index: int = typer.Option(0, "--index", help="Worker number: metrics on metrics_port + index."),
    as_json: bool = typer.Option(False, "--json", help="Print the worker's totals as one JSON object on exit."),
) -> None:
    """Run one stream worker (frames -> windows -> inference -> storage) until SIGINT/SIGTERM."""
    import asyncio
    import logging
    import signal

    from rich.console import Console
    from rich.logging import RichHandler

    from iotlm.settings import Settings
    from stream_workers.app import StreamWorker

    console = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, handlers=[RichHandler(console=console, show_path=False)],
                        format="%(message)s")
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings()
    root = ctx.find_root().obj  # the composition root offers the fleet registry (settings.ingest.admission)
    fleet = root.open_fleet(settings) if root is not None else None
    stream_worker = StreamWorker(settings, index, fleet=fleet)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        progress = asyncio.create_task(_report_progress(stream_worker, console, stop))
        try:
            return await stream_worker.run(stop)
        finally:
            progress.cancel()

    try:
        totals = asyncio.run(main())
    finally:
        if fleet is not None:
            fleet.close()
    summary = vars(totals)
    if as_json:
        print(json.dumps(summary, default=dict))
    else:
        console.print(summary)


async def _report_progress(stream_worker, console, stop, every_s: float = 10.0) -> None:
    import asyncio

    while not stop.is_set():
        await asyncio.sleep(every_s)
        t = stream_worker.totals
        version = stream_worker.classifier.version if stream_worker.classifier else "-"
        console.log(f"{stream_worker.name}: {t.frames} frames, {t.windows} windows, {t.results} written, "
                    f"{t.dlq} dead-lettered, {t.late_frames} late, model {version}")


def demo(
    duration: float = typer.Option(120.0, "--duration", help="Seconds of signal each device replays."),
    devices: int = typer.Option(9, "--devices", help="HAPT devices (the 9 held-out test subjects first)."),
    speed: float = typer.Option(2.0, "--speed", help="Replay speed-up over real time."),
    workers: int = typer.Option(2, "--workers", help="Stream workers sharing the consumer group."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON object (for machines)."),
) -> None:
    """Whole pipeline live: stack, HAPT devices replayed, workers, live accuracy and latency."""
    import logging

    from rich.console import Console

    from iotlm.settings import Settings
    from stream_workers.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    # the broker's group coordinator takes a few seconds after a fresh start; the live table shows progress
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    console = Console(stderr=True)
    report = run_demo(Settings(), duration_s=duration, devices=devices, speed=speed, workers=workers,
                      console=console, live=not as_json)
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    console.print(report.to_dict())
