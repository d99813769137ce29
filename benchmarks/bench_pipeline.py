"""The whole path under load: replayed devices at real time -> Kafka -> worker processes -> PostgreSQL.

    iotlm bench pipeline --devices 1000 --duration 30 --workers 2 --json
    iotlm bench sweep --devices 10,100,300,1000,3000,5000 --workers 1,2   # the scaling curve and its plot

One run (`run_load`):
1. Frames of `devices` HAPT devices (1 s frames at 50 Hz, the replay's own code) are built and encoded
   beforehand, timed alone: the generator's ceiling, never part of the measured path.
2. `workers` real `iotlm worker` processes join a consumer group on the run's private topics and database
   (admission from settings: a sandbox fleet, no registry rows for thousands of devices).
3. The frames are sent at real time: every second each device's frame for the last second, with the
   product's producer (kafka-python, acks=all). Load grows with the number of devices (each device
   makes one window per hop, 0.78 windows/s at the default 2.56 s / 1.28 s).
4. After the drain, storage is read back: windows stored against the windows the workers' own
   assembler cuts from the same frames offline (lost, unexpected), rows beyond one per window
   (duplicates), and per window the latency from its last frame's timestamp (the second it was complete
   at the device) to its row's commit time (`created_at`, the server clock of the same machine).
5. `windows_per_s` is the steady rate (rows committed over whole hops in the middle half of the send window); the path
   keeps up while nothing is lost and that rate is at least 95 % of the offered one, less one hop's burst
   over the span (the rate's resolution: a burst committed just past the span's end drops one).
6. Which stage saturates: CPU seconds of every process on the path over the run (producer, broker,
   workers, PostgreSQL, Redis), the workers' CPU split by the thread CPU of each of their stages
   (`WorkerTotals.cpu_s`: decode + assembly, inference, sink, results; the rest is Faust's and the
   Kafka clients' machinery), and whether the producer kept its schedule.

`stage_ceilings` measures each stage alone on the same frames, in the same run: the generator, the
product's producer and Kafka's own `ProducerPerformance` (same jars, same record size, acks=all),
decode + assembly as a worker does it, and the encoder alone (the ceiling the pipeline is held to).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np

from iotlm.credentials import postgres_connect_kwargs

FRAME_S = 1.0
SETTLE_S = 5.0  # no new row for this long after the last frame: the run is drained
DRAIN_TIMEOUT_S = 900.0  # a saturated run drains its backlog at the path's capacity: minutes


def private(settings, tag: str):
    """`settings` with this run's own topics, consumer group and database (on the PostgreSQL lane)."""
    return settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"bench.{tag}.frames", "dlq_topic": f"bench.{tag}.dlq",
            "alerts_topic": f"bench.{tag}.alerts", "control_topic": f"bench.{tag}.control",
        }),
        "workers": settings.workers.model_copy(update={"consumer_group": f"bench-{tag}",
                                                       "model_key": f"bench:{tag}:model"}),
        "stack": settings.stack.model_copy(update={"postgres_db": f"iotlm_bench_{tag}"}),
        "storage": settings.storage.model_copy(update={"lane": "postgresql"}),
    })


@contextlib.contextmanager
def private_run(settings):
    """A private copy of `settings` (see `private`) whose database exists and is migrated; its
    database and topics are dropped on exit. `settings`' own database must exist (the stack is up)."""
    import psycopg

    from storage.migrate import upgrade

    run_settings = private(settings, uuid.uuid4().hex[:8])
    db = run_settings.stack.postgres_db
    with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        upgrade(run_settings.database_url)
        yield run_settings
    finally:
        with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        drop_topics(run_settings)


def drop_topics(settings) -> None:
    from kafka.errors import UnknownTopicOrPartitionError

    from deploy.topics import admin_client, topic_partitions

    admin = admin_client(settings, client_id="iotlm-bench-cleanup")
    try:
        admin.delete_topics(list(topic_partitions(settings)))
    except UnknownTopicOrPartitionError:
        pass  # the run failed before creating them
    finally:
        admin.close()


