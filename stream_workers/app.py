"""The stream worker: frames topic -> windows -> batched inference -> durable results, then commit.

Two stream engines run the same worker (`settings.workers.engine`):
- "faust" (the default): a Faust app (`stream_workers.faust_source`): one agent with `concurrency=1`,
  raw bytes, manual acks; the worker acks every event below the earliest offset it still needs (a
  frame buffered for a window not yet decided, a window or raw frame not yet written) and Faust commits
  what is acked through `GuardedConsumer`, whose commit never passes an event still in flight
  (faust-streaming #606) and whose seek back to the commit also rewinds partitions with no commit yet
  (`stream_workers.faust_consumer`). Per-device state that must survive a restart or a rebalance (open
  episodes, alert cooldowns and timers) lives in the Faust table `device-state`;
- "aiokafka": the plain aiokafka consumer Faust replaced (`enable_auto_commit=False`, the worker
  commits that same offset); faster, per-device state per process (docs/workers.md).
Windows are assembled here, not in Faust's windowed tables: their `on_window_close` hands over no
aggregate of the samples (see `stream_workers.windows`).

At-least-once, without duplicates:
- results, episodes, alerts and the raw bytes of every decoded frame (kept for fine-tuning) reach the
  sink (idempotent upserts), batched together, before the offsets covering them are committed; after
  a crash or a rebalance the partition is re-read from the commit, the assembler rebuilds its buffers
  from the re-read frames, and re-emitted windows and raw frames upsert the same rows;
- a frame that cannot be decoded, comes from a device the admission refuses, carries a bad truth
  header, spans too many windows, comes later than the lateness bound or has a clock far ahead (see
  `stream_workers.windows`) goes to the dead-letter topic with a reason and the same key, and the
  worker goes on; so does any record whose handling raises (the per-record guard): no record can stop
  a worker. Dead letters are bounded like the gate's (`ingest.dead_letters.bounded_payload`) and are
  written once per record: after a restart, offsets already dead-lettered (read back from the DLQ,
  from the re-read records' time on) are skipped;
- a device that stays quiet while others keep talking (`quiet_release_s`) has its open windows decided
  and its frames released, so its partition's commit moves on and a restart re-reads at most one
  window of it.

Scale-out: workers share the consumer group; Kafka assigns each partition (so each device) to one.
Hot reload: the worker polls the Redis key `settings.workers.model_key`; a new value (a checkpoint
name or path) is loaded off the loop and swapped in between batches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from aiokafka.abc import ConsumerRebalanceListener

from ingest.codec import TRUTH_HEADER, decode, header, truth_for_frame
from ingest.dead_letters import bounded_payload, dead_letter_headers
from ingest.frame import Frame, FrameError, FrameLimits
from ingest.gate import DeviceAdmission, SettingsAdmission
from iotlm.credentials import kafka_client_kwargs, redis_auth
from stream_workers.alerts import AlertRules
from stream_workers.batching import MicroBatcher
from stream_workers.episodes import EpisodeTracker
from stream_workers.fleet import Fleet
from stream_workers.gravity import DeviceGravity
from stream_workers.inference import ActivityModel, WindowClassifier
from stream_workers.metrics import WorkerMetrics
from stream_workers.records import Alert, Episode, RawFrame, WindowResult
from stream_workers.rooms import MixedInference, RoomClassifier, RoomStateResult, RoomWindow, RoomWindower, fuse
from stream_workers.sink import ResultSink, SinkBackpressure, SinkBatch
from stream_workers.windows import FrameOutcome, ImuSegment, Window, WindowAssembler

log = logging.getLogger(__name__)
DLQ_SOURCE = "stream_workers"
TICK_S = 1.0
MAX_REASON_CHARS = 2000  # a reason quoting an exception stays a readable header
DLQ_SCAN_TIMEOUT_S = 10.0


def segment_from_frame(frame: Frame, labels, partition: int, offset: int, produced_at: float) -> ImuSegment | None:
    """The frame's IMU samples as a segment; None for a frame without an IMU stream."""
    if frame.imu is None:
        return None
    if labels is not None and len(labels) != frame.imu.n_samples:
        labels = None  # truth that does not line up with the samples is no truth
    return ImuSegment(
        device_id=frame.device_id, seq=frame.seq, t0=frame.t0, rate_hz=frame.imu.rate_hz, acc=frame.imu.acc,
        gyro=frame.imu.gyro, labels=labels, placement=frame.placement, partition=partition, offset=offset,
        produced_at=produced_at,
    )


def _room_truth(headers, frame: Frame):
    """Replayed simulated room truth (dataset "rooms": head count per env sample), else None."""
    raw = header(headers, TRUTH_HEADER)
    if raw is None or frame.env is None:
        return None
    truth = truth_for_frame(raw, frame)
    if truth.dataset != "rooms" or len(truth.labels) != frame.env.n_samples:
        return None
    return truth.labels


