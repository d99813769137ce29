"""Worker processes killed with SIGKILL mid-stream and restarted.

No window may be missing (the commit never passed a frame an open window needed) and none may be
stored twice (re-emitted windows upsert the same row); an episode open at the kill goes on as one
episode and no alert is raised twice (per-device state in the workers' Faust table). Workers run as
real `iotlm worker` processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from iotlm.credentials import kafka_client_kwargs, postgres_connect_kwargs

pytestmark = [pytest.mark.services, pytest.mark.slow]

DEVICES, DURATION_S, SPEED = 8, 40.0, 4.0


def worker_env(settings, settings_env: dict) -> dict:
    """The session's stack (settings_env) plus this test's private topics, group and database."""
    return settings_env | settings.environ()


class WorkerProcess:
    def __init__(self, settings, env: dict, index: int, logs):
        self.index, self.port = index, settings.workers.metrics_port + index
        self.log = open(logs / f"worker-{index}-{time.monotonic_ns()}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "iotlm", "worker", "--index", str(index)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def metric(self, name: str) -> float | None:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self, sig=signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.parametrize("engine", ["aiokafka", "faust"])
def test_kill_dash_nine_one_of_two_workers_mid_stream_loses_and_duplicates_no_window(
    engine, isolated, settings_env, expected_windows, stored_windows, stored_raw_frames, tmp_path
):
    from ingest.codec import decode
    from ingest.simulate import hapt_devices, replay_hapt

    isolated = isolated.model_copy(update={"workers": isolated.workers.model_copy(update={"engine": engine})})
    hop = isolated.workers.hop_s
    start = (time.time() - 14_400) // hop * hop
    devices = hapt_devices(DEVICES)
    frames = [signal.frame(d, seq, start + seq, 1.0) for d, signal in devices for seq in range(int(DURATION_S))]
    expected = expected_windows(isolated, frames, rate_hz=25.0)
    device_ids = [d for d, _ in devices]

    env = worker_env(isolated, settings_env)
    workers = [WorkerProcess(isolated, env, i, tmp_path) for i in (0, 1)]
    try:
        partitions = isolated.kafka.partitions
        wait_for(lambda: all((w.metric("iotlm_worker_assigned_partitions") or 0) > 0 for w in workers)
                 and sum(w.metric("iotlm_worker_assigned_partitions") or 0 for w in workers) == partitions,
                 120, "both workers to own partitions")
        replay = threading.Thread(target=replay_hapt, args=(isolated,), kwargs=dict(
            devices=DEVICES, speed=SPEED, duration_s=DURATION_S, start_time=start, progress=False))
        replay.start()
        wait_for(lambda: (workers[1].metric("iotlm_worker_results_total") or 0) > 0, 60, "worker 1 to write")
        workers[1].stop(signal.SIGKILL)  # mid-stream: frames buffered, windows in flight, offsets uncommitted
        killed_at = len(stored_windows(isolated, device_ids))
        workers[1] = WorkerProcess(isolated, env, 1, tmp_path)
        replay.join()
        wait_for(lambda: len(stored_windows(isolated, device_ids)) >= len(expected), 150, "every window stored")
        time.sleep(2.0)  # a late duplicate would land now
    finally:
        codes = [w.stop() for w in workers]
    stored = stored_windows(isolated, device_ids)
    assert 0 < killed_at < len(expected)
    assert sorted(stored) == sorted(expected)
    assert codes == [0, 0]
    # the raw frames went with the results: each frame sent is stored once, as it was encoded
    raw = stored_raw_frames(isolated, device_ids)
    assert sorted((d, seq) for d, seq, _ in raw) == sorted((f.device_id, f.seq) for f, _ in frames)
    assert all(decode(payload).seq == seq for _, seq, payload in raw)


def test_an_episode_open_across_a_kill_stays_one_episode_and_no_alert_is_raised_twice(
    isolated, settings_env, stored_windows, tmp_path
):
    import numpy as np
    import psycopg

    from ingest.frame import Frame, ImuStream
    from ingest.producer import DeviceProducer
    from ingest.simulate import hapt_devices
    from stream_workers.episodes import EpisodeTracker
    from stream_workers.records import WindowResult

    # the Faust engine: its device-state table is what carries the episode, the cooldown and the silence
    # timer over the kill
    isolated = isolated.model_copy(update={"workers": isolated.workers.model_copy(update={
        "no_movement_s": 4.0, "quiet_release_s": 3.0, "silent_device_s": 12.0, "engine": "faust"})})
    hop, seconds = isolated.workers.hop_s, 40
    start = (time.time() - 7200) // hop * hop
    (walker, signal_), = hapt_devices(1)
    # gone: 4 frames, then silent from before the kill; on a partition of its own (murmur2: 3 of 4), so the
    # commit passes its frames once its windows are written
    still, gone = "dev-still-1", "dev-gone-3"
    rng = np.random.default_rng(3)
    gone_quiet_since: list[float] = []

    def stream():
        with DeviceProducer(isolated) as producer:
            for seq in range(seconds):
                frame, truth = signal_.frame(walker, seq, start + seq, 1.0)
                producer.send(frame, truth=truth)
                acc = (rng.normal(0, 0.01, (50, 3)) + [0, 0, 9.81]).astype(np.float32)  # lying on a table
                producer.send(Frame(device_id=still, seq=seq, t0=start + seq, duration_s=1.0, imu=ImuStream(50.0, acc)))
                if seq < 4:
                    producer.send(Frame(device_id=gone, seq=seq, t0=start + seq, duration_s=1.0,
                                        imu=ImuStream(50.0, acc + rng.normal(0, 0.5, acc.shape).astype(np.float32))))
                if seq == 3:
                    gone_quiet_since.append(time.monotonic())
                producer.flush()
                time.sleep(0.25)

    env = worker_env(isolated, settings_env)
    worker = WorkerProcess(isolated, env, 0, tmp_path)
    replay = threading.Thread(target=stream)
    try:
        wait_for(lambda: (worker.metric("iotlm_worker_assigned_partitions") or 0) > 0, 120, "the worker to own partitions")
        replay.start()
        wait_for(lambda: (worker.metric("iotlm_worker_results_total") or 0) >= 12, 60, "results before the kill")
        # the quiet device's complete windows written and its open ones given up (quiet_release_s, one
        # tick), its frames committed: only the table tells the next owner it was ever heard from
        wait_for(lambda: len(stored_windows(isolated, [gone])) >= 2, 30, "the quiet device's windows")
        time.sleep(max(1.5, gone_quiet_since[0] + isolated.workers.quiet_release_s + 2.5 - time.monotonic()))
        worker.stop(signal.SIGKILL)
        worker = WorkerProcess(isolated, env, 0, tmp_path)
        replay.join()
        wait_for(lambda: len(stored_windows(isolated, [walker, still])) >= 2 * 29, 150, "every window stored")
        wait_for(lambda: any(a["device_id"] == gone for a in raised_alerts(isolated)), 60, "the silence alert")
        time.sleep(2.0)
    finally:
        worker.stop()

    with psycopg.connect(**postgres_connect_kwargs(isolated)) as conn:
        windows = conn.execute("SELECT device_id, window_start, window_end, label, probability, model_version "
                               "FROM window_predictions WHERE device_id = %s ORDER BY window_start",
                               (walker,)).fetchall()
        episodes = conn.execute("SELECT started_at, label FROM activity_episodes WHERE device_id = %s",
                                (walker,)).fetchall()
    # the episodes one uninterrupted worker makes of the same windows
    tracker = EpisodeTracker(isolated.workers.episode_min_windows, max_gap_s=2 * isolated.workers.window_s)
    reference = {}
    for device, ws, we, label, p, version in windows:
        result = WindowResult(device, ws.timestamp(), we.timestamp(), version, label, p, {})
        for episode in tracker.update(result):
            reference[round(episode.start, 3)] = episode.activity
    assert {round(t.timestamp(), 3): label for t, label in episodes} == reference

    raised = raised_alerts(isolated)
    # (the replay's end silences every device: device_silent, once each, is expected of the other two)
    assert [a["rule"] for a in raised if a["device_id"] == still and a["rule"] != "device_silent"] == ["no_movement"]
    assert [(a["rule"], a["at"]) for a in raised if a["device_id"] == gone] == [("device_silent", round(start + 4, 2))]
    assert all(len([a for a in raised if a["device_id"] == d and a["rule"] == "device_silent"]) <= 1
               for d in (walker, still))


def raised_alerts(settings) -> list[dict]:
    from kafka import KafkaConsumer

    alerts = KafkaConsumer(settings.kafka.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                           **kafka_client_kwargs(settings, "admin"),
                           auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        return [json.loads(r.value) for r in alerts]
    finally:
        alerts.close()


def test_faust_s_own_launcher_runs_the_same_worker(isolated, settings_env, expected_windows, stored_windows, tmp_path):
    from ingest.producer import DeviceProducer
    from ingest.simulate import hapt_devices

    (device, signal_), = hapt_devices(1)
    frames = [signal_.frame(device, seq, time.time() - 600 + seq, 1.0) for seq in range(20)]
    expected = expected_windows(isolated, frames, rate_hz=25.0)
    port = isolated.workers.metrics_port
    env = worker_env(isolated, settings_env) | {"IOTLM_WORKER_INDEX": "0"}
    log = open(tmp_path / "faust.log", "wb")
    launcher = subprocess.Popen([str(Path(sys.executable).with_name("faust")), "-A", "iotlm.faust_app", "worker",
                                 "-l", "info", "--web-port", str(port), "--web-host", "127.0.0.1"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with DeviceProducer(isolated) as producer:
            for frame, truth in frames:
                producer.send(frame, truth=truth)
        wait_for(lambda: len(stored_windows(isolated, [device])) >= len(expected), 150, "the windows stored")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read())
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        log.close()
    assert code == 0, (tmp_path / "faust.log").read_text()[-3000:]
    assert sorted(stored_windows(isolated, [device])) == sorted(expected)
    assert f'iotlm_worker_results_total{{worker="worker-0"}} {float(len(expected))}' in metrics
    assert "faust_" in metrics  # Faust's own sensors beside ours
    assert health["ready"] and health["results"] == len(expected) and health["engine"] == "faust"
    assert sorted(health["partitions"]) == list(range(isolated.kafka.partitions))  # the only worker: all of them
