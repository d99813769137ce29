"""The stream worker as the app of Faust's own launcher: `faust -A iotlm.faust_app worker -l info
--web-port P`.

Composed here, at the root, like `iotlm worker`: settings from the environment (`IOTLM_*`,
`IOTLM_WORKER_INDEX` numbers the worker), the fleet registry when `settings.ingest.admission` is
"registry". The pipeline runs as an app task; Faust starts and stops the app. A stop cancels the task:
nothing is drained or committed beyond what is acked, so what was in flight is read again by the
partition's next owner (at-least-once, idempotent rows).
"""

from __future__ import annotations

import asyncio
import os

from iotlm.cli import Composition
from iotlm.settings import Settings
from stream_workers.app import StreamWorker
from stream_workers.faust_source import FaustSource

settings = Settings()
worker = StreamWorker(settings, int(os.environ.get("IOTLM_WORKER_INDEX", "0")),
                      fleet=Composition.open_fleet(settings, "worker"))
source = FaustSource(worker, serve_metrics=True)
app = source.app


@app.task
async def pipeline() -> None:
    await worker.run(asyncio.Event(), source=source)