def _truth_labels(headers, frame: Frame):
    """The frame's HAPT ground-truth labels, None without a header; FrameError when the header is bad
    (a record reaching Kafka by another path than the gate is checked the same way)."""
    raw = header(headers, TRUTH_HEADER)
    if raw is None:
        return None
    truth = truth_for_frame(raw, frame)
    return truth.labels if truth.dataset == "hapt" else None


@dataclass
class WorkerTotals:
    """What one worker did; the demo and the tests read it."""

    frames: int = 0
    windows: int = 0
    results: int = 0
    dlq: int = 0
    late_frames: int = 0
    duplicate_frames: int = 0
    gap_windows: int = 0
    abandoned_windows: int = 0  # open when their device went quiet or its clock jumped
    released_devices: int = 0  # quiet devices whose buffers were released
    redelivered_dead_letters: int = 0  # records re-read after a restart and already dead-lettered: skipped
    alerts: int = 0
    truth_windows: int = 0
    correct_windows: int = 0
    room_windows: int = 0  # env windows cut (stream_workers.rooms)
    room_states: int = 0  # room states written
    room_truth_windows: int = 0  # room states with replayed simulated truth
    room_correct_windows: int = 0  # ... whose occupancy bin matched it
    room_occupied_correct: int = 0  # ... whose occupied/empty matched it
    model_versions: Counter = field(default_factory=Counter)
    # CPU seconds of each stage, in the thread that runs it (decode_assemble: the consume loop handling
    # records, on the event loop; inference: the model's batches; sink: durable writes; results: episodes,
    # alert rules and per-device state around each write, on the event loop): what the pipeline benchmark
    # splits a worker's CPU by. Thread CPU, not wall time: a stage waiting for the interpreter lock (held
    # by another stage) is not busy.
    cpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("decode_assemble", "inference", "sink", "results"), 0.0))


@dataclass
class _Pending:
    window: Window
    future: asyncio.Future