# ------------------------------------------------------------------------------------------- the load
@dataclass
class Load:
    """Encoded frames, `frames[seq]` = every device's frame number `seq` as (device id, bytes)."""

    devices: list[str]
    start_time: float  # t0 of frame 0
    frames: list[list[tuple[str, bytes]]]
    generator_frames_per_s: float
    expected: dict[str, set[float]]  # device -> window starts its frames make (the workers' assembler, offline)

    @property
    def n_frames(self) -> int:
        return sum(len(batch) for batch in self.frames)

    @property
    def mean_frame_bytes(self) -> float:
        sizes = [len(value) for batch in self.frames for _, value in batch]
        return float(np.mean(sizes)) if sizes else 0.0


def build_load(settings, devices: int, duration_s: float, rate_hz: float) -> Load:
    """Every frame the run will send, encoded; timed alone (the generator's ceiling). `rate_hz`: the
    model's rate, for the offline assembly of the expected windows."""
    from ingest.codec import encode
    from ingest.simulate import hapt_devices
    from stream_workers.app import segment_from_frame
    from stream_workers.windows import WindowAssembler

    replayed = hapt_devices(devices)
    n_frames = int(duration_s / FRAME_S)
    start_time = time.time()
    frames: list[list[tuple[str, bytes]]] = [[] for _ in range(n_frames)]
    began = time.perf_counter()
    for seq in range(n_frames):
        t0 = start_time + seq * FRAME_S
        for device_id, signal_ in replayed:
            cut = signal_.frame(device_id, seq, t0, FRAME_S)
            if cut is not None:
                frames[seq].append((device_id, encode(cut[0])))
    generator_frames_per_s = sum(map(len, frames)) / (time.perf_counter() - began)
    # Copies of a subject share its signal, so one offline assembly per subject gives every copy's windows.
    by_signal: dict[int, set[float]] = {}
    expected = {}
    for device_id, signal_ in replayed:
        if id(signal_) not in by_signal:
            assembler = WindowAssembler.from_settings(settings.workers, rate_hz)
            starts: set[float] = set()
            for seq in range(n_frames):
                cut = signal_.frame(device_id, seq, start_time + seq * FRAME_S, FRAME_S)
                if cut is None:
                    break
                starts |= {round(w.start, 3) for w in assembler.add(segment_from_frame(cut[0], None, 0, seq, 0.0)).windows}
            by_signal[id(signal_)] = starts
        expected[device_id] = by_signal[id(signal_)]
    return Load([d for d, _ in replayed], start_time, frames, generator_frames_per_s, expected)


# ------------------------------------------------------------------------------------------ processes
class WorkerProcesses:
    """`count` real `iotlm worker` processes on the run's settings; totals read from their --json output."""

    def __init__(self, settings, count: int, logs_dir):
        from deploy.process import free_port_block

        port = free_port_block(count)
        self.settings = settings.model_copy(update={"workers": settings.workers.model_copy(update={"metrics_port": port})})
        env = os.environ | self.settings.environ()
        self.outputs = [open(logs_dir / f"worker-{i}.json", "w+") for i in range(count)]
        self.logs = [open(logs_dir / f"worker-{i}.log", "w") for i in range(count)]
        self.procs = [subprocess.Popen([sys.executable, "-m", "iotlm", "worker", "--index", str(i), "--json"],
                                       env=env, stdout=self.outputs[i], stderr=self.logs[i]) for i in range(count)]

    def metric(self, name: str) -> float:
        """`name` summed over the workers' /metrics; -1 while one of them does not answer."""
        import urllib.request

        total = 0.0
        for i in range(len(self.procs)):
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{self.settings.workers.metrics_port + i}/metrics",
                                              timeout=2).read().decode()
            except OSError:
                return -1.0
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
        return total

    def assigned_partitions(self) -> float:
        return self.metric("iotlm_worker_assigned_partitions")

    def frames_consumed(self) -> float:
        return self.metric("iotlm_worker_frames_total")

    def wait_ready(self, partitions: int, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a worker exited early; see {self.logs[0].name}")
            if self.assigned_partitions() == partitions:
                time.sleep(2.0)  # let the group settle after the last member joined
                if self.assigned_partitions() == partitions:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"workers did not share the {partitions} partitions within {timeout_s:.0f} s")

    def stop(self) -> list[dict]:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        totals = []
        for p, out, log in zip(self.procs, self.outputs, self.logs):
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            out.seek(0)
            text = out.read().strip().splitlines()
            totals.append(json.loads(text[-1]) if text else {})
            out.close()
            log.close()
        return totals


