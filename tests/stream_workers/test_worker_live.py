"""The stream worker against real Kafka, PostgreSQL and Redis: dead letters, hot reload, the demo at scale, rooms."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest

from stream_workers.app import StreamWorker
from iotlm.credentials import kafka_client_kwargs, postgres_connect_kwargs, redis_auth

pytestmark = pytest.mark.services


def run_worker(settings, done, timeout_s: float = 90.0, index: int = 0, during=None, sink=None):
    """Run one in-process worker until `done(worker)` holds (checked twice a second) or the timeout."""

    async def main():
        stop = asyncio.Event()
        worker = StreamWorker(settings, index, serve_metrics=False, sink=sink)
        run = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + timeout_s
        await asyncio.wait([asyncio.create_task(worker.ready.wait()), run], return_when=asyncio.FIRST_COMPLETED)
        if during is not None:
            await asyncio.to_thread(during, worker)
        while not run.done() and time.monotonic() < deadline and not done(worker):
            await asyncio.sleep(0.5)
        stop.set()
        return worker, await run

    return asyncio.run(main())


def hapt_frames(device_index: int, n: int, t0: float):
    """(frame, truth) pairs of the replay's device number `device_index`, 1 s frames from t0."""
    from ingest.simulate import hapt_devices

    device_id, signal = hapt_devices(device_index + 1)[device_index]
    return [signal.frame(device_id, seq, t0 + seq, 1.0) for seq in range(n)]


def read_topic(settings, topic: str, expected: int, timeout_s: float = 20.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"), auto_offset_reset="earliest",
                             consumer_timeout_ms=1000, enable_auto_commit=False)
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    return records


class TestDeadLetters:
    def test_malformed_and_late_frames_go_to_the_dlq_and_the_device_keeps_its_other_windows(
        self, isolated, expected_windows, stored_windows
    ):
        from ingest.producer import DeviceProducer

        device = "hapt-s02"
        frames = hapt_frames(0, 40, t0=time.time() - 3600)
        malformed, late = 10, 20
        with DeviceProducer(isolated) as producer:
            for seq, (frame, truth) in enumerate(frames):
                if seq == malformed:
                    producer.send_raw(isolated.kafka.frames_topic, device, b"\x85garbage mid-stream", [])
                elif seq != late:
                    producer.send(frame, truth=truth)
            producer.send(*frames[late][:1], truth=frames[late][1])  # 20 s after its time: past the bound

        delivered = [f for seq, f in enumerate(frames) if seq not in (malformed, late)]
        model_rate = 25.0
        expected = expected_windows(isolated, delivered, model_rate)
        worker, totals = run_worker(
            isolated, lambda w: w.totals.results >= len(expected) and w.totals.dlq >= 2, timeout_s=120
        )

        dead = read_topic(isolated, isolated.kafka.dlq_topic, expected=2)
        assert len(dead) == 2
        by_code = {dict(r.headers)["code"].decode(): r for r in dead}
        assert "late frame: seq 20" in dict(by_code.pop("late").headers)["reason"].decode()
        (code, garbage), = by_code.items()
        assert garbage.value == b"\x85garbage mid-stream" and garbage.key == device.encode()
        assert dict(garbage.headers)["reason"], code
        assert all(dict(r.headers)["source"] == b"stream_workers" for r in dead)
        assert all(float(dict(r.headers)["received_at"]) > 1.7e9 for r in dead)  # the gate's header format

        stored = stored_windows(isolated, [device])
        assert sorted(stored) == sorted(expected)  # each window once, nothing lost around the bad frames
        t0 = frames[0][0].t0
        assert any(start < t0 + malformed - 2.56 for _, start in stored)
        assert any(start > t0 + late + 1 for _, start in stored)
        assert totals.late_frames == 1 and totals.gap_windows >= 2
        assert totals.truth_windows > 0  # frames carried ground truth, so results were judged

        # what /metrics serves (the same registry, in Prometheus' text format) tells the same story
        from prometheus_client import generate_latest
        from prometheus_client.parser import text_string_to_metric_families

        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(generate_latest(worker.metrics.registry).decode())
                   for s in family.samples}
        me = (("worker", worker.name),)
        assert samples[("iotlm_worker_frames_total", me)] == totals.frames
        assert samples[("iotlm_worker_late_frames_total", me)] == 1
        assert samples[("iotlm_worker_dlq_total", (("code", "late"), ("worker", worker.name)))] == 1
        assert samples[("iotlm_worker_results_total", me)] == len(expected)
        assert samples[("iotlm_worker_consumer_lag", me)] >= 0


    def test_a_result_the_store_refuses_is_dead_lettered_and_the_worker_goes_on(self, isolated, stored_windows):
        import numpy as np

        from ingest.frame import Frame, ImuStream
        from ingest.producer import DeviceProducer

        # a room id longer than the database's column (a misconfigured site), so the store refuses the row
        too_long, fine = "dev-badroom", "dev-fine"
        isolated = isolated.model_copy(update={"workers": isolated.workers.model_copy(
            update={"device_rooms": {too_long: "room-" + "x" * 96}})})
        rng = np.random.default_rng(1)
        t0 = (time.time() - 5000) // isolated.workers.hop_s * isolated.workers.hop_s
        with DeviceProducer(isolated) as producer:
            for seq in range(10):
                for device in (too_long, fine):
                    acc = rng.normal([0, 0, 9.81], 0.5, (50, 3)).astype(np.float32)
                    producer.send(Frame(device_id=device, seq=seq, t0=t0 + seq, duration_s=1.0, imu=ImuStream(50.0, acc)))

        per_device = 6  # whole 2.56 s windows, 1.28 s apart, in 10 s of signal starting on the grid
        worker, totals = run_worker(
            isolated, lambda w: w.totals.results >= per_device and w.totals.dlq >= per_device, timeout_s=50
        )

        assert len(stored_windows(isolated, [fine])) == totals.results == per_device
        refused = [r for r in read_topic(isolated, isolated.kafka.dlq_topic, expected=per_device)
                   if dict(r.headers)["record_type"] == b"WindowResult"]
        assert len(refused) == per_device and totals.windows == 2 * per_device
        assert all(dict(r.headers)["code"] == b"unstorable" for r in refused)
        assert json.loads(refused[0].value)["device_id"] == too_long
        assert "store refused this WindowResult" in dict(refused[0].headers)["reason"].decode()


