"""Single records that used to stop the workers or lose good frames, replayed on the real stack.

Each bad record is produced straight to the frames topic among good traffic, so the worker sees what
a careless device or an attacker with broker access would send (the gate is not in the way). Every
test asserts the same three things: the workers stay up, each bad record is dead-lettered once with
a reason, and every window the good frames make is stored exactly once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter

import msgpack
import numpy as np
import pytest

from deploy.process import free_ports
from ingest.codec import TRUTH_HEADER, encode, header
from ingest.gate import SettingsAdmission
from stream_workers.app import StreamWorker
from iotlm.credentials import kafka_client_kwargs

pytestmark = pytest.mark.services


def hapt_frames(device_index: int, n: int, t0: float):
    from ingest.simulate import hapt_devices

    device_id, signal = hapt_devices(device_index + 1)[device_index]
    return [signal.frame(device_id, seq, t0 + seq, 1.0) for seq in range(n)]


def run_workers(settings, done, count: int = 1, timeout_s: float = 120.0, during=None, crash: bool = False, **kwargs):
    """`count` in-process workers of one consumer group until `done(workers)` holds or the timeout. With
    `crash`, they are cancelled like a killed process (no drain, no last commit) instead of stopped."""

    async def main():
        stop = asyncio.Event()
        workers = [StreamWorker(settings, i, serve_metrics=False, **kwargs) for i in range(count)]
        runs = [asyncio.create_task(w.run(stop)) for w in workers]
        for worker in workers:
            await asyncio.wait([asyncio.create_task(worker.ready.wait()), *runs], return_when=asyncio.FIRST_COMPLETED)
        if during is not None:
            await asyncio.to_thread(during, workers)
        deadline = time.monotonic() + timeout_s
        while not any(r.done() for r in runs) and time.monotonic() < deadline and not done(workers):
            await asyncio.sleep(0.3)
        if crash:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            return workers
        stop.set()
        await asyncio.gather(*runs)  # a worker that died raises here
        return workers

    return asyncio.run(main())


def dead_letters(settings, expected: int, timeout_s: float = 20.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(settings.kafka.dlq_topic, bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"),
                             auto_offset_reset="earliest", consumer_timeout_ms=1500, enable_auto_commit=False)
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
        records.extend(consumer)  # and anything beyond what was expected: a second copy would show here
    finally:
        consumer.close()
    return records


def frame_doc(device_id: str, rate_hz: float, acc, duration_s: float, t0: float) -> bytes:
    """A frame document built by hand, to say what the frame constructors refuse to build."""
    acc = np.asarray(acc, "<f4")
    return msgpack.packb({"schema_version": 1, "device_id": device_id, "seq": 1, "t0": t0, "duration_s": duration_s,
                          "placement": "waist", "imu": {"rate_hz": rate_hz, "acc": {"shape": list(acc.shape),
                                                                                   "f4le": acc.tobytes()}}})


class FlakyRegistry(SettingsAdmission):
    """The settings admission, except that looking up one device raises: what a registry whose backend
    fails mid-lookup does. The worker must dead-letter that record and go on."""

    def refusal(self, device_id: str) -> str | None:
        if device_id == "hapt-boom":
            raise RuntimeError("registry lookup failed")
        return super().refusal(device_id)


def test_bad_records_among_good_traffic_are_dead_lettered_once_and_no_good_window_is_lost(
    isolated, expected_windows, stored_windows, stored_raw_frames
):
    from ingest.producer import DeviceProducer

    from ingest.frame import Frame

    now = time.time()
    good = [hapt_frames(i, 24, t0=now - 30) for i in range(3)]
    device_a = good[0][0][0].device_id
    imu = good[0][10][0].imu

    def frame(device_id: str, t0: float = now - 5, seq: int = 1) -> bytes:
        return encode(Frame(device_id=device_id, seq=seq, t0=t0, duration_s=1.0, placement="waist", imu=imu))

    nested = b'{"labels": [[1, [2]]], "dataset": "hapt"}'
    too_big = ('{"labels": [%s], "dataset": "hapt"}' % ",".join(["70000"] * 50)).encode()
    still = (np.zeros((4, 3)) + [0, 0, 9.81]).astype("<f4")
    hostile = [  # (the code the worker must give, key, value, headers), produced among device A's frames
        ("bad_truth", "hapt-x1", frame("hapt-x1"), [(TRUTH_HEADER, nested)]),
        ("bad_truth", "hapt-x2", frame("hapt-x2"), [(TRUTH_HEADER, too_big)]),
        ("oversized", "hapt-x3", b"\x85" + bytes(1_000_500), []),
        ("bad_rate", "hapt-x4", frame_doc("hapt-x4", 0.001, still, 3600.0, now - 3700), []),
        ("out_of_range", "hapt-x5", frame_doc("hapt-x5", 50.0, np.full((50, 3), 3.0e38), 1.0, now - 5), []),
        ("unknown_device", "rogue-7", frame("rogue-7"), []),
        ("internal", "hapt-boom", frame("hapt-boom"), []),
        ("clock_jump", device_a, frame(device_a, t0=good[0][10][0].t0 + 3600, seq=999), []),
    ]
    with DeviceProducer(isolated) as producer:
        for seq in range(24):
            for frames in good:
                producer.send(frames[seq][0], truth=frames[seq][1])
            if seq == 10:
                for _, key, value, headers in hostile:
                    producer.send_raw(isolated.kafka.frames_topic, key, value, headers)

    devices = [frames[0][0].device_id for frames in good]
    expected = set().union(*(expected_windows(isolated, frames, 25.0) for frames in good))
    workers = run_workers(isolated, lambda ws: sum(w.totals.results for w in ws) >= len(expected)
                          and sum(w.totals.dlq for w in ws) >= len(hostile), count=2,
                          admission=FlakyRegistry(isolated.ingest))

    letters = dead_letters(isolated, expected=len(hostile))
    codes = Counter(header(r.headers, "code").decode() for r in letters)
    assert codes == Counter(code for code, *_ in hostile)  # each once: none missing, none twice
    assert all(header(r.headers, "reason") and header(r.headers, "original_offset") for r in letters)
    by_code = {header(r.headers, "code").decode(): r for r in letters}
    big = by_code["oversized"]
    assert len(big.value) == isolated.kafka.dlq_keep_bytes and header(big.headers, "original_size") == b"1000501"
    assert b"labels must be integers" in header(by_code["bad_truth"].headers, "reason")
    assert b"clock jump: seq 999" in header(by_code["clock_jump"].headers, "reason")
    assert b"registry lookup failed" in header(by_code["internal"].headers, "reason")

    stored = stored_windows(isolated, devices + ["hapt-x1", "hapt-x2", "hapt-x5", "rogue-7", "hapt-boom"])
    assert sorted(stored) == sorted(expected)  # every good window, once; nothing from the bad records
    raw = stored_raw_frames(isolated, devices + ["rogue-7"])
    assert sorted((d, s) for d, s, _ in raw) == sorted((f.device_id, f.seq) for frames in good for f, _ in frames)
    assert sum(w.totals.late_frames for w in workers) == 0


def test_a_quiet_device_releases_its_commit_and_a_restart_rereads_at_most_a_window(
    isolated, expected_windows, stored_windows
):
    from ingest.producer import DeviceProducer

    isolated = isolated.model_copy(update={"workers": isolated.workers.model_copy(update={
        "quiet_release_s": 2.0, "silent_device_s": 3.0})})
    t0 = time.time() - 900
    talker = hapt_frames(0, 20, t0=t0)
    quiet = hapt_frames(1, 7, t0=t0)[:6]  # stops 6 s in, in the middle of a window
    expected = expected_windows(isolated, talker, 25.0) | expected_windows(isolated, quiet, 25.0)
    devices = [talker[0][0].device_id, quiet[0][0].device_id]

    def stream(workers):
        with DeviceProducer(isolated) as producer:
            for (frame, truth), (quiet_frame, quiet_truth) in zip(talker, quiet):
                producer.send(frame, truth=truth)
                producer.send(quiet_frame, truth=quiet_truth)
            for frame, truth in talker[len(quiet):]:  # the talker goes on for 4 s, the other says nothing
                producer.send(frame, truth=truth)
                producer.flush()
                time.sleep(0.3)

    first = run_workers(isolated, lambda ws: ws[0].totals.results >= len(expected)
                        and ws[0].totals.released_devices >= 1, during=stream, timeout_s=90)[0]
    assert first.totals.abandoned_windows >= 1  # the quiet device's last, incomplete window
    assert first.totals.released_devices == 1  # the talker stopped last: nobody talked after it

    second = run_workers(isolated, lambda ws: False, timeout_s=6)[0]
    window_of_frames = int(np.ceil(isolated.workers.window_s / 1.0)) + 1  # 1 s frames one 2.56 s window touches
    reread = second.totals.frames - second.totals.duplicate_frames  # distinct frames (a record fetched twice counts once)
    assert reread <= window_of_frames  # the talker's last open window, nothing more
    assert quiet[0][0].device_id not in second.assembler.devices()  # its frames were not re-read
    assert second.totals.dlq == 0
    assert sorted(stored_windows(isolated, devices)) == sorted(expected)


def test_a_dead_letter_is_not_written_again_when_its_record_is_reread_after_a_crash(isolated, stored_windows):
    from ingest.producer import DeviceProducer

    isolated = isolated.model_copy(update={"workers": isolated.workers.model_copy(update={"commit_interval_s": 3600})})
    frames = hapt_frames(3, 8, t0=time.time() - 500)
    with DeviceProducer(isolated) as producer:
        for frame, truth in frames[:4]:
            producer.send(frame, truth=truth)
        producer.send_raw(isolated.kafka.frames_topic, frames[0][0].device_id, b"\x85not a frame", [])
        for frame, truth in frames[4:]:
            producer.send(frame, truth=truth)

    # killed before any commit: the restarted worker re-reads everything, the bad record too
    crashed = run_workers(isolated, lambda ws: ws[0].totals.dlq >= 1 and ws[0].totals.results >= 3, crash=True)[0]
    again = run_workers(isolated, lambda ws: ws[0].totals.redelivered_dead_letters >= 1
                        and ws[0].totals.results >= 3, timeout_s=60)[0]
    # nothing was committed: every read from the start (one more if a rebalance comes while the group
    # drops the crashed member) meets the bad record again, and none writes it again
    assert crashed.totals.dlq == 1 and again.totals.dlq == 0 and again.totals.redelivered_dead_letters >= 1
    assert len(dead_letters(isolated, expected=1)) == 1


def test_redis_down_does_not_stop_storage_and_live_state_catches_up(isolated, expected_windows, stored_windows):
    from ingest.producer import DeviceProducer
    from storage.live_state import LiveState
    from stream_workers.sink import StorageSink

    port = free_ports()[0]
    from deploy.services import RedisServer

    # the stack's users (ACL file) on a Redis of this test's own, which it can kill
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--aclfile", str(RedisServer(isolated).acl_file)]
    redis_server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    isolated = isolated.model_copy(update={"stack": isolated.stack.model_copy(update={"redis_port": port}),
                                           "storage": isolated.storage.model_copy(update={"redis_timeout_s": 0.5})})
    frames = hapt_frames(4, 30, t0=time.time() - 700)
    device = frames[0][0].device_id
    expected = expected_windows(isolated, frames, 25.0)
    sink = StorageSink(isolated)
    seen = {}

    def outage(workers):
        nonlocal redis_server
        with DeviceProducer(isolated) as producer:
            for frame, truth in frames[:10]:
                producer.send(frame, truth=truth)
            producer.flush()
            wait(lambda: workers[0].totals.results >= 3, "results before the outage")
            redis_server.kill()  # Redis goes away mid-stream
            redis_server.wait()
            for frame, truth in frames[10:]:
                producer.send(frame, truth=truth)
        wait(lambda: len(stored_windows(isolated, [device])) >= len(expected), "rows while Redis is down")
        seen["backlog"] = sink.redis_backlog
        redis_server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # it comes back, empty
        live = LiveState.from_settings(isolated, "admin")
        wait(lambda: _quietly(live.device, device) is not None, "live state after Redis returned", 30)
        seen["latest"] = live.device(device)

    try:
        run_workers(isolated, lambda ws: "latest" in seen, during=outage, sink=sink, timeout_s=30)
    finally:
        redis_server.kill()
    assert sorted(stored_windows(isolated, [device])) == sorted(expected)  # storage never stopped
    assert seen["backlog"] >= 1  # live state was held for Redis, not lost
    last_end = max(start for _, start in expected) + isolated.workers.window_s
    assert abs(seen["latest"].updated_at.timestamp() - last_end) < 1e-3  # the newest state, once it was back


def _quietly(read, *args):
    from redis.exceptions import RedisError

    try:
        return read(*args)
    except RedisError:
        return None


def wait(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