def stack_processes() -> dict[str, list]:
    """The stack's processes on this machine by component (psutil), to read their CPU time."""
    import psutil

    found: dict[str, list] = {"broker": [], "postgres": [], "redis": []}
    for proc in psutil.process_iter(["name", "cmdline"]):
        name, cmdline = proc.info["name"] or "", " ".join(proc.info["cmdline"] or [])
        if name == "java" and "kafka.Kafka" in cmdline:
            found["broker"].append(proc)
        elif name.startswith("postgres") or cmdline.startswith("postgres:"):
            found["postgres"].append(proc)
        elif name.startswith("redis-server"):
            found["redis"].append(proc)
    return found


def cpu_seconds(procs) -> dict[int, float]:
    """CPU seconds so far of each process (pid -> seconds); gone ones are left out."""
    import psutil

    seconds = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            seconds[proc.pid] = t.user + t.system
    return seconds


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings: processes started meanwhile (PostgreSQL forks a backend per
    connection) count whole; processes gone meanwhile are lost, which undercounts, never negative."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# ------------------------------------------------------------------------------------------------ a run
def send_at_real_time(settings, load: Load) -> dict:
    """Each second, every device's frame of the second just past; returns the schedule kept."""
    from ingest.codec import CONTENT_TYPE_HEADER, CONTENT_TYPES
    from ingest.producer import DeviceProducer

    headers = [(CONTENT_TYPE_HEADER, CONTENT_TYPES["msgpack"].encode())]
    topic = settings.kafka.frames_topic
    scheduled, behind = [], []
    with DeviceProducer(settings, client_id="iotlm-bench-load") as producer:
        clock = time.time()
        for seq, batch in enumerate(load.frames):
            due = clock + (seq + 1) * FRAME_S  # frame `seq` is complete at the device
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            scheduled.append(due)
            for device_id, value in batch:
                producer.send_raw(topic, device_id, value, headers)
            behind.append(time.time() - due)  # the burst's last frame, after its due time
        producer.flush()
        flushed = time.time()
    return {"scheduled": scheduled, "send_wall_s": flushed - clock, "behind_s": behind, "flushed_at": flushed}


def stored_windows(settings) -> list[tuple[str, float, float, float]]:
    """(device, window start, window end, committed at) of every row in the run's database."""
    import psycopg

    with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
        return conn.execute(
            "SELECT device_id, extract(epoch FROM window_start)::float8, extract(epoch FROM window_end)::float8, "
            "extract(epoch FROM created_at)::float8 FROM window_predictions").fetchall()


def count_windows(settings) -> int:
    import psycopg

    with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
        return conn.execute("SELECT count(*) FROM window_predictions").fetchone()[0]


def raw_frame_duplicates(settings) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
        rows, unique = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM raw_frames").fetchone()
    return rows, rows - unique