class StreamWorker:
    """One member of the worker consumer group. `await run(stop)` until `stop` is set."""

    def __init__(
        self,
        settings,
        index: int = 0,
        *,
        model: ActivityModel | None = None,
        sink: ResultSink | None = None,
        serve_metrics: bool = True,
        on_written: Callable[[list[WindowResult]], None] | None = None,
        admission: DeviceAdmission | None = None,
        fleet: Fleet | None = None,
        room_model=None,
    ):
        self.settings = settings
        self.config = settings.workers
        self.index = index
        self.name = f"worker-{index}"
        self._model = model
        self._sink = sink
        self.serve_metrics = serve_metrics
        self.on_written = on_written
        self.totals = WorkerTotals()
        self.metrics = WorkerMetrics(self.name)
        self.limits = FrameLimits.from_settings(settings)
        # the gate's admission again (the registry's when there is one): frames can reach Kafka by another
        # path than the gate, and a device deactivated since the gate let it in is refused here
        self.admission = admission or fleet or SettingsAdmission(settings.ingest)
        self.episodes = EpisodeTracker(self.config.episode_min_windows, max_gap_s=2 * self.config.window_s)
        self.fleet = fleet  # admission, rooms, label sets, rules from the registry (None: settings)
        self.rules = AlertRules(self.config, fleet)
        self.gravity = DeviceGravity()  # per-device "up" (stream_workers.gravity), durable with the rules
        self.rooms = RoomWindower(self.rules.room_of)  # env devices' reports -> room windows
        self._room_model = room_model
        self.room_classifier: RoomClassifier | None = None
        self.assembler: WindowAssembler | None = None
        self.classifier: WindowClassifier | None = None
        self.promoted: str | None = None
        self._pending: deque[_Pending] = deque()
        self._pending_added = asyncio.Event()
        # partition -> offset -> raw frames and windows (by their first frame) of that offset not yet written
        self._inflight: dict[int, Counter] = {}
        self._raw_out: list[RawFrame] = []  # decoded frames whose bytes go with the next sink batch
        self._next_offset: dict[int, int] = {}  # partition -> offset after the last record handled
        self._committed: dict[int, int] = {}
        self._alerts_out: list[Alert] = []
        self._generation = 0  # bumped at each revocation; fetched records of an older one are dropped
        self._batcher: MicroBatcher | None = None
        # device -> (wall clock heard, record timestamp, partition): what tells a device went quiet
        self._device_seen: dict[str, tuple[float, float, int]] = {}
        self._partition_time: dict[int, float] = {}  # partition -> newest record timestamp read
        self._last_read_at = 0.0  # wall clock of the last record read, from any partition
        # partition -> offsets already dead-lettered by a worker (None: not yet read back from the DLQ)
        self._dead_lettered: dict[int, set[int] | None] = {}
        self._restored: set[str] = set()  # devices whose durable state this worker has loaded
        self._consumer = None
        self._producer = None
        self.ready = asyncio.Event()  # set once partitions are assigned (tests and the demo wait on it)
        self.narration = None  # stream_workers/narration.py, when settings.workers.narration

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, source=None) -> WorkerTotals:
        """Consume until `stop` is set. `source`: a FaustSource whose app someone else runs (the
        `faust -A iotlm.faust_app worker` launcher); by default the worker makes and runs its own."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from deploy.topics import ensure_topics

        loop = asyncio.get_running_loop()
        if self._model is None:
            import redis.asyncio as redis

            client = redis.from_url(self.settings.redis_url, **redis_auth(self.settings, "worker"))
            try:  # start on the promoted model, if any, rather than switch a moment later
                self.promoted = await self._read_promoted(client)
            finally:
                await client.aclose()
            try:
                self._model = await loop.run_in_executor(None, self._load_model, self.promoted)
            except Exception as exc:
                if self.promoted is None:
                    raise
                log.error("cannot load promoted model %r (%s); starting on the default", self.promoted, exc)
                self._model = await loop.run_in_executor(None, self._load_model, None)
        if self._sink is None:
            from stream_workers.sink import StorageSink

            self._sink = await loop.run_in_executor(None, StorageSink, self.settings, self.fleet)
        if self.config.narration and self.narration is None:
            from stream_workers.narration import start_narration

            self.narration = await loop.run_in_executor(None, start_narration, self.settings)
        # the worker may not create topics: `stack up` (admin) does; a missing one is reported here
        await loop.run_in_executor(None, lambda: ensure_topics(self.settings, principal="worker"))
        self.classifier = WindowClassifier(self._model, self.config.labels,
                                           labels_for=self.fleet.labels_for if self.fleet else None)
        if self._room_model is None:
            try:
                self._room_model = await loop.run_in_executor(None, self._load_room_model)
            except Exception as exc:  # without it, room frames are still stored raw; nothing else stops
                log.error("%s: no room model (%s); env frames are stored but not windowed", self.name, exc)
        if self._room_model is not None:
            self.room_classifier = RoomClassifier(self._room_model)
        self.assembler = WindowAssembler.from_settings(self.config, self._model.rate_hz)
        kafka = self.settings.kafka
        if source is not None:
            self._consumer = source
        elif self.config.engine == "faust":
            from stream_workers.faust_source import FaustSource

            self._consumer = FaustSource(self, self.serve_metrics)  # serves /metrics itself
        else:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap, **kafka_client_kwargs(self.settings, "worker"),
                group_id=self.config.consumer_group,
                client_id=f"iotlm-{self.name}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=max(1_048_576, kafka.max_frame_bytes + 65_536),
                fetch_max_bytes=8 * 1_048_576,
            )
            self._consumer.subscribe([kafka.frames_topic], listener=_Rebalance(self))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, **kafka_client_kwargs(self.settings, "worker"),
            client_id=f"iotlm-{self.name}-out",
            max_request_size=kafka.max_frame_bytes + 65_536,
        )
        writer_executor = _single_thread("sink")
        batcher = MicroBatcher(
            self._timed(MixedInference(self.classifier, self.room_classifier), "inference"),
            max_size=self.config.batch_max, max_wait_s=self.config.batch_wait_ms / 1000,
            max_pending=self.config.max_pending_windows, on_batch=self._observe_batch,
        )
        self._batcher = batcher
        try:
            if self.config.engine != "faust":
                self._serve_metrics()
            await self._producer.start()
            if source is None:
                await self._consumer.start()
            async with batcher:
                tasks = [
                    asyncio.create_task(self._write_loop(writer_executor), name="write"),
                    asyncio.create_task(self._commit_loop(), name="commit"),
                    asyncio.create_task(self._tick_loop(), name="tick"),
                    asyncio.create_task(self._model_watch_loop(), name="model-watch"),
                ]
                consume = asyncio.create_task(self._consume_loop(batcher), name="consume")
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait([consume, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
                consume.cancel()
                stopper.cancel()
                for task in done:
                    if task is not stopper and not task.cancelled() and task.exception():
                        raise task.exception()
                await self._drain()
                for task in tasks:
                    task.cancel()
                await self._commit()
        finally:
            if source is None:
                await self._consumer.stop()
            await self._producer.stop()
            writer_executor.shutdown(wait=True)
            if self.narration is not None:
                log.info("narration: %s", self.narration.close())
            self._sink.close()
            self.metrics.close()
        return self.totals

    def _serve_metrics(self) -> None:
        if not self.serve_metrics:
            return
        port = self.config.metrics_port + self.index
        try:
            self.metrics.serve(port, self.config.metrics_host)
        except OSError as exc:  # another worker holds the port: run on, without /metrics
            log.warning("%s: no /metrics on port %d: %s", self.name, port, exc)

    def _load_room_model(self):
        from models.rooms.model import RoomStateModel

        return RoomStateModel.load(None, self.settings.models.checkpoint_dir)

    def _load_model(self, name: str | None) -> ActivityModel:
        from models.inference import MotionClassifier

        models = self.settings.models
        return MotionClassifier.load(name or models.default_model, device=models.device,
                                     checkpoint_dir=models.checkpoint_dir)

    async def _drain(self) -> None:
        """Stop with everything handed to the batcher and every raw frame written, so the last commit covers it."""
        deadline = time.monotonic() + 60
        while (self._pending or any(self._inflight.values())) and time.monotonic() < deadline:
            self._pending_added.set()  # raw frames alone do not wake the write loop
            await asyncio.sleep(0.05)

    # -- consuming ----------------------------------------------------------------------------

    async def _consume_loop(self, batcher: MicroBatcher) -> None:
        while True:
            records = await self._consumer.getmany(timeout_ms=200, max_records=500)
            generation = self._generation
            began = time.thread_time()
            for tp, batch in records.items():
                for record in batch:
                    if generation != self._generation:
                        break  # a rebalance came while handling this fetch: re-read from the commit
                    await self._guarded(record, batcher)
                    self._next_offset[tp.partition] = record.offset + 1
            self.totals.cpu_s["decode_assemble"] += time.thread_time() - began
            limit = self.config.max_pending_windows
            while len(self._pending) > limit or len(self._raw_out) > limit:
                await asyncio.sleep(0.01)  # results are waiting on the sink: stop reading more

    async def _guarded(self, record, batcher: MicroBatcher) -> None:
        """Handle one record; whatever it raises dead-letters that record, and the worker goes on."""
        try:
            await self._handle(record, batcher)
        except Exception as exc:
            log.exception("record %s:%d raised; dead-lettered", record.partition, record.offset)
            await self._dead_letter(record, "internal", f"the worker failed on this record "
                                                        f"({type(exc).__name__}: {exc})")

    def _check(self, record) -> tuple[Frame, object]:
        """The record's frame and truth labels, or FrameError: everything the gate checks, again."""
        frame = decode(record.value, self.limits)
        refusal = self.admission.refusal(frame.device_id)
        if refusal is not None:
            raise FrameError(refusal, "unknown_device")
        labels = _truth_labels(record.headers, frame)
        if frame.imu is not None and frame.duration_s > self.config.max_windows_per_frame * self.config.hop_s:
            raise FrameError(
                f"IMU frame spans {frame.duration_s:g} s, more than {self.config.max_windows_per_frame} hops of "
                f"{self.config.hop_s:g} s (settings.workers.max_windows_per_frame): send shorter frames",
                "too_long",
            )
        return frame, labels

    async def _handle(self, record, batcher: MicroBatcher) -> None:
        self.totals.frames += 1
        self.metrics.frames.inc()
        self._last_read_at = time.time()
        if await self._was_dead_lettered(record):
            return
        try:
            frame, labels = self._check(record)
        except FrameError as exc:
            await self._dead_letter(record, exc.code, exc.reason)
            return
        self._restore_device(frame.device_id)
        produced_at = record.timestamp / 1000
        raw = RawFrame(frame.device_id, frame.t0, frame.seq, record.value, produced_at, record.partition,
                       record.offset)
        self.rules.heard(frame.device_id, time.time(), frame.t_end)
        self._device_seen[frame.device_id] = (self._last_read_at, produced_at, record.partition)
        self._partition_time[record.partition] = max(self._partition_time.get(record.partition, 0.0), produced_at)
        segment = segment_from_frame(frame, labels, record.partition, record.offset, produced_at)
        if frame.env is not None and self.room_classifier is not None:
            windows = self.rooms.add(frame, record.partition, record.offset, _room_truth(record.headers, frame))
            await self._take_room_windows(windows, batcher)
        if segment is None:
            self._keep_raw(raw)
            return
        segment.source = raw
        outcome = self.assembler.add(segment)
        if outcome.refused != "held":  # a frame held aside is stored once its clock is trusted
            self._keep_raw(raw)
        if outcome.refused == "late":
            self.totals.late_frames += 1
            self.metrics.late_frames.inc()
            await self._dead_letter(record, "late", outcome.reason)
        elif outcome.refused == "duplicate":
            self.totals.duplicate_frames += 1
            self.metrics.duplicate_frames.inc()
        await self._take(outcome, batcher)

    def _restore_device(self, device_id: str) -> None:
        """The first frame of a device since this worker took it over: continue its episode and rule
        state from the durable per-device table (Faust engine), if an earlier owner left any."""
        if device_id in self._restored or not hasattr(self._consumer, "load_device"):
            return
        self._restored.add(device_id)
        state = self._consumer.load_device(device_id)
        if state:
            self.episodes.restore(device_id, state.get("episodes"))
            self.rules.restore(device_id, state.get("rules", {}))
            self.gravity.restore(device_id, state.get("gravity"))

    def _persist_devices(self, device_ids) -> None:
        if not hasattr(self._consumer, "save_device"):
            return
        for device_id in device_ids:
            self._consumer.save_device(device_id, {"episodes": self.episodes.export(device_id),
                                                   "rules": self.rules.export(device_id),
                                                   "gravity": self.gravity.export(device_id)})

    async def _take(self, outcome: FrameOutcome, batcher: MicroBatcher) -> None:
        """Windows of an assembler outcome to the batcher; held frames it decided, stored or dead-lettered."""
        for held in outcome.accepted:
            self._keep_raw(held.source)
        for window in outcome.windows:
            # held before any await: if the worker stops mid-way, the commit stays behind this window
            self._hold(window.partition, window.first_offset)
        self._sync_gap_count()
        for held, reason in outcome.rejected:
            await self._dead_letter_raw(held.source, "clock_jump", reason)
        for window in outcome.windows:
            window.up = self.gravity.observe(window.device_id, window.placement, window.acc)
            self._alerts_out.extend(self.rules.on_window(window))
            future = await batcher.submit(window)
            self._pending.append(_Pending(window, future))
            self._pending_added.set()
            self.totals.windows += 1
            self.metrics.windows.inc()
        self.metrics.pending_windows.set(len(self._pending))

    async def _take_room_windows(self, windows: list[RoomWindow], batcher: MicroBatcher) -> None:
        for window in windows:
            self._hold(window.partition, window.first_offset)  # before any await, like the IMU windows
        for window in windows:
            future = await batcher.submit(window)
            self._pending.append(_Pending(window, future))
            self._pending_added.set()
            self.totals.room_windows += 1

    def _keep_raw(self, raw: RawFrame) -> None:
        # held before any await, like the windows: the commit stays behind a frame not yet stored
        self._hold(raw.partition, raw.offset)
        self._raw_out.append(raw)

    async def _dead_letter(self, record, code: str, reason: str) -> None:
        await self._send_dead_letter(record.value, record.key, code, reason, record.partition, record.offset)

    async def _dead_letter_raw(self, raw: RawFrame, code: str, reason: str) -> None:
        await self._send_dead_letter(raw.payload, raw.device_id.encode(), code, reason, raw.partition, raw.offset)

    async def _send_dead_letter(self, value: bytes, key: bytes | None, code: str, reason: str,
                                partition: int | None = None, offset: int | None = None, **extra: str) -> None:
        """One bounded dead letter; a frames record (partition, offset) is dead-lettered once."""
        if partition is not None:
            extra = {"original_topic": self.settings.kafka.frames_topic,
                     "original_offset": f"{partition}:{offset}", **extra}
        value, truncation = bounded_payload(value, self.settings.kafka)
        headers = dead_letter_headers(reason[:MAX_REASON_CHARS], code, DLQ_SOURCE, **extra, **truncation)
        await self._producer.send_and_wait(self.settings.kafka.dlq_topic, value, key=key, headers=headers)
        if partition is not None and self._dead_lettered.get(partition) is not None:
            self._dead_lettered[partition].add(offset)
        self.totals.dlq += 1
        self.metrics.dead_lettered(code)
        log.info("dead-lettered (%s): %s", code, reason[:300])

    async def _was_dead_lettered(self, record) -> bool:
        """Whether a worker dead-lettered this record before (it is re-read after a restart). The DLQ is read
        back once per partition, from the first re-read record's timestamp on: every dead letter of a
        later record was written after that record reached Kafka."""
        p = record.partition
        if self._dead_lettered.get(p) is None:
            self._dead_lettered[p] = await self._read_dead_lettered(p, record.timestamp)
        if record.offset in self._dead_lettered[p]:
            self.totals.redelivered_dead_letters += 1
            return True
        return False

    async def _read_dead_lettered(self, partition: int, since_ms: int) -> set[int]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from deploy.topics import topic_partitions

        kafka = self.settings.kafka
        found: set[int] = set()
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                  **kafka_client_kwargs(self.settings, "worker"), enable_auto_commit=False,
                                  client_id=f"iotlm-{self.name}-dlq-reader")
        try:
            await reader.start()
            tps = [TopicPartition(kafka.dlq_topic, p) for p in range(topic_partitions(self.settings)[kafka.dlq_topic])]
            reader.assign(tps)
            starts = await reader.offsets_for_times({tp: max(0, since_ms - 1000) for tp in tps})
            ends = await reader.end_offsets(tps)
            for tp in tps:
                if starts[tp] is None:
                    reader.seek(tp, ends[tp])
                else:
                    reader.seek(tp, starts[tp].offset)
            deadline = time.monotonic() + DLQ_SCAN_TIMEOUT_S
            want = f"{partition}:".encode()
            while time.monotonic() < deadline and any([await reader.position(tp) < ends[tp] for tp in tps]):
                for batch in (await reader.getmany(timeout_ms=200)).values():
                    for letter in batch:
                        if header(letter.headers, "source") != DLQ_SOURCE.encode() or \
                                header(letter.headers, "original_topic") != kafka.frames_topic.encode():
                            continue
                        origin = header(letter.headers, "original_offset") or b""
                        if origin.startswith(want):
                            found.add(int(origin[len(want):]))
        except Exception as exc:  # reading back is an optimisation: without it a re-read may dead-letter twice
            log.warning("%s: cannot read back dead letters of partition %d: %s", self.name, partition, exc)
        finally:
            await reader.stop()
        return found

    def _sync_gap_count(self) -> None:
        gaps = self.assembler.stats.gap_windows
        if gaps > self.totals.gap_windows:
            self.metrics.gap_windows.inc(gaps - self.totals.gap_windows)
            self.totals.gap_windows = gaps
        self.totals.abandoned_windows = self.assembler.stats.abandoned_windows

    def _update_lag(self) -> None:
        lag = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is not None and tp.partition in self._next_offset:
                lag += max(0, end - self._next_offset[tp.partition])
        self.metrics.consumer_lag.set(lag)

    def _timed(self, call, stage: str):
        """`call`, adding the CPU time of the thread that runs it to totals.cpu_s[stage]."""
        def timed(*args):
            began = time.thread_time()
            try:
                return call(*args)
            finally:
                self.totals.cpu_s[stage] += time.thread_time() - began
        return timed

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.inference_seconds.observe(seconds)

    # -- writing ------------------------------------------------------------------------------

    async def _write_loop(self, executor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._pending:
                await asyncio.wait({self._pending[0].future}, timeout=TICK_S)
            else:
                self._pending_added.clear()
                try:
                    await asyncio.wait_for(self._pending_added.wait(), TICK_S)
                except TimeoutError:
                    pass
            done: list[tuple[Window, WindowResult]] = []
            while self._pending and self._pending[0].future.done():
                item = self._pending.popleft()
                if item.future.exception() is not None:
                    log.error("inference failed for %s@%.2f: %s", item.window.device_id, item.window.start,
                              item.future.exception())
                    self._release(item.window.partition, item.window.first_offset)
                    continue
                result = item.future.result()
                score = result.occupancy_count if isinstance(result, RoomStateResult) else result.probability
                if not math.isfinite(score):  # cannot happen for a finite window; never stored
                    log.error("non-finite result for %s@%.2f dropped", item.window.device_id, item.window.start)
                    self._release(item.window.partition, item.window.first_offset)
                    continue
                done.append((item.window, result))
            rooms = [r for _, r in done if isinstance(r, RoomStateResult)]
            if rooms and hasattr(self._sink, "presence"):  # the wearables in each room, from the live state
                present = await loop.run_in_executor(executor, self._sink.presence, {r.room_id for r in rooms})
                for r in rooms:
                    fuse(r, present.get(r.room_id, {}))
            done = [(w, r) for w, r in done if not isinstance(r, RoomStateResult)]
            began = time.thread_time()
            batch = self._sink_batch([r for _, r in done], rooms)
            self.totals.cpu_s["results"] += time.thread_time() - began
            if not batch:
                if getattr(self._sink, "redis_backlog", 0):  # live state held back by a Redis outage
                    await loop.run_in_executor(executor, self._sink.write, batch)
                continue
            refused = await self._write_durably(loop, executor, batch)
            refused_ids = {id(x) for x in refused.results + refused.alerts + refused.room_states}
            written_at = time.time()
            written = [r for _, r in done if id(r) not in refused_ids]
            for window, _ in done:
                self._release(window.partition, window.first_offset)
            for state in batch.room_states:
                self._release(state.partition, state.first_offset)
                if id(state) not in refused_ids:
                    self._account_room(state)
            for raw in batch.raw_frames:
                self._release(raw.partition, raw.offset)
            for result in written:
                self._account(result, written_at)
            await self._publish_alerts([a for a in batch.alerts if id(a) not in refused_ids])
            began = time.thread_time()
            self._persist_devices({r.device_id for r in written} | {a.device_id for a in batch.alerts}
                                  | {r.device_id for r in batch.room_states})
            self.totals.cpu_s["results"] += time.thread_time() - began
            if self.on_written is not None and written:
                self.on_written(written)
            if self.narration is not None:  # never waits: a full narration queue drops and counts
                self.narration.offer_episodes(batch.episodes)
                self.narration.offer_room_states(batch.room_states)

    def _sink_batch(self, results: list[WindowResult], room_states: list[RoomStateResult] = ()) -> SinkBatch:
        episodes: dict[tuple[str, float], Episode] = {}
        alerts, self._alerts_out = self._alerts_out, []
        raw_frames, self._raw_out = self._raw_out, []
        for result in results:
            for episode in self.episodes.update(result):
                episodes[(episode.device_id, episode.start)] = episode
            alerts.extend(self.rules.on_result(result))
        for state in room_states:
            alerts.extend(self.rules.on_room_state(state))
        return SinkBatch(results=results, episodes=list(episodes.values()), alerts=alerts, raw_frames=raw_frames,
                         room_states=list(room_states))

    async def _write_durably(self, loop, executor, batch: SinkBatch) -> SinkBatch:
        """Write `batch`, waiting out backpressure. Returns the records the store refused (dead-lettered):
        a batch that fails is retried record by record, so one unstorable record cannot stop the worker."""
        while True:
            try:
                await loop.run_in_executor(executor, self._timed(self._sink.write, "sink"), batch)
                return SinkBatch()
            except SinkBackpressure as exc:
                paused = self._consumer.assignment()
                self._consumer.pause(*paused)
                log.warning("sink pushed back (%s); consumption paused %.1fs", exc.reason, exc.retry_after_s)
                await asyncio.sleep(exc.retry_after_s)
                self._consumer.resume(*[tp for tp in paused if tp in self._consumer.assignment()])
            except Exception as exc:
                if len(batch) > 1:
                    refused = SinkBatch()
                    for single in batch.split():
                        refused.extend(await self._write_durably(loop, executor, single))
                    return refused
                await self._dead_letter_record(batch, exc)
                return batch

    async def _dead_letter_record(self, single: SinkBatch, exc: Exception) -> None:
        record = single.records()[0]
        kind = type(record).__name__
        reason = f"the store refused this {kind} ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        if isinstance(record, RawFrame):  # dead-lettered as the bytes it came as, once per record
            await self._send_dead_letter(record.payload, record.device_id.encode(), "unstorable", reason,
                                         record.partition, record.offset, record_type=kind)
            return
        value = json.dumps(asdict(record), default=str).encode()  # the worker's own records as JSON
        await self._send_dead_letter(value, record.device_id.encode(), "unstorable", reason, record_type=kind)

    async def _publish_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            await self._producer.send_and_wait(
                self.settings.kafka.alerts_topic, json.dumps(alert.as_dict()).encode(), key=alert.device_id.encode()
            )
            self.totals.alerts += 1
            self.metrics.alerted(alert.rule)

    def _hold(self, partition: int, offset: int) -> None:
        self._inflight.setdefault(partition, Counter())[offset] += 1

    def _release(self, partition: int, offset: int) -> None:
        inflight = self._inflight.get(partition)
        if inflight is None:
            return  # the partition was revoked meanwhile
        inflight[offset] -= 1
        if inflight[offset] <= 0:
            del inflight[offset]

    def _account_room(self, state: RoomStateResult) -> None:
        from models.rooms.windows import OCCUPANCY_BINS, occupancy_bin

        t = self.totals
        t.room_states += 1
        if state.truth_count is not None:
            t.room_truth_windows += 1
            # the room model's own answer: the simulated truth knows nothing of wearables fused in
            t.room_correct_windows += OCCUPANCY_BINS[int(occupancy_bin(round(state.truth_count)))] == state.model_occupancy
            t.room_occupied_correct += (state.truth_count > 0) == (state.model_occupancy != OCCUPANCY_BINS[0])

    def _account(self, result: WindowResult, written_at: float) -> None:
        t = self.totals
        t.results += 1
        t.model_versions[result.model_version] += 1
        self.metrics.results.inc()
        if result.completed_at > 0:
            self.metrics.end_to_end_seconds.observe(written_at - result.completed_at)
        if result.truth is not None:
            t.truth_windows += 1
            t.correct_windows += result.truth == result.activity

    # -- committing ---------------------------------------------------------------------------

    def safe_offsets(self) -> dict[int, int]:
        """Per owned partition, the offset to commit: nothing before it is still needed."""
        held = self.assembler.held_offsets()
        for p, offset in self.rooms.held_offsets().items():
            held[p] = min(held.get(p, offset), offset)
        safe = {}
        for tp in self._consumer.assignment():
            p = tp.partition
            if p not in self._next_offset:
                continue
            candidates = [self._next_offset[p], held.get(p, math.inf), min(self._inflight.get(p) or [math.inf])]
            safe[p] = int(min(candidates))
        return safe

    async def _commit(self, partitions: set[int] | None = None) -> None:
        from aiokafka import TopicPartition
        from aiokafka.errors import CommitFailedError, KafkaError

        topic = self.settings.kafka.frames_topic
        offsets = {
            TopicPartition(topic, p): o
            for p, o in self.safe_offsets().items()
            if (partitions is None or p in partitions) and self._committed.get(p) != o
        }
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:  # a rebalance is under way; the next commit catches up
            log.warning("commit skipped: %s", exc)
            return
        for tp, offset in offsets.items():
            self._committed[tp.partition] = offset

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.commit_interval_s)
            await self._commit()

    async def on_revoked(self, partitions: set[int]) -> None:
        self._generation += 1
        await self._commit(partitions)
        self.assembler.drop_partitions(partitions)
        self.rooms.drop_partitions(partitions)
        for p in partitions:
            self._inflight.pop(p, None)
            self._next_offset.pop(p, None)
            self._committed.pop(p, None)
            self._dead_lettered.pop(p, None)
            self._partition_time.pop(p, None)
        gone = {d for d, (_, _, p) in self._device_seen.items() if p in partitions}
        in_table = hasattr(self._consumer, "partition_of")  # per-device state is in the table: its next owner has it
        if in_table:  # devices restored at a takeover without a frame since are not in _device_seen
            gone |= {d for d in self.rules.devices() if self._consumer.partition_of(d) in partitions}
        for device in gone:
            self._device_seen.pop(device, None)
            self._restored.discard(device)  # if it comes back, its state is loaded afresh
            self.episodes.forget(device)
            if in_table:
                self.rules.forget(device)
                self.gravity.forget(device)

    # -- time-driven work ---------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            silent = self.rules.on_tick(time.time())
            if silent:
                self._alerts_out.extend(silent)
                self._pending_added.set()
            if hasattr(self._consumer, "taken_over"):
                for device in self._consumer.taken_over():
                    self._restore_device(device)
            await self._release_quiet_devices()
            for device in self.rooms.release_quiet(time.time(), self.config.quiet_release_s):
                log.info("%s: room device %s quiet; its buffered reports released", self.name, device)
            self._update_lag()  # a gauge: once a tick, not once a fetch (the Faust engine fetches event by event)

    async def _release_quiet_devices(self) -> None:
        """Decide and release the open windows of devices that stayed quiet while others kept talking:
        their partition's broker time moved `quiet_release_s` past their last frame, or this worker kept
        reading records for `quiet_release_s` of wall clock without one of theirs. When nobody talks (a
        broker outage, a building-wide silence) nothing is released: the commit then waits only behind
        the quiet devices' own open windows, and a stalled stream resumes without losing a window."""
        bound = self.config.quiet_release_s
        for device in self.assembler.quiet_devices():
            seen = self._device_seen.get(device)
            if seen is None:
                continue
            heard_at, produced_at, partition = seen
            by_broker = self._partition_time.get(partition, produced_at) - produced_at >= bound
            if not (by_broker or self._last_read_at - heard_at >= bound):
                continue
            outcome = self.assembler.flush_device(device)
            self.totals.released_devices += 1
            log.info("%s: %s quiet; %d window(s) decided, buffers released", self.name, device, len(outcome.windows))
            await self._take(outcome, self._batcher)

    async def _read_promoted(self, client) -> str | None:
        """The checkpoint named by the promotion key, or None (unset, or Redis unreachable)."""
        from redis.exceptions import RedisError

        try:
            value = await client.get(self.config.model_key)
        except RedisError as exc:
            log.warning("cannot read %s: %s", self.config.model_key, exc)
            return None
        return value.decode() if value else None

    async def _model_watch_loop(self) -> None:
        import redis.asyncio as redis

        client = redis.from_url(self.settings.redis_url, **redis_auth(self.settings, "worker"))
        loop = asyncio.get_running_loop()
        try:
            while True:
                promoted = await self._read_promoted(client)
                if promoted and promoted != self.promoted:
                    try:
                        model = await loop.run_in_executor(None, self._load_model, promoted)
                    except Exception as exc:  # a bad promotion must not stop the worker
                        log.error("cannot load promoted model %r: %s", promoted, exc)
                    else:
                        self.classifier.swap(model)
                        self.assembler.rate_hz = model.rate_hz
                        log.info("%s now serves model %s", self.name, model.version)
                    self.promoted = promoted
                await asyncio.sleep(self.config.model_poll_s)
        finally:
            await client.aclose()


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka calls this around a rebalance; revoked partitions get a last commit, then are forgotten."""

    def __init__(self, worker: StreamWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        if self.worker.assembler is not None:
            await self.worker.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned) -> None:
        self.worker.metrics.assigned_partitions.set(len(assigned))
        if assigned:
            self.worker.ready.set()


def _single_thread(name: str):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
