"""The worker's frames consumer as a Faust app: one agent, manual acks, commits by the guarded consumer.

`FaustSource` gives `StreamWorker` the few consumer calls it makes (`getmany`, `assignment`,
`highwater`, `pause`, `resume`, `commit`), on a `faust.App` whose id is the worker consumer group:
- the agent (`concurrency=1`; scale out with partitions and worker processes) reads the frames topic
  as raw bytes with `stream.noack()` and hands each event to the worker through a bounded queue, so a
  slow sink stops the agent and Faust's flow control stops fetching;
- `commit(offsets)` acks every event of a partition below the offset the worker may commit (nothing
  before it is still needed); Faust commits what is acked on its `broker_commit_interval`, through
  `GuardedConsumer` (stream_workers/faust_consumer.py), which never passes an event still in flight;
- Faust's rebalance signals call the worker's revocation and assignment handlers;
- per-device state (open episodes, alert cooldowns and timers) lives in the Faust table
  `device-state`, changelogged on Kafka, so the worker that takes a device over continues its episode
  and does not raise an alert again inside its cooldown;
- with `serve_metrics`, Faust's web server serves on the worker's metrics port `/metrics` (the
  worker's own metrics and Faust's sensors in one registry), `/health` (JSON: ready, partitions,
  progress, model) and Faust's standard views.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from iotlm.credentials import faust_credentials
from stream_workers import faust_consumer

log = logging.getLogger(__name__)
QUEUE_EVENTS = 2048  # events between the agent and the worker; past it the agent waits


@dataclass(frozen=True)
class Partition:
    """What the worker reads of a topic partition (aiokafka's TopicPartition has the same fields)."""

    topic: str
    partition: int


@dataclass(frozen=True)
class Record:
    """A Faust event as the worker reads records: aiokafka's field names, timestamp in milliseconds."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: tuple


class FaustSource:
    def __init__(self, worker, serve_metrics: bool):
        import faust

        settings, config = worker.settings, worker.config
        kafka = settings.kafka
        self.worker = worker
        self.topic = kafka.frames_topic
        faust_dir = settings.state_dir / "faust"  # Faust's data folder (default: {id}-data in the cwd)
        faust_dir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            config.consumer_group,
            broker=f"{faust_consumer.SCHEME}://{settings.kafka_bootstrap}",
            broker_credentials=faust_credentials(settings, "worker"),
            store="memory://",
            datadir=str(faust_dir / "{conf.name}-data"),
            topic_partitions=kafka.partitions,
            topic_allow_declare=True,  # the device-state changelog; the stack creates the others (deploy.topics)
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=config.commit_interval_s,
            # events stay unacked while their windows are open: a rebalance must not wait for them
            # (the partition's next owner re-reads them from the commit)
            stream_wait_empty=False,
            broker_client_id=f"iotlm-{worker.name}",
            consumer_max_fetch_size=max(1_048_576, kafka.max_frame_bytes + 65_536),
            producer_max_request_size=kafka.max_frame_bytes + 65_536,
            web_enabled=serve_metrics,
            web_bind=config.metrics_host,  # Faust's default binds every interface
            web_host=config.metrics_host,
            web_port=config.metrics_port + worker.index,
            web_in_thread=False,
        )
        if serve_metrics:
            from faust.sensors.prometheus import setup_prometheus_sensors

            setup_prometheus_sensors(self.app, registry=worker.metrics.registry, name_prefix="faust")

            @self.app.page("/health")
            async def health(view, request):
                """Up, what it owns and how far it is: for a liveness probe or a person."""
                totals = worker.totals
                return view.json({
                    "worker": worker.name, "engine": "faust", "ready": worker.ready.is_set(),
                    "partitions": sorted(tp.partition for tp in self.assignment()),
                    "pending_windows": len(worker._pending), "frames": totals.frames, "results": totals.results,
                    "dead_letters": totals.dlq, "model": worker.classifier.version if worker.classifier else None,
                })
        # Per-device state that must outlive this worker (open episodes, alert cooldowns and timers),
        # changelogged on Kafka: the next owner of a device's partition recovers it before reading on.
        # Keys are the device id's bytes, partitioned as the frames topic is (the same murmur2 partitioner).
        # (Faust picks a table's serializers from its key and value types: bytes are raw, the rest JSON.)
        self.device_state = self.app.Table("device-state", key_type=bytes, partitions=kafka.partitions,
                                           use_partitioner=True)
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_EVENTS)
        self._unacked: dict[int, deque] = {}  # partition -> (offset, event) handed to the worker, in order
        self._partitions = kafka.partitions
        self._takeover_pending = False
        frames = self.app.topic(self.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                                value_serializer="raw")

        @self.app.agent(frames, concurrency=1, name=f"{config.consumer_group}.frames")
        async def frames_agent(stream):
            # event by event (handing over `noack_take` batches measured no faster)
            async for event in stream.noack().events():
                await self._queue.put(event)

        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)

    # -- what StreamWorker calls ------------------------------------------------------------------

    async def start(self) -> None:
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self.app.consumer.assignment() if tp.topic == self.topic}

    def highwater(self, tp: Partition) -> int | None:
        from faust.types import TP

        try:
            return self.app.consumer.highwater(TP(tp.topic, tp.partition))
        except Exception:  # not fetched yet
            return None

    def pause(self, *tps: Partition) -> None:
        from faust.types import TP

        self.app.consumer.pause_partitions([TP(tp.topic, tp.partition) for tp in tps])

    def resume(self, *tps: Partition) -> None:
        from faust.types import TP

        self.app.consumer.resume_partitions([TP(tp.topic, tp.partition) for tp in tps])

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Partition, list[Record]]:
        try:
            events = [await asyncio.wait_for(self._queue.get(), timeout_ms / 1000)]
        except TimeoutError:
            return {}
        while len(events) < max_records and not self._queue.empty():
            events.append(self._queue.get_nowait())
        owned = {tp.partition for tp in self.assignment()}
        generation = self.app.consumer_generation_id
        batches: dict[Partition, list[Record]] = {}
        stale = 0
        for event in events:
            message = event.message
            if message.partition not in owned or message.generation_id != generation:
                # Fetched before a rebalance: Faust seeks every partition it is given back to the commit,
                # so this event comes again in order (here, or at the partition's new owner). Passing the
                # stale copy on would feed the fresh assembler frames ahead of the re-read ones, which
                # then arrive too late for their windows.
                stale += 1
                continue
            self._unacked.setdefault(message.partition, deque()).append((message.offset, event))
            batches.setdefault(Partition(message.topic, message.partition), []).append(Record(
                message.topic, message.partition, message.offset, int(message.timestamp * 1000), message.key,
                message.value, tuple(message.headers or ())))
        if stale:
            log.info("%s: %d event(s) fetched before the rebalance dropped; they are read again from the commit",
                     self.worker.name, stale)
        return batches

    async def commit(self, offsets: dict) -> None:
        """Ack, per partition, every event handed over below the offset given (Faust commits them)."""
        for tp, offset in offsets.items():
            pending = self._unacked.get(tp.partition)
            while pending and pending[0][0] < offset:
                pending.popleft()[1].ack()

    def load_device(self, device_id: str) -> dict | None:
        return self.device_state.get(device_id.encode())

    def save_device(self, device_id: str, state: dict) -> None:
        self.device_state[device_id.encode()] = state

    def taken_over(self) -> list[str]:
        """Once per assignment, when its tables are recovered: the devices on this worker's partitions
        that have durable state, so a device that stays quiet after the takeover is still timed for
        silence (devices that talk are restored at their first frame)."""
        if not self._takeover_pending or self.app.rebalancing:
            return []
        self._takeover_pending = False
        owned = {tp.partition for tp in self.assignment()}
        return [key.decode() for key in list(self.device_state.keys()) if self.partition_of(key.decode()) in owned]

    def partition_of(self, device_id: str) -> int:
        """The frames partition of a device (frames and table entries are keyed by its id, murmur2)."""
        from kafka.partitioner.default import murmur2

        return (murmur2(device_id.encode()) & 0x7FFFFFFF) % self._partitions

    # -- rebalances -------------------------------------------------------------------------------

    async def _on_revoked(self, app, revoked, **kwargs) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == self.topic}
        if partitions and self.worker.assembler is not None:
            await self.worker.on_revoked(partitions)
        for p in partitions:
            self._unacked.pop(p, None)

    async def _on_assigned(self, app, assigned, **kwargs) -> None:
        mine = [tp for tp in assigned if tp.topic == self.topic]
        self._takeover_pending = bool(mine)
        self.worker.metrics.assigned_partitions.set(len(mine))
        if mine:
            self.worker.ready.set()