def wait_drained(settings, fleet: WorkerProcesses, frames_sent: int, expected: int) -> float:
    """Until every expected row is stored, or the workers have read every frame sent and no row has come
    for SETTLE_S (a busy machine can stall a worker longer than that mid-backlog); returns when the last
    row came."""
    last, last_change, deadline = -1, time.time(), time.time() + DRAIN_TIMEOUT_S
    while time.time() < deadline:
        n = count_windows(settings)
        if n != last:
            last, last_change = n, time.time()
        if n >= expected:
            break
        if time.time() - last_change >= SETTLE_S and fleet.frames_consumed() >= frames_sent:
            break
        time.sleep(0.5)
    return last_change


def run_load(settings, load: Load, workers: int, logs_dir, console=None) -> dict:
    """One measured run of `load` through `workers` worker processes (see the module's docstring)."""
    import psutil

    from deploy.topics import ensure_topics

    hop = settings.workers.hop_s
    threads = settings.workers.torch_threads or max(1, (os.cpu_count() or 1) // workers)  # no more threads than cores
    sandbox = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"admission": "settings"}),
                                          "workers": settings.workers.model_copy(update={"torch_threads": threads})})
    with private_run(sandbox) as run:
        ensure_topics(run)
        run_logs = logs_dir / f"{len(load.devices)}d-{workers}w-{run.workers.consumer_group}"  # kept per run
        run_logs.mkdir(parents=True, exist_ok=True)
        fleet = WorkerProcesses(run, workers, run_logs)
        try:
            fleet.wait_ready(run.kafka.partitions)
            own = {"workers": [psutil.Process(p.pid) for p in fleet.procs], "producer": [psutil.Process()]}
            cpu_before = {name: cpu_seconds(procs) for name, procs in (stack_processes() | own).items()}
            wall_before = time.time()
            sent = send_at_real_time(run, load)
            expected_total = sum(map(len, load.expected.values()))
            drained_at = wait_drained(run, fleet, load.n_frames, expected_total)
            cpu = {name: cpu_used(cpu_before[name], cpu_seconds(procs)) for name, procs in (stack_processes() | own).items()}
            wall = time.time() - wall_before
        finally:
            totals = fleet.stop()
        rows = stored_windows(run)
        raw_rows, raw_duplicates = raw_frame_duplicates(run)

    windows = {(d, round(s, 3)) for d, s, _, _ in rows}
    expected = {(d, s) for d, starts in load.expected.items() for s in starts}
    first_due = sent["scheduled"][0] - FRAME_S
    latencies = []
    for _device, _start, end, committed in rows:
        seq = max(0, int(np.ceil((end - load.start_time) / FRAME_S - 1e-6)) - 1)  # the frame with the last sample
        if seq < len(sent["scheduled"]):
            latencies.append(committed - sent["scheduled"][seq])
    # stored per second from the first frame's due time to the last row (what a user waits for), and the
    # steady rate: rows committed over the middle half of the send window, per second (the offered rate
    # while the path keeps up, its capacity once saturated: neither start-up nor the drain tail in it).
    # The span is a whole number of hops: windows complete in one burst per hop, and a span holding a
    # fraction of a hop would count one burst more or less than its share (a short run's rate off by 25 %)
    span = max((c for *_, c in rows), default=first_due) - first_due
    hops = max(1, round(0.5 * len(load.frames) * FRAME_S / hop))
    mid_from = first_due + 0.25 * len(load.frames) * FRAME_S
    mid_to = mid_from + hops * hop
    steady = sum(mid_from <= c < mid_to for *_, c in rows) / (mid_to - mid_from)
    offered = expected_total / (len(load.frames) * FRAME_S)
    stage_cpu = {stage: sum(t.get("cpu_s", {}).get(stage, 0.0) for t in totals)
                 for stage in ("decode_assemble", "inference", "sink", "results")}
    # the rest of the workers' CPU: Faust's and the Kafka clients' machinery on the event loop, metrics
    stage_cpu["other"] = max(0.0, cpu["workers"] - sum(stage_cpu.values()))
    result = {
        "devices": len(load.devices), "workers": workers, "worker_torch_threads": threads,
        "duration_s": len(load.frames) * FRAME_S,
        "frames_sent": load.n_frames, "mean_frame_bytes": round(load.mean_frame_bytes),
        "frames_per_s": load.n_frames / sent["send_wall_s"],
        "offered_windows_per_s": offered,
        "windows_per_s": steady,
        # the steady rate's resolution: one hop's burst (a window per device) more or less in its span
        "windows_per_s_resolution": len(load.devices) / (mid_to - mid_from),
        "windows_per_s_first_frame_to_last_row": len(windows) / span if span > 0 else 0.0,
        "windows_expected": len(expected), "windows_stored": len(windows),
        "lost": len(expected - windows), "unexpected": len(windows - expected),
        "lost_examples": sorted(expected - windows)[:10], "unexpected_examples": sorted(windows - expected)[:10],
        "duplicates": len(rows) - len(windows) + raw_duplicates,
        "raw_frame_rows": raw_rows,
        "latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p99_s": float(np.percentile(latencies, 99)) if latencies else None,
        "latency_max_s": float(max(latencies)) if latencies else None,
        "drain_after_last_frame_s": drained_at - sent["scheduled"][-1],
        # after the last frame was due, the producer still sending or waiting for acknowledgements
        "producer_late_s": sent["flushed_at"] - sent["scheduled"][-1],
        "producer_behind_median_s": float(np.median(sent["behind_s"])),
        "cpu_cores_used": {name: round(seconds / wall, 3) for name, seconds in cpu.items()},
        "worker_cpu_s": {stage: round(s, 2) for stage, s in stage_cpu.items()},
        "dead_lettered": sum(t.get("dlq", 0) for t in totals),
        "late_frames": sum(t.get("late_frames", 0) for t in totals),
        "wall_s": wall, "first_frame_due": first_due,
    }
    result["saturated_stage"] = saturated_stage(result)
    result["latency_aim_met"] = latency_aim_met(result, hop)
    if console is not None:
        console.print(f"{result['devices']} devices, {workers} worker(s): {result['windows_per_s']:.0f} of "
                      f"{offered:.0f} windows/s offered, p99 {result['latency_p99_s'] or 0:.2f} s, "
                      f"lost {result['lost']}, duplicates {result['duplicates']}, saturated: {result['saturated_stage']}")
    return result


