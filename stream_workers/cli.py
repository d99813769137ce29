"""Commands of this part, added to the root `iotlm` app by `register`: `iotlm worker`.
(`iotlm demo`, a whole-platform scenario, lives with the composition root: iotlm/demo.py.)"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    app.command("worker")(worker)


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
    if settings.workers.torch_threads > 0:  # process-wide in torch, so set here and not per StreamWorker
        import torch

        torch.set_num_threads(settings.workers.torch_threads)
    root = ctx.find_root().obj  # the composition root offers the fleet registry (settings.ingest.admission)
    fleet = root.open_fleet(settings, "worker") if root is not None else None
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