class TestBackpressure:
    def test_a_sink_pushing_back_pauses_consumption_and_loses_nothing(self, isolated, expected_windows, stored_windows):
        from ingest.producer import DeviceProducer
        from stream_workers.sink import SinkBackpressure, StorageSink

        class FlakySink(StorageSink):
            """The real storage sink behind a store that says "not now" to its first three batches
            (a database restart cannot be staged here without disturbing the shared stack)."""

            refusals = 3

            def write(self, batch):
                if self.refusals:
                    self.refusals -= 1
                    raise SinkBackpressure("database restarting", retry_after_s=0.3)
                return super().write(batch)

        frames = hapt_frames(2, 20, t0=time.time() - 6000)
        with DeviceProducer(isolated) as producer:
            for frame, truth in frames:
                producer.send(frame, truth=truth)
        expected = expected_windows(isolated, frames, rate_hz=25.0)
        sink = FlakySink(isolated)
        worker, totals = run_worker(isolated, lambda w: w.totals.results >= len(expected), sink=sink, timeout_s=60)
        assert sink.refusals == 0
        assert sorted(stored_windows(isolated, [frames[0][0].device_id])) == sorted(expected)


class TestHotReload:
    def test_a_promoted_model_is_served_without_restart_and_each_result_names_its_version(self, isolated, tmp_path):
        import redis

        from ingest.producer import DeviceProducer
        from models.inference import resolve_checkpoint

        # the same weights under another version: what promoting a fine-tuned checkpoint looks like
        promoted = tmp_path / "promoted"
        shutil.copytree(resolve_checkpoint(isolated.models.default_model, isolated.models.checkpoint_dir), promoted)
        config = json.loads((promoted / "config.json").read_text())
        config["version"] = "promoted-for-test"
        (promoted / "config.json").write_text(json.dumps(config))

        frames = hapt_frames(1, 40, t0=time.time() - 7200)
        from redis.exceptions import NoPermissionError

        client = redis.Redis.from_url(isolated.redis_url, **redis_auth(isolated, "api"))  # promotion: the API's
        intruder = redis.Redis.from_url(isolated.redis_url, **redis_auth(isolated, "worker"))

        def stream(worker):
            with DeviceProducer(isolated) as producer:
                for seq, (frame, truth) in enumerate(frames):
                    if seq == 20:
                        producer.flush()
                        deadline = time.monotonic() + 30
                        while worker.totals.results < 10 and time.monotonic() < deadline:
                            time.sleep(0.1)  # the first windows are served by the default model
                        client.set(isolated.workers.model_key, str(promoted))
                        # anyone else (a worker's own user included) is refused; the workers keep serving
                        with pytest.raises(NoPermissionError):
                            intruder.set(isolated.workers.model_key, "/tmp/not-a-model")
                        assert intruder.get(isolated.workers.model_key) == str(promoted).encode()
                        time.sleep(isolated.workers.model_poll_s + 3.0)  # the worker picks it up meanwhile
                    producer.send(frame, truth=truth)

        try:
            worker, totals = run_worker(isolated, lambda w: w.totals.results >= 28, during=stream, timeout_s=120)
        finally:
            client.delete(isolated.workers.model_key)
            client.close()
            intruder.close()
        assert set(totals.model_versions) == {config["version"], worker_version_before(isolated)}
        assert totals.model_versions["promoted-for-test"] >= 10