def keeping_up(result: dict) -> bool:
    """The path keeps up with the load: every window stored, at the rate they are offered (within 5 %, and
    within the steady rate's resolution: a burst committed just past the span's end on a busy machine
    drops a short run's count by one burst, a quarter or half of it, with no backlog behind it)."""
    tolerance = 0.05 * result["offered_windows_per_s"] + result.get("windows_per_s_resolution", 0.0)
    return result["lost"] == 0 and result["windows_per_s"] >= result["offered_windows_per_s"] - tolerance


def latency_aim_met(result: dict, hop_s: float) -> bool:
    """The latency aim: p99 from a window's last frame to its stored row within a hop plus a second."""
    return result["latency_p99_s"] is not None and result["latency_p99_s"] <= hop_s + 1.0


def saturated_stage(result: dict) -> str:
    """'none' while the path keeps up; else the stage that ran out first: the producer when it could not
    keep its schedule, otherwise the component using the most CPU, the workers' share split by stage."""
    if keeping_up(result):
        return "none"
    # the producer, when it fell behind its schedule and that is most of the latency (latency counts from
    # when a frame was due, so a late producer shows in it; a backlog in the workers shows only there)
    if result["producer_late_s"] > FRAME_S and result["producer_late_s"] >= 0.5 * (result["latency_p99_s"] or 0.0):
        return "producer"
    cores = dict(result["cpu_cores_used"])
    worker_cores = cores.pop("workers", 0.0)
    stage_cpu = result["worker_cpu_s"]
    total = sum(stage_cpu.values()) or 1.0
    cores |= {f"worker {stage}": worker_cores * s / total for stage, s in stage_cpu.items()}
    return max(cores, key=cores.get)


