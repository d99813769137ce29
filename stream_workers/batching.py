"""Dynamic micro-batching of windows from all devices, with inference off the event loop.

Like Triton's dynamic batcher: the first queued item opens a batch, which closes when it holds
`max_size` items or `max_wait_s` has passed since it opened, whichever comes first. The batch runs in a
single-thread executor, so the consuming coroutine keeps reading Kafka while the model computes, and
one thread owns the model (torch is not re-entrant per module, and on CPU one busy thread per worker
process is what the machine can give). The queue is bounded: `submit` waits when `max_pending` items
are queued, which is the backpressure that pauses consumption instead of growing memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    busy_s: float = 0.0
    last_size: int = 0


class MicroBatcher(Generic[Item, Result]):
    """Queue items, run `infer(batch) -> results` (same order, same length) on batches, resolve futures."""

    def __init__(
        self,
        infer: Callable[[list[Item]], Sequence[Result]],
        max_size: int,
        max_wait_s: float,
        max_pending: int = 4096,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.infer = infer
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch  # (batch size, inference seconds), for metrics
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future]] = asyncio.Queue(maxsize=max_pending)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._runner: asyncio.Task | None = None

    async def __aenter__(self) -> MicroBatcher[Item, Result]:
        self._runner = asyncio.create_task(self._run(), name="micro-batcher")
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def submit(self, item: Item) -> asyncio.Future[Result]:
        """Queue `item` (waiting while the queue is full); the future resolves when its batch ran."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    try:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                    except TimeoutError:
                        break
            await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Item, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.infer, items)
            if len(results) != len(items):
                raise RuntimeError(f"inference returned {len(results)} results for {len(items)} items")
        except Exception as exc:  # the batch fails as a whole; each submitter decides what to do
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.items += len(items)
        self.stats.busy_s += seconds
        self.stats.last_size = len(items)
        if self.on_batch is not None:
            self.on_batch(len(items), seconds)
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