def worker_version_before(settings) -> str:
    from models.inference import resolve_checkpoint

    path = resolve_checkpoint(settings.models.default_model, settings.models.checkpoint_dir)
    return json.loads((path / "config.json").read_text())["version"]


def offline_accuracy(settings, devices: int, duration_s: float) -> float:
    """Accuracy of the same model on the same subjects' first `duration_s`, windows cut straight from the
    recordings (no Kafka, no assembler): what `iotlm eval` measures, restricted to the replayed stretch."""
    import numpy as np

    from ingest.simulate import hapt_devices
    from models.inference import MotionClassifier
    from stream_workers.windows import BASIC_HAPT_IDS

    model = MotionClassifier.load(settings.models.default_model, device="cpu",
                                  checkpoint_dir=settings.models.checkpoint_dir)
    labels = settings.workers.labels
    correct = judged = 0
    for _, sig in hapt_devices(devices):
        size, hop = round(settings.workers.window_s * sig.rate_hz), round(settings.workers.hop_s * sig.rate_hz)
        starts = range(0, int(duration_s * sig.rate_hz) - size + 1, hop)
        keep = [i for i in starts if np.isin(sig.labels[i:i + size], BASIC_HAPT_IDS).all()]
        if not keep:
            continue
        acc = np.stack([sig.acc[i:i + size] for i in keep])
        gyro = np.stack([sig.gyro[i:i + size] for i in keep])
        truth = [int(np.bincount(sig.labels[i:i + size], minlength=7)[1:7].argmax()) for i in keep]
        predicted = model.predict_proba(acc, gyro, sig.rate_hz, labels, "waist").argmax(1)
        correct += int((predicted == np.array(truth)).sum())
        judged += len(keep)
    return correct / judged


class TestDemo:
    def test_twenty_replayed_devices_give_one_row_per_window_and_live_accuracy_near_offline(self, isolated):
        from iotlm.demo import run_demo

        hop = isolated.workers.hop_s
        start = (time.time() - 10_800) // hop * hop  # on the window grid: every device gets 45 full windows
        report = run_demo(isolated, duration_s=60.0, devices=20, speed=0.0, workers=2, live=False, start_time=start)
        # 60 s of signal per device at a 1.28 s hop: 45 full 2.56 s windows each
        assert report.devices == 20 and report.frames == 20 * 60
        assert report.windows == report.result_rows == 20 * 45
        assert report.duplicate_rows == 0 and report.dlq == 0
        assert report.stream_engine.startswith("faust-streaming ")  # the default engine (settings.workers.engine)
        # the raw signal is kept for fine-tuning: one row per frame sent
        assert report.raw_frame_rows == report.frames and report.duplicate_raw_frames == 0
        # its devices were registered through the admin API; the gate refused one it did not register
        assert report.registered_devices == 20 and len(report.rooms) == 7
        assert report.unregistered_refused["code"] == "unknown_device" and not report.unregistered_refused["accepted"]
        offline = offline_accuracy(isolated, 20, 60.0)
        assert report.live_accuracy is not None
        assert abs(report.live_accuracy - offline) < 0.08, (report.live_accuracy, offline)