# --------------------------------------------------------------------------------------- stages alone
def encoder_ceiling(settings, model, threads: int) -> float:
    """Windows/s of the workers' classifier alone on ready windows, batches of workers.batch_max, with
    `threads` torch threads (the best of 1..threads: on a shared machine fewer threads can win)."""
    import torch

    from benchmarks.bench_batching import hapt_windows
    from stream_workers.inference import WindowClassifier

    windows = hapt_windows(2048, model.rate_hz, settings.workers)
    classify = WindowClassifier(model, settings.workers.labels)
    classify(windows[:8])
    before = torch.get_num_threads()
    best = 0.0
    try:
        for n in range(1, threads + 1):
            torch.set_num_threads(n)
            for _ in range(3):  # best of three per thread count: the ceiling, not the noise
                began = time.perf_counter()
                for i in range(0, len(windows), settings.workers.batch_max):
                    classify(windows[i:i + settings.workers.batch_max])
                best = max(best, len(windows) / (time.perf_counter() - began))
    finally:
        torch.set_num_threads(before)
    return best


def decode_assemble_ceiling(settings, load: Load, rate_hz: float, limit: int = 20_000) -> float:
    """Frames/s through what a worker does per record before inference: decode and check, admission,
    segment, assembly (one process, no Kafka)."""
    from ingest.codec import decode
    from ingest.frame import FrameLimits
    from ingest.gate import SettingsAdmission
    from stream_workers.app import segment_from_frame
    from stream_workers.windows import WindowAssembler

    limits = FrameLimits.from_settings(settings)
    admission = SettingsAdmission(settings.ingest)
    assembler = WindowAssembler.from_settings(settings.workers, rate_hz)
    records = [value for batch in load.frames for _, value in batch][:limit]
    began = time.perf_counter()
    for offset, value in enumerate(records):
        frame = decode(value, limits)
        admission.refusal(frame.device_id)
        assembler.add(segment_from_frame(frame, None, 0, offset, 0.0))
    return len(records) / (time.perf_counter() - began)


def producer_ceiling(settings, load: Load, limit: int = 50_000) -> float:
    """Frames/s the product's producer (kafka-python, acks=all) hands to the broker and gets
    acknowledged, as fast as it can, on a private topic."""
    from deploy.topics import ensure_topics
    from ingest.producer import DeviceProducer

    records = [(d, v) for batch in load.frames for d, v in batch]
    records = (records * (limit // max(1, len(records)) + 1))[:limit]  # enough to reach a steady rate
    run = private(settings, "p" + uuid.uuid4().hex[:7])
    ensure_topics(run)
    try:
        with DeviceProducer(run, client_id="iotlm-bench-producer") as producer:
            began = time.perf_counter()
            for device_id, value in records:
                producer.send_raw(run.kafka.frames_topic, device_id, value, [])
            producer.flush()
            return len(records) / (time.perf_counter() - began)
    finally:
        drop_topics(run)


def kafka_perf_ceiling(settings, record_bytes: int, records: int = 200_000) -> dict:
    """Kafka's own ProducerPerformance (the broker's jars) on a private topic: same record size, acks=all,
    as the ingest principal, the product's linger and batch size."""
    from deploy.services import kafka_java_argv
    from deploy.topics import ensure_topics
    from iotlm.credentials import kafka_tool_config

    run = private(settings, "k" + uuid.uuid4().hex[:7])
    ensure_topics(run)
    try:
        argv = kafka_java_argv("org.apache.kafka.tools.ProducerPerformance") + [
            "--topic", run.kafka.frames_topic, "--num-records", str(records), "--record-size", str(record_bytes),
            "--throughput", "-1", "--producer.config", str(kafka_tool_config(settings, "ingest")),
            "--producer-props", f"bootstrap.servers={settings.kafka_bootstrap}", "acks=all",
            f"linger.ms={settings.kafka.producer_linger_ms}", f"batch.size={settings.kafka.producer_batch_bytes}",
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    finally:
        drop_topics(run)
    # the last line: "N records sent, X records/sec (Y MB/sec), A ms avg latency, ..."
    summary = [line for line in out.splitlines() if "records sent" in line][-1]
    fields = [part.strip() for part in summary.split(",")]
    return {"records_per_s": float(fields[1].split()[0]), "mb_per_s": float(fields[1].split("(")[1].split()[0]),
            "summary": summary}


def stage_ceilings(settings, load: Load, model, threads: int) -> dict:
    return {
        "generator_frames_per_s": load.generator_frames_per_s,
        "producer_frames_per_s": producer_ceiling(settings, load),
        "kafka_producer_perf": kafka_perf_ceiling(settings, round(load.mean_frame_bytes)),
        "decode_assemble_frames_per_s": decode_assemble_ceiling(settings, load, model.rate_hz),
        "encoder_ceiling_windows_per_s": encoder_ceiling(settings, model, threads),
        "windows_per_device_per_s": 1.0 / settings.workers.hop_s,
    }


# ----------------------------------------------------------------------------------------- commands
def _prepare(settings):
    """Stack up (each run's database is created beside the stack's own) and the served model."""
    from deploy.stack import Stack
    from models.inference import MotionClassifier

    Stack(settings).up()
    return MotionClassifier.load(settings.models.default_model, device=settings.models.device,
                                 checkpoint_dir=settings.models.checkpoint_dir)


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values)),
            "runs": len(values)} if values else {}


