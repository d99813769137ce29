"""Two worker processes share the frames topic; one is killed with SIGKILL mid-stream and restarted.

No window may be missing (the commit never passed a frame an open window needed) and none may be
stored twice (re-emitted windows upsert the same row). Workers run as real `iotlm worker` processes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.services, pytest.mark.slow]

DEVICES, DURATION_S, SPEED = 8, 40.0, 4.0


def worker_env(settings, settings_env: dict) -> dict:
    """The session's stack (settings_env) plus this test's private topics, group and database."""
    k, w = settings.kafka, settings.workers
    return settings_env | {
        "IOTLM_KAFKA__FRAMES_TOPIC": k.frames_topic, "IOTLM_KAFKA__DLQ_TOPIC": k.dlq_topic,
        "IOTLM_KAFKA__ALERTS_TOPIC": k.alerts_topic, "IOTLM_KAFKA__CONTROL_TOPIC": k.control_topic,
        "IOTLM_KAFKA__PARTITIONS": str(k.partitions),
        "IOTLM_WORKERS__CONSUMER_GROUP": w.consumer_group, "IOTLM_WORKERS__METRICS_PORT": str(w.metrics_port),
        "IOTLM_WORKERS__MODEL_KEY": w.model_key, "IOTLM_WORKERS__COMMIT_INTERVAL_S": str(w.commit_interval_s),
        "IOTLM_STACK__POSTGRES_DB": settings.stack.postgres_db, "IOTLM_STORAGE__LANE": settings.storage.lane,
        "IOTLM_MODELS__CHECKPOINT_DIR": str(settings.models.checkpoint_dir),
        "IOTLM_MODELS__DEFAULT_MODEL": settings.models.default_model,
    }


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


def test_kill_dash_nine_one_of_two_workers_mid_stream_loses_and_duplicates_no_window(
    isolated, settings_env, expected_windows, stored_windows, stored_raw_frames, tmp_path
):
    from ingest.codec import decode
    from ingest.simulate import hapt_devices, replay_hapt

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