class TestAlertsAndLiveState:
    def test_a_stuck_sensor_alert_reaches_the_alerts_topic_redis_and_the_database_once(self, isolated):
        import uuid

        import numpy as np
        import psycopg

        from ingest.frame import Frame, ImuStream
        from ingest.producer import DeviceProducer
        from storage.live_state import AlertStream, LiveState

        device = f"dev-stuck-{uuid.uuid4().hex[:6]}"
        rng = np.random.default_rng(0)
        t0 = time.time() - 9000
        with DeviceProducer(isolated) as producer:
            for seq in range(12):
                acc = rng.normal([0, 0, 9.81], 0.2, (50, 3)).astype(np.float32)
                acc[:, 1] = 0.5  # the y axis is stuck
                producer.send(Frame(device_id=device, seq=seq, t0=t0 + seq, duration_s=1.0, placement="wrist",
                                    imu=ImuStream(rate_hz=50.0, acc=acc)))

        worker, totals = run_worker(isolated, lambda w: w.totals.results >= 6 and w.totals.alerts >= 1)

        on_topic = [json.loads(r.value) for r in read_topic(isolated, isolated.kafka.alerts_topic, expected=1)]
        assert [(a["rule"], a["device_id"], a["severity"]) for a in on_topic] == [("sensor_fault", device, "warning")]
        assert "axis y is a flat line" in on_topic[0]["message"]
        stream = AlertStream.from_settings(isolated, "admin")
        in_redis = [json.loads(f["alert"]) for _, f in stream.redis.xrange(stream.stream)]
        assert [a["dedup_key"] for a in in_redis if a["device_id"] == device] == [on_topic[0]["dedup_key"]]
        with psycopg.connect(**postgres_connect_kwargs(isolated)) as conn:
            kinds = conn.execute("SELECT kind FROM alerts WHERE device_id = %s", (device,)).fetchall()
        assert kinds == [("sensor_fault",)]
        state = LiveState.from_settings(isolated, "admin").device(device)
        assert state is not None and state.model_version == worker.classifier.version


ROOM_HOURS = 4


def expected_room_windows(devices, start: float, frame_s: float, n_frames: int) -> dict[str, int]:
    """Windows a room windower cuts of the complete replay, per device (what the worker must store)."""
    from stream_workers.rooms import RoomWindower

    windower, counts = RoomWindower(), {}
    for device_id, signal in devices:
        for seq in range(n_frames):
            cut = signal.frame(device_id, seq, start + seq * frame_s, frame_s)
            if cut is None:
                break
            counts[device_id] = counts.get(device_id, 0) + len(windower.add(cut[0], 0, seq))
    return counts


