"""`iotlm demo`: the whole path live on this machine, with a summary a person (or a test) can read.

Brings the stack up, creates topics and schema, starts the admin API in this process and registers the
demo's site, rooms and devices through it (with a key made for the run and revoked after), starts
`workers` stream workers in this process (each its own consumer in the group, so partitions are
shared as between processes) reading admission, rooms and rules from the registry, replays HAPT
subjects as live devices (the nine held-out test subjects first), and shows devices, windows/s,
end-to-end latency and live accuracy against the replayed ground truth while it runs. A frame from a
device the demo did not register is offered to the ingest gate, which refuses it (`unknown_device`).
It ends when the replay has been sent and every window it completes has been written.

A whole-platform scenario, so it lives with the composition root (`iotlm/`), not inside a part.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import typer

from stream_workers.records import WindowResult

SETTLE_S = 3.0  # quiet time after the replay before the demo calls the stream done
DRAIN_TIMEOUT_S = 60.0


@dataclass
class DemoReport:
    devices: int
    frames: int
    windows: int
    result_rows: int
    duplicate_rows: int
    raw_frame_rows: int  # raw_frames rows of these devices and times: one per frame sent
    duplicate_raw_frames: int  # rows beyond one per (device, seq)
    dlq: int
    live_accuracy: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    windows_per_s: float  # results written per second, first to last
    wall_s: float
    model_versions: dict[str, int] = field(default_factory=dict)
    registered_devices: int = 0  # through the admin API
    rooms: list[str] = field(default_factory=list)
    unregistered_refused: dict = field(default_factory=dict)  # the gate's decision for a device not registered
    stream_engine: str = ""  # "faust-streaming <version>", or "aiokafka <version>" (settings.workers.engine)
    # rooms beside the wearables: simulated room devices (ingest.rooms), one per demo room, a day replayed
    room_devices: int = 0
    room_windows: int = 0
    room_state_rows: int = 0
    room_occupancy_accuracy: float | None = None  # the room model's occupancy bin against the simulated truth
    room_occupied_accuracy: float | None = None  # occupied vs empty, same windows
    room_alerts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def stream_engine(settings) -> str:
    from importlib.metadata import version

    package = "faust-streaming" if settings.workers.engine == "faust" else "aiokafka"
    return f"{package} {version(package)}"


class LiveTally:
    """Results as workers write them (called from the event loop), read by the live display."""

    def __init__(self, since: float):
        self.since = since
        self.results: list[WindowResult] = []
        self.written_at: list[float] = []
        self.devices: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, results: list[WindowResult]) -> None:
        now = time.time()
        with self.lock:
            for r in results:
                if r.window_start >= self.since:  # older windows are leftovers of an earlier run
                    self.results.append(r)
                    self.written_at.append(now)
                    self.devices.add(r.device_id)

    def snapshot(self, window_s: float = 5.0) -> dict:
        with self.lock:
            now = time.time()
            recent = sum(1 for t in self.written_at if now - t <= window_s)
            latencies = [t - r.completed_at for r, t in zip(self.results, self.written_at) if r.completed_at > 0]
            judged = [r for r in self.results if r.truth is not None]
            correct = sum(r.truth == r.activity for r in judged)
            span = self.written_at[-1] - self.written_at[0] if len(self.written_at) > 1 else 0.0
            return {
                "devices": len(self.devices),
                "windows": len(self.results),
                "windows_per_s": recent / window_s,
                "throughput_windows_per_s": len(self.results) / span if span > 0 else 0.0,
                "live_accuracy": correct / len(judged) if judged else None,
                "latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
                "latency_p99_s": float(np.percentile(latencies, 99)) if latencies else None,
            }


def prepare_services(settings, console=None) -> list:
    """Stack up, topics, schema. Returns the services this call started (to stop them afterwards)."""
    from deploy.stack import Stack
    from deploy.topics import ensure_topics
    from storage.lane import url_from_settings
    from storage.migrate import upgrade

    started = Stack(settings).up()
    ensure_topics(settings)
    upgrade(url_from_settings(settings))
    return started


def count_rows(settings, device_ids: list[str], since: float, until: float) -> tuple[int, int]:
    """(rows, rows beyond one per window) in window_predictions for these devices and times."""
    return _count_rows(settings, "window_predictions", "window_start", "window_start", device_ids, since, until)


def count_raw_frames(settings, device_ids: list[str], since: float, until: float) -> tuple[int, int]:
    """(rows, rows beyond one per frame sequence number) in raw_frames for these devices and times."""
    return _count_rows(settings, "raw_frames", "t0", "seq", device_ids, since, until)


def latest_window_end(settings, device_ids: list[str]) -> float:
    """End (event time, epoch s) of the newest stored window of these devices; 0 when none."""
    (latest,) = _one_row(settings, "SELECT extract(epoch FROM max(window_start)) FROM window_predictions "
                                   "WHERE device_id = ANY(:ids)", {"ids": device_ids})
    return float(latest) + settings.workers.window_s if latest is not None else 0.0


def _count_rows(settings, table: str, time_column: str, unique_column: str, device_ids: list[str],
                since: float, until: float) -> tuple[int, int]:
    from datetime import datetime, timezone

    rows, distinct = _one_row(
        settings,
        f"SELECT count(*), count(DISTINCT (device_id, {unique_column})) FROM {table} "
        f"WHERE device_id = ANY(:ids) AND {time_column} >= :since AND {time_column} < :until",
        {"ids": device_ids, "since": datetime.fromtimestamp(since, timezone.utc),
         "until": datetime.fromtimestamp(until, timezone.utc)},
    )
    return int(rows), int(rows - distinct)


def _one_row(settings, sql: str, params: dict) -> tuple:
    """One row of a query on the storage lane, on an engine of its own (disposed after)."""
    from sqlalchemy import text

    from storage.lane import engine_from_settings

    engine = engine_from_settings(settings)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(sql), params).one())
    finally:
        engine.dispose()


DEMO_SITE, DEMO_BUILDING, DEVICES_PER_ROOM = "demo-site", "demo-house", 3
UNREGISTERED = "demo-unregistered-1"


def room_devices_for(rooms: int):
    """Simulated room devices of one building (ingest.rooms), the first `rooms` of its rooms; a day of them."""
    from ingest.rooms import simulated_room_devices

    return simulated_room_devices(1, days=1, skip_s=0.0)[:rooms] if rooms else []


def register_fleet(settings, devices: int, room_devices: list[str] = ()) -> tuple[list[str], list[str]]:
    """Register the demo's site, building, rooms and devices through the admin API (run in this process,
    on a free port, with a key made for the purpose and revoked afterwards). Returns (device ids, rooms)."""
    import httpx

    from admin.app import serve_in_thread
    from admin.keys import create_key, revoke_key
    from deploy.process import free_ports
    from ingest.simulate import hapt_device_ids
    from storage.lane import engine_from_settings

    device_ids = [device_id for device_id, _ in hapt_device_ids(devices)]
    rooms = [f"demo-room-{i + 1}" for i in range(max((devices + DEVICES_PER_ROOM - 1) // DEVICES_PER_ROOM,
                                                     len(room_devices)))]
    engine = engine_from_settings(settings)
    with engine.begin() as conn:
        key, row = create_key(conn, "admin", "iotlm demo", expires_days=1)
    url, _app, stop = serve_in_thread(
        settings.model_copy(update={"api": settings.api.model_copy(update={"alarm_keeper": False})}), free_ports()[0])
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            def put(path: str, body: dict) -> None:
                """Create, or bring an earlier run's record back to what this run wants."""
                made = api.post(path, json=body)
                if made.status_code == 409:
                    update = {k: v for k, v in body.items() if k != "id"}
                    made = api.patch(f"{path}/{body['id']}", json=update | ({"active": True} if path == "/v1/devices" else {}))
                made.raise_for_status()

            put("/v1/sites", {"id": DEMO_SITE, "name": "IoT-LM demo"})
            put("/v1/buildings", {"id": DEMO_BUILDING, "site_id": DEMO_SITE, "name": "Demo house"})
            for room in rooms:
                put("/v1/rooms", {"id": room, "building_id": DEMO_BUILDING, "name": room})
            for i, device_id in enumerate(device_ids):
                put("/v1/devices", {"id": device_id, "kind": "imu", "placement": "waist",
                                    "room_id": rooms[i // DEVICES_PER_ROOM], "owner": "HAPT replay"})
            for i, device_id in enumerate(room_devices):  # room i's environment sensor beside its wearables
                put("/v1/devices", {"id": device_id, "kind": "env", "placement": "room", "room_id": rooms[i],
                                    "owner": "simulated room"})
            if api.get(f"/v1/devices/{UNREGISTERED}").status_code == 200:
                api.delete(f"/v1/devices/{UNREGISTERED}")  # someone registered it: the demo still shows a refusal
    finally:
        stop()
        with engine.begin() as conn:
            revoke_key(conn, row["id"])
        engine.dispose()
    return device_ids, rooms


def offer_unregistered_frame(settings, fleet) -> dict:
    """One frame of a device the demo did not register, through the ingest gate: refused, to the DLQ."""
    import numpy as np

    from ingest.codec import encode
    from ingest.frame import Frame, ImuStream
    from ingest.gate import IngestGate
    from ingest.producer import DeviceProducer

    acc = np.tile(np.float32([0.0, 0.0, 9.81]), (50, 1))
    frame = Frame(device_id=UNREGISTERED, seq=0, t0=time.time() - 1, duration_s=1.0, placement="wrist",
                  imu=ImuStream(rate_hz=50.0, acc=acc))
    with DeviceProducer(settings) as producer:
        decision = IngestGate(settings, producer, admission=fleet).admit(encode(frame), "demo")
    return {"device_id": decision.device_id, "accepted": decision.accepted, "code": decision.code,
            "reason": decision.reason}


async def _run_workers_and_replay(settings, workers: int, devices: int, speed: float, duration_s: float,
                                  start_time: float, tally: LiveTally, show, registry,
                                  room_devices=()) -> tuple[list, object]:
    from ingest.simulate import replay_hapt
    from stream_workers.app import StreamWorker

    stop = asyncio.Event()
    fleet = [StreamWorker(settings, i, on_written=tally, fleet=registry) for i in range(workers)]
    runs = [asyncio.create_task(w.run(stop)) for w in fleet]
    ready = asyncio.gather(*(w.ready.wait() for w in fleet))
    done, _ = await asyncio.wait([ready, *runs], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not ready and task.exception():
            raise task.exception()
    if ready not in done:
        raise TimeoutError("workers did not get partitions within 120 s; is Kafka up?")
    await asyncio.sleep(1.0)  # let the group settle after the last member joined

    rooms = None
    if room_devices:  # the rooms' last day, as fast as possible, beside the live wearables
        from ingest.rooms import DAY_S, ROOM_FRAME_S, simulated_start
        from ingest.simulate import replay as replay_devices

        rooms = asyncio.create_task(asyncio.to_thread(
            replay_devices, settings, list(room_devices), "rooms", 0.0, DAY_S, ROOM_FRAME_S,
            start_time=simulated_start(DAY_S, 0.0), progress=False))
    replay = asyncio.create_task(asyncio.to_thread(
        replay_hapt, settings, devices=devices, speed=speed, duration_s=duration_s, start_time=start_time,
        progress=False,
    ))
    while not replay.done() or (rooms is not None and not rooms.done()):
        show(tally.snapshot())
        await asyncio.sleep(0.5)
    summary = replay.result()
    if rooms is not None:
        rooms.result()
    room_states = lambda: sum(w.totals.room_states for w in fleet)  # noqa: E731
    # windows complete as the last frames are consumed; wait until results stop coming
    last_count, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        count = len(tally.results) + room_states()
        if count != last_count:
            last_count, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_S:
            break
        show(tally.snapshot())
        await asyncio.sleep(0.25)
    stop.set()
    totals = await asyncio.gather(*runs)
    return totals, summary


def run_demo(settings, duration_s: float, devices: int, speed: float, workers: int = 2, console=None,
             live: bool = True, start_time: float | None = None, rooms: int = 3) -> DemoReport:
    """The demo; returns its report. `start_time` (event time of the first frame) defaults to now."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from admin.registry import FleetRegistry

    console = console or Console(stderr=True)
    with console.status("starting the stack, topics and schema"):
        prepare_services(settings)
    with console.status("registering the demo's site, rooms and devices through the admin API"):
        room_devices = room_devices_for(rooms)
        registered, rooms = register_fleet(settings, devices, [d for d, _ in room_devices])
    if start_time is None:
        # A replay faster than real time runs ahead of the clock: a run right after another would send
        # frames the workers already decided windows for (dead-lettered as late). Wait until it is past.
        wait = latest_window_end(settings, registered) + settings.workers.lateness_s - time.time()
        if wait > 0:
            with console.status(f"waiting {wait:.0f} s for the previous run's event time to pass"):
                time.sleep(wait)
    start_time = time.time() if start_time is None else start_time
    tally = LiveTally(since=start_time - 0.5)  # margin: window starts are rounded onto the hop grid

    def table(snap: dict) -> Table:
        t = Table(title=f"IoT-LM live: {devices} HAPT devices, {workers} workers, speed x{speed:g}")
        for column in ("devices", "windows", "windows/s", "latency p50", "latency p99", "live accuracy"):
            t.add_column(column, justify="right")
        fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        t.add_row(str(snap["devices"]), str(snap["windows"]), f"{snap['windows_per_s']:.1f}",
                  fmt(snap["latency_p50_s"], "{:.2f} s"), fmt(snap["latency_p99_s"], "{:.2f} s"),
                  fmt(snap["live_accuracy"], "{:.1%}"))
        return t

    began = time.monotonic()
    display = Live(table(tally.snapshot()), console=console, refresh_per_second=4) if live else None
    with FleetRegistry(settings) as registry:
        refused = offer_unregistered_frame(settings, registry)
        with display or contextlib.nullcontext():
            totals, summary = asyncio.run(_run_workers_and_replay(
                settings, workers, devices, speed, duration_s, start_time, tally,
                show=(lambda snap: display.update(table(snap))) if display else (lambda snap: None),
                registry=registry, room_devices=room_devices,
            ))
    wall_s = time.monotonic() - began
    device_ids = [d.device_id for d in summary.devices]
    rows, duplicates = count_rows(settings, device_ids, tally.since, start_time + duration_s + 60)
    raw_rows, raw_duplicates = count_raw_frames(settings, device_ids, tally.since, start_time + duration_s + 60)
    snap = tally.snapshot()
    versions: dict[str, int] = {}
    for t in totals:
        for version, n in t.model_versions.items():
            versions[version] = versions.get(version, 0) + n
    return DemoReport(
        devices=len(device_ids),
        frames=summary.frames,
        windows=len({(r.device_id, r.window_start) for r in tally.results}),
        result_rows=rows,
        duplicate_rows=duplicates,
        raw_frame_rows=raw_rows,
        duplicate_raw_frames=raw_duplicates,
        dlq=sum(t.dlq for t in totals),
        live_accuracy=snap["live_accuracy"],
        latency_p50_s=snap["latency_p50_s"],
        latency_p99_s=snap["latency_p99_s"],
        windows_per_s=snap["throughput_windows_per_s"],
        wall_s=wall_s,
        model_versions=versions,
        registered_devices=len(registered),
        rooms=rooms,
        unregistered_refused=refused,
        stream_engine=stream_engine(settings),
        **room_summary(settings, [d for d, _ in room_devices], totals),
    )


def room_summary(settings, room_device_ids: list[str], totals) -> dict:
    """The rooms' part of the report: windows, stored rows, the room model against the simulated truth."""
    if not room_device_ids:
        return {}
    from sqlalchemy import text

    from storage.lane import engine_from_settings

    engine = engine_from_settings(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM room_states WHERE device_id = ANY(:ids)"),
                                {"ids": room_device_ids}).scalar()
            alerts = dict(conn.execute(text("SELECT kind, count(*) FROM alerts WHERE device_id = ANY(:ids) "
                                            "GROUP BY kind"), {"ids": room_device_ids}).all())
    finally:
        engine.dispose()
    judged = sum(t.room_truth_windows for t in totals)
    return {
        "room_devices": len(room_device_ids), "room_windows": sum(t.room_windows for t in totals),
        "room_state_rows": int(rows), "room_alerts": {k: int(v) for k, v in alerts.items()},
        "room_occupancy_accuracy": sum(t.room_correct_windows for t in totals) / judged if judged else None,
        "room_occupied_accuracy": sum(t.room_occupied_correct for t in totals) / judged if judged else None,
    }


def demo(
    duration: float = typer.Option(120.0, "--duration", help="Seconds of signal each device replays."),
    devices: int = typer.Option(9, "--devices", help="HAPT devices (the 9 held-out test subjects first)."),
    speed: float = typer.Option(2.0, "--speed", help="Replay speed-up over real time."),
    workers: int = typer.Option(2, "--workers", help="Stream workers sharing the consumer group."),
    rooms: int = typer.Option(3, "--rooms", help="Simulated room devices beside the wearables, one per demo room "
                              "(their last day replayed; 0: none)."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON object (for machines)."),
    scenario: str = typer.Option("live", "--scenario", help="live: the pipeline; finetune: labels -> fine-tune "
                                 "job -> promotion -> live accuracy before/after (iotlm/finetune_demo.py)."),
    epochs: int = typer.Option(6, "--epochs", help="finetune scenario: epochs of the fine-tune job."),
    phase: float = typer.Option(300.0, "--phase", help="finetune scenario: seconds of signal per device per phase."),
    seed: int = typer.Option(0, "--seed", help="finetune scenario: seed of the fine-tune job (split and training)."),
) -> None:
    """Whole pipeline live: stack, devices registered through the API, HAPT replay, workers, live accuracy."""
    import json
    import logging

    from rich.console import Console

    from iotlm.settings import Settings

    logging.basicConfig(level=logging.WARNING)
    # the broker's group coordinator takes a few seconds after a fresh start; the live table shows progress
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    console = Console(stderr=True)
    if scenario == "finetune":
        from iotlm.finetune_demo import run_finetune_scenario

        report = run_finetune_scenario(Settings(), console, phase_s=phase, epochs=epochs, workers=workers,
                                       seed=seed, progress=not as_json)
        if as_json:
            print(json.dumps(report.to_dict()))
        else:
            console.print(report.to_dict())
        return
    if scenario != "live":
        raise typer.BadParameter(f"unknown scenario {scenario!r}: live or finetune", param_hint="--scenario")
    report = run_demo(Settings(), duration_s=duration, devices=devices, speed=speed, workers=workers,
                      console=console, live=not as_json, rooms=rooms)
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    console.print(report.to_dict())