def pipeline(settings, devices: int, duration_s: float, workers: int, repeats: int, threads: int,
             logs_dir, console) -> dict:
    """`repeats` runs of one load, the stages alone on the same frames, in one process and machine state."""
    model = _prepare(settings)
    with console.status(f"building {devices} devices' frames"):
        load = build_load(settings, devices, duration_s, model.rate_hz)
    with console.status("each stage alone: producer, Kafka's ProducerPerformance, decode + assembly, encoder"):
        ceilings = stage_ceilings(settings, load, model, threads)
    console.print({k: v for k, v in ceilings.items() if k != "kafka_producer_perf"}
                  | {"kafka_perf_records_per_s": ceilings["kafka_producer_perf"]["records_per_s"]})
    runs = []
    for i in range(repeats):
        console.rule(f"run {i + 1} of {repeats}: {devices} devices, {workers} worker(s), {duration_s:g} s")
        runs.append(run_load(settings, load, workers, logs_dir, console))
    median = {key: spread([r[key] for r in runs]) for key in ("windows_per_s", "frames_per_s", "latency_p50_s", "latency_p99_s")}
    pick = sorted(runs, key=lambda r: r["windows_per_s"])[len(runs) // 2]  # the median run, whole
    ceiling = ceilings["encoder_ceiling_windows_per_s"]
    return {
        "devices": devices, "workers": workers, "duration_s": duration_s, "repeats": repeats, "torch_threads": threads,
        "model_version": model.version, "stream_engine": settings.workers.engine,
        "window_s": settings.workers.window_s, "hop_s": settings.workers.hop_s,
        "batch_max": settings.workers.batch_max, "batch_wait_ms": settings.workers.batch_wait_ms,
        "partitions": settings.kafka.partitions,
        "frames_per_s": median["frames_per_s"]["median"], "windows_per_s": median["windows_per_s"]["median"],
        "encoder_ceiling_windows_per_s": ceiling,
        "pipeline_over_encoder": median["windows_per_s"]["median"] / ceiling,
        "latency_p50_s": median["latency_p50_s"].get("median"), "latency_p99_s": median["latency_p99_s"].get("median"),
        "lost": sum(r["lost"] for r in runs), "duplicates": sum(r["duplicates"] for r in runs),
        "saturated_stage": pick["saturated_stage"], "spread": median, "stages_alone": ceilings, "runs": runs,
    }


def sweep(settings, device_counts: list[int], worker_counts: list[int], duration_s: float, threads: int,
          logs_dir, console) -> dict:
    """For each worker count, the device counts in order until the first that saturates the path (each
    point after the drain, so a saturated point still counts what it stored late, not as lost), then a
    run at 80 % of the load it sustained."""
    model = _prepare(settings)
    hop = settings.workers.hop_s
    loads: dict[int, Load] = {}

    def load_of(devices: int) -> Load:
        if devices not in loads:
            with console.status(f"building {devices} devices' frames"):
                loads[devices] = build_load(settings, devices, duration_s, model.rate_hz)
        return loads[devices]

    with console.status("each stage alone"):
        ceilings = stage_ceilings(settings, load_of(min(1000, max(device_counts))), model, threads)
    points: dict[int, list] = {w: [] for w in worker_counts}
    saturation = {}
    for workers in worker_counts:
        for devices in device_counts:
            console.rule(f"{devices} devices, {workers} worker(s)")
            points[workers].append(run_load(settings, load_of(devices), workers, logs_dir, console))
            if not keeping_up(points[workers][-1]):
                break
        sat = points[workers][-1]
        if keeping_up(sat):
            saturation[workers] = {"devices": None, "note": "kept up with every load tried"}
            continue
        capacity = sat["windows_per_s"]  # what the saturated path stored per second
        at80 = max(1, int(0.8 * capacity * hop))  # devices making 80 % of that load
        console.rule(f"80 % of the saturation load: {at80} devices, {workers} worker(s)")
        check = run_load(settings, load_of(at80), workers, logs_dir, console)
        saturation[workers] = {"devices": sat["devices"], "capacity_windows_per_s": capacity,
                               "saturated_stage": sat["saturated_stage"], "at_80_percent": check}
    return {"duration_s": duration_s, "torch_threads": threads, "model_version": model.version,
            "stream_engine": settings.workers.engine, "hop_s": hop, "partitions": settings.kafka.partitions,
            "device_counts": device_counts, "worker_counts": worker_counts, "stages_alone": ceilings,
            "points": {str(w): r for w, r in points.items()}, "saturation": {str(w): s for w, s in saturation.items()}}


def plot_sweep(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ceiling = result["stages_alone"]["encoder_ceiling_windows_per_s"]
    for workers, points in result["points"].items():
        devices = [p["devices"] for p in points]
        line, = left.plot(devices, [p["windows_per_s"] for p in points], "o-", label=f"{workers} worker(s): stored")
        right.plot(devices, [p["latency_p99_s"] or np.nan for p in points], "o-", color=line.get_color(),
                   label=f"{workers} worker(s)")
        check = result["saturation"].get(workers, {}).get("at_80_percent")
        if check:  # the run at 80 % of the load the saturated path sustained
            left.plot([check["devices"]], [check["windows_per_s"]], "s", mfc="none", color=line.get_color(),
                      label=f"{workers} worker(s): 80 % of saturation")
            right.plot([check["devices"]], [check["latency_p99_s"]], "s", mfc="none", color=line.get_color())
    offered = sorted({p["devices"] for points in result["points"].values() for p in points})
    left.plot(offered, [d / result["hop_s"] for d in offered], "k:", label="offered (1 window per hop per device)")
    left.axhline(ceiling, color="grey", ls="--", label=f"encoder alone {ceiling:.0f}/s")
    right.axhline(result["hop_s"] + 1.0, color="grey", ls="--", label="aim: hop + 1 s")
    for ax, title, unit in ((left, "throughput", "windows/s"), (right, "end-to-end p99 latency", "seconds")):
        ax.set_xscale("log")
        ax.set_xlabel("replayed devices (real time)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=8)
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