class TestRooms:
    def test_replayed_rooms_become_room_states_and_a_stuffy_room_raises_a_co2_alert(self, isolated):
        """Replayed room devices -> worker -> room states in PostgreSQL and Redis, fused with a wearable in the
        room, and a room alert stored, on the alerts topic and in the Redis stream."""
        import numpy as np
        import psycopg
        from ingest.rooms import ROOM_FRAME_S, RoomSignal, simulated_room_devices, simulated_start
        from ingest.simulate import replay
        from storage.live_state import AlertStream, LiveState
        from storage.rooms import read_room_state

        skip = 8 * 3600.0  # from 08:00 UTC of the simulated day
        devices = simulated_room_devices(1, seed=7, days=1, skip_s=skip)[:3]
        minutes = np.arange(ROOM_HOURS * 60)
        co2 = np.where(minutes < 60, 600.0, 1600.0) + minutes % 5  # a stuffy room from the second hour on (a
        # real sensor always wanders a little: one value for 2 h would be room_sensor_stuck)
        stuffy = RoomSignal("test: CO2 1600 ppm after an hour", 60.0, {"co2": co2, "temperature": 22 + 0.01 * (minutes % 7)})
        devices.append(("room-stuffy", stuffy))
        settings = isolated.model_copy(update={"workers": isolated.workers.model_copy(update={
            "device_rooms": {"room-stuffy": "r-stuffy", devices[0][0]: "r-sim"}})})
        # a wearable in the stuffy room, heard moments ago (what a worker handling it leaves in the live state)
        live = LiveState.from_settings(settings, "admin")
        start = simulated_start(ROOM_HOURS * 3600.0, skip)
        n_frames = int(ROOM_HOURS * 3600 / ROOM_FRAME_S)
        summary = replay(settings, devices, "rooms", 0.0, ROOM_HOURS * 3600.0, ROOM_FRAME_S, start_time=start, progress=False)
        assert summary.frames == len(devices) * n_frames
        expected = expected_room_windows(devices, start, ROOM_FRAME_S, n_frames)
        total = sum(expected.values())
        assert total > len(devices) * ROOM_HOURS * 10

        from datetime import datetime, timezone

        live.update("wrist-in-stuffy", "sitting", 0.9, "motion-v1", datetime.now(timezone.utc), "r-stuffy")

        def present(worker):
            return worker.totals.room_states >= total and worker.totals.alerts >= 1

        worker, totals = run_worker(settings, present, timeout_s=120)
        assert totals.room_windows == total and totals.room_states == total

        with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
            rows = conn.execute("SELECT device_id, count(*), count(DISTINCT window_end) FROM room_states "
                                "GROUP BY device_id").fetchall()
            stuffy_rows = conn.execute("SELECT air_quality, people, activities, co2_ppm FROM room_states "
                                       "WHERE device_id = 'room-stuffy' ORDER BY window_end DESC LIMIT 1").fetchone()
            alerts = conn.execute("SELECT kind, device_id, room_id, started_at FROM alerts").fetchall()
            truth = conn.execute("SELECT count(*) FROM room_states WHERE truth IS NOT NULL").fetchone()[0]
        assert {d: (n, distinct) for d, n, distinct in rows} == {d: (n, n) for d, n in expected.items()}  # no duplicates
        assert stuffy_rows[0] == "poor" and 1600 <= stuffy_rows[3] <= 1604
        assert stuffy_rows[1] == 1 and stuffy_rows[2] == {"wrist-in-stuffy": "sitting"}  # fused with the wearable
        assert truth == sum(n for d, n in expected.items() if d != "room-stuffy")  # simulated truth rides along
        # CO2 over 1400 ppm from the second hour: raised once, dated by the first window out of band
        assert [(k, d, r) for k, d, r, _ in alerts] == [("room_co2", "room-stuffy", "r-stuffy")]
        first_out = alerts[0][3].timestamp()
        assert start + 3600 <= first_out <= start + 3600 + 2 * 300

        on_topic = [json.loads(r.value) for r in read_topic(settings, settings.kafka.alerts_topic, expected=1)]
        assert [a["rule"] for a in on_topic] == ["room_co2"]
        stream = AlertStream.from_settings(settings, "admin")
        in_redis = [json.loads(f["alert"]) for _, f in stream.redis.xrange(stream.stream)]
        assert on_topic[0]["dedup_key"] in [a["dedup_key"] for a in in_redis if a["rule"] == "room_co2"]
        latest = read_room_state(live.redis, settings.storage.redis_key_prefix, "r-stuffy")
        assert latest["air_quality"] == "poor" and latest["people"] == 1
        with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
            newest = conn.execute("SELECT max(window_end) FROM room_states WHERE device_id = 'room-stuffy'").fetchone()[0]
        assert latest["window_end"] == newest.timestamp()  # Redis holds the newest window's state
        assert totals.room_truth_windows > 0
