"""MicroBatcher: closes batches on max size or max wait, runs inference off the event loop, pushes back."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from stream_workers.batching import MicroBatcher


def run(coro):
    return asyncio.run(coro)


class RecordingInfer:
    """Doubles numbers and records batch sizes and the thread that ran them."""

    def __init__(self, delay_s: float = 0.0):
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def __call__(self, items):
        self.sizes.append(len(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return [2 * x for x in items]


class TestBatchBounds:
    def test_a_burst_is_cut_into_batches_of_max_size(self):
        infer = RecordingInfer()

        async def scenario():
            async with MicroBatcher(infer, max_size=4, max_wait_s=0.2) as batcher:
                futures = [await batcher.submit(i) for i in range(10)]
                return await asyncio.gather(*futures)

        assert run(scenario()) == [2 * i for i in range(10)]
        assert infer.sizes == [4, 4, 2]

    def test_a_lone_item_waits_at_most_max_wait(self):
        infer = RecordingInfer()

        async def scenario():
            async with MicroBatcher(infer, max_size=64, max_wait_s=0.15) as batcher:
                started = time.perf_counter()
                result = await (await batcher.submit(21))
                return result, time.perf_counter() - started

        result, waited = run(scenario())
        assert result == 42 and infer.sizes == [1]
        assert 0.14 <= waited < 1.0


class TestOffLoop:
    def test_the_event_loop_keeps_running_while_a_batch_computes(self):
        infer = RecordingInfer(delay_s=0.4)

        async def scenario():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            async with MicroBatcher(infer, max_size=8, max_wait_s=0.01) as batcher:
                tick_task = asyncio.create_task(ticker())
                await (await batcher.submit(1))
                tick_task.cancel()
            return ticks

        assert run(scenario()) >= 15  # ~40 ticks fit in the 0.4 s batch; a blocked loop gives ~0
        assert infer.threads and all(name.startswith("inference") for name in infer.threads)

    def test_a_failing_batch_fails_its_futures_and_the_batcher_goes_on(self):
        calls = []

        def infer(items):
            calls.append(items)
            if len(calls) == 1:
                raise ValueError("model exploded")
            return items

        async def scenario():
            async with MicroBatcher(infer, max_size=2, max_wait_s=0.01) as batcher:
                first = await batcher.submit("a")
                with pytest.raises(ValueError, match="exploded"):
                    await first
                return await (await batcher.submit("b"))

        assert run(scenario()) == "b"


class TestBackpressure:
    def test_submit_waits_while_the_queue_is_full(self):
        release = threading.Event()

        def infer(items):
            release.wait(5)
            return items

        async def scenario():
            async with MicroBatcher(infer, max_size=1, max_wait_s=0.0, max_pending=2) as batcher:
                await batcher.submit(0)
                await asyncio.sleep(0.05)  # item 0 is now computing, the queue is empty
                await batcher.submit(1)
                await batcher.submit(2)
                blocked = asyncio.create_task(batcher.submit(3))
                await asyncio.sleep(0.1)
                was_blocked = not blocked.done()
                release.set()
                await blocked
                return was_blocked

        assert run(scenario()) is True


class TestWithATorchModel:
    def test_batched_inference_equals_one_window_at_a_time(self):
        # A small deterministic torch model defined here: the real MotionClassifier is tested in models/.
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128 * 3, 6), torch.nn.Softmax(-1)).eval()

        def infer(windows):
            with torch.no_grad():
                return list(model(torch.from_numpy(np.stack(windows))).numpy())

        windows = [np.random.default_rng(i).standard_normal((128, 3)).astype(np.float32) for i in range(20)]

        async def scenario():
            async with MicroBatcher(infer, max_size=8, max_wait_s=0.05) as batcher:
                futures = [await batcher.submit(w) for w in windows]
                return await asyncio.gather(*futures)

        batched = run(scenario())
        single = [infer([w])[0] for w in windows]
        assert all(np.allclose(b, s, atol=1e-6) for b, s in zip(batched, single))
