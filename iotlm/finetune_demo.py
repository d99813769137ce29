"""`iotlm demo --scenario finetune`: the fine-tuning loop on the real stack, by itself.

1. stack, topics, schema; the admin API served in this process (a key made for the run, revoked after);
   a job runner started as its own process (`iotlm jobs run`); stream workers in this process;
2. phase 1: HAPT subjects replayed as registered devices, each its FIRST experiment: six train subjects
   (whose labels will be posted) and three test subjects (never labeled: the live measurement);
3. labels posted through the API for the train subjects' activity runs (what a person would label);
4. `POST /v1/finetune` on those devices; the runner assembles windows from `raw_frames`, splits by
   device, fine-tunes the promoted model, compares on held-out windows, promotes if the rule says so;
5. the workers pick the promoted version up without a restart; phase 2: the test subjects' SECOND
   experiment (the same protocol of activities again) is replayed;
6. live accuracy of the test subjects' windows: phase 1 (base model) vs phase 2 (promoted model).

Sizes are chosen to finish in a few minutes on a 2-core CPU (a GPU is used when present).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from iotlm.demo import LiveTally, prepare_services

TRAIN_SUBJECTS = (1, 3, 5, 6, 7, 8)  # HAPT train subjects: their labels are posted
LIVE_SUBJECTS = (2, 4, 9)  # HAPT test subjects: never labeled, never trained on; live accuracy only
MIN_RUN_S = 3.0  # label runs of one activity at least this long (a person labels stretches, not blips)


@dataclass
class FinetuneReport:
    base_version: str
    candidate_version: str | None
    promoted: bool
    decision: str
    p_value: float | None
    heldout_accuracy_before: float | None  # base model on the job's held-out windows
    heldout_accuracy_after: float | None  # candidate on the same windows
    heldout_macro_f1_before: float | None
    heldout_macro_f1_after: float | None
    live_accuracy_before: float | None  # test subjects' live windows, phase 1, base model
    live_accuracy_after: float | None  # test subjects' live windows, phase 2, promoted model
    live_windows_before: int
    live_windows_after: int
    # the same phase-2 live windows (pure ones, re-cut from raw_frames) classified by both models offline:
    # the paired version of live_accuracy_before/after, which are measured on different stretches
    phase2_accuracy_base: float | None
    phase2_accuracy_promoted: float | None
    phase2_windows: int
    train_windows: int
    validation_windows: int
    heldout_windows: int
    split: str  # how the job split train/validation/test (by device here)
    labels_posted: int
    job_id: int
    seed: int
    job_status: str
    job_seconds: float | None
    swap_seconds: float | None  # promotion committed -> every worker serving it
    wall_s: float
    train_devices: list[str] = field(default_factory=list)
    live_devices: list[str] = field(default_factory=list)
    model_versions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def experiment_signal(signal, index: int):
    """The subject's `index`-th experiment alone (HAPT: each experiment runs the whole protocol)."""
    from ingest.simulate import SubjectSignal

    experiment = np.unique(signal.experiments)[index]
    keep = signal.experiments == experiment
    return SubjectSignal(signal.subject, signal.rate_hz, signal.acc[keep], signal.gyro[keep], signal.labels[keep],
                         signal.experiments[keep])


class ContinuedSignal:
    """A signal whose frames carry sequence numbers after `first_seq`: a device streaming on after a
    pause (a repeated sequence number would be dropped as a duplicate by the workers)."""

    def __init__(self, signal, first_seq: int):
        self.signal, self.first_seq = signal, first_seq
        self.origin = signal.origin

    def frame(self, device_id: str, seq: int, t0: float, frame_s: float):
        import dataclasses

        cut = self.signal.frame(device_id, seq, t0, frame_s)
        if cut is None:
            return None
        frame, truth = cut
        return dataclasses.replace(frame, seq=frame.seq + self.first_seq), truth


def label_runs(device_id: str, signal, start_time: float, duration_s: float, names: list[str]) -> list[dict]:
    """One label per run of one basic activity (HAPT ids 1-6 -> `names`) within the replayed stretch."""
    ids = signal.labels[: int(duration_s * signal.rate_hz)]
    change = np.flatnonzero(np.diff(ids)) + 1
    bounds = np.concatenate([[0], change, [len(ids)]])
    out = []
    for i, j in zip(bounds[:-1], bounds[1:]):
        if 1 <= ids[i] <= 6 and (j - i) / signal.rate_hz >= MIN_RUN_S:
            out.append({"device_id": device_id, "label": names[int(ids[i]) - 1], "source": "manual",
                        "starts_at": datetime.fromtimestamp(start_time + i / signal.rate_hz, timezone.utc).isoformat(),
                        "ends_at": datetime.fromtimestamp(start_time + j / signal.rate_hz, timezone.utc).isoformat()})
    return out


def paired_phase2(settings, live: dict, phase2_start: float, phase_s: float, base_path: str,
                  promoted_path: str) -> tuple[float | None, float | None, int]:
    """Both models on the same phase-2 windows of the live devices (the replay's truth as labels, in
    memory only: nothing is posted), cut from raw_frames exactly as the job and the workers cut them."""
    from finetune.dataset import assemble
    from models.inference import MotionClassifier
    from storage.lane import engine_from_settings

    names = list(settings.workers.labels)
    rows = [row | {"id": 0, "starts_at": datetime.fromisoformat(row["starts_at"]),
                   "ends_at": datetime.fromisoformat(row["ends_at"])}
            for d, s in live.items() for row in label_runs(d, experiment_signal(s, 1), phase2_start, phase_s, names)]
    engine = engine_from_settings(settings)
    try:
        windows = assemble(engine.connect, settings, rows, MotionClassifier.load(base_path, device="cpu").rate_hz,
                           label_set=names)
    finally:
        engine.dispose()
    scores = []
    for path in (base_path, promoted_path):
        model = MotionClassifier.load(path, device="cpu")
        pred = model.predict_proba(windows.acc, windows.gyro, windows.rate_hz, names, windows.placement).argmax(1)
        scores.append(float((pred == windows.y).mean()))
    return scores[0], scores[1], len(windows)


def _accuracy(results, devices: set[str], version: str) -> tuple[float | None, int]:
    judged = [r for r in results if r.device_id in devices and r.truth is not None and r.model_version == version]
    return (sum(r.truth == r.activity for r in judged) / len(judged) if judged else None), len(judged)


async def _settle(tally: LiveTally, quiet_s: float = 4.0, timeout_s: float = 120.0) -> None:
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(tally.results) != last:
            last, since = len(tally.results), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        await asyncio.sleep(0.25)


def run_finetune_scenario(settings, console, *, phase_s: float = 300.0, epochs: int = 6, workers: int = 2,
                          seed: int = 0, progress: bool = True) -> FinetuneReport:
    import httpx

    from admin.app import serve_in_thread
    from admin.keys import create_key, revoke_key
    from admin.registry import FleetRegistry
    from deploy.process import free_ports
    from finetune.cli import watch_job
    from ingest.simulate import SubjectSignal, replay
    from storage.lane import engine_from_settings
    from stream_workers.app import StreamWorker

    began = time.monotonic()
    with console.status("starting the stack, topics and schema"):
        prepare_services(settings)
    signals = SubjectSignal.load(sorted(TRAIN_SUBJECTS + LIVE_SUBJECTS))
    train = {f"hapt-s{s:02d}": signals[s] for s in TRAIN_SUBJECTS}
    live = {f"hapt-s{s:02d}": signals[s] for s in LIVE_SUBJECTS}
    engine = engine_from_settings(settings)
    with engine.begin() as conn:
        key, key_row = create_key(conn, "admin", "iotlm demo finetune", expires_days=1)
    url, _app, stop_api = serve_in_thread(
        settings.model_copy(update={"api": settings.api.model_copy(update={"alarm_keeper": False})}), free_ports()[0])
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    runner_log = (log_dir / "finetune-runner.log").open("ab")
    runner = subprocess.Popen([sys.executable, "-m", "iotlm", "jobs", "run"], env=os.environ | settings.environ(),
                              stdout=runner_log, stderr=subprocess.STDOUT)
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        for device_id in [*train, *live]:
            made = api.post("/v1/devices", json={"id": device_id, "kind": "imu", "placement": "waist",
                                                 "owner": "HAPT replay (finetune scenario)"})
            if made.status_code == 409:
                made = api.patch(f"/v1/devices/{device_id}", json={"active": True})
            made.raise_for_status()
        # every run starts from the shipped checkpoint (an earlier run left its candidate promoted)
        shipped = _shipped_version(settings)
        if next(m for m in api.get("/v1/models").raise_for_status().json() if m["status"] == "promoted")["version"] != shipped:
            api.post(f"/v1/models/{shipped}/promote").raise_for_status()
        # both phases replay as fast as possible, in the past where possible, and after any earlier run's
        # frames of these devices (an earlier run's labels and windows must not mix with this run's)
        with engine.connect() as conn:
            from sqlalchemy import text

            last = conn.execute(text("SELECT max(t0) FROM raw_frames WHERE device_id = ANY(:ids)"),
                                {"ids": [*train, *live]}).scalar()
        phase1_start = max(time.time() - 2 * phase_s - 120, last.timestamp() + 60 if last else 0.0)
        phase2_start = phase1_start + phase_s + 30
        tally = LiveTally(since=phase1_start - 1)
        with FleetRegistry(settings) as fleet:
            report = asyncio.run(_scenario(settings, console, api, fleet, train, live, tally, phase_s, phase1_start,
                                           phase2_start, epochs, workers, seed, progress, StreamWorker, replay,
                                           watch_job))
    finally:
        api.close()
        runner.terminate()
        try:
            runner.wait(30)
        except subprocess.TimeoutExpired:
            runner.kill()
        runner_log.close()
        stop_api()
        with engine.begin() as conn:
            revoke_key(conn, key_row["id"])
        engine.dispose()
    report.wall_s = round(time.monotonic() - began, 1)
    return report


def _shipped_version(settings) -> str:
    import json

    from models.inference import resolve_checkpoint

    path = resolve_checkpoint(settings.models.default_model, settings.models.checkpoint_dir)
    return json.loads((path / "config.json").read_text())["version"]


async def _scenario(settings, console, api, fleet, train, live, tally, phase_s, phase1_start, phase2_start, epochs,
                    workers, seed, progress, StreamWorker, replay, watch_job) -> FinetuneReport:
    stop = asyncio.Event()
    fleet_workers = [StreamWorker(settings, i, on_written=tally, fleet=fleet) for i in range(workers)]
    runs = [asyncio.create_task(w.run(stop)) for w in fleet_workers]
    ready = asyncio.gather(*(w.ready.wait() for w in fleet_workers))
    done, _ = await asyncio.wait([ready, *runs], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        raise TimeoutError("workers did not get partitions within 120 s; is Kafka up?")
    await asyncio.sleep(1.0)
    try:
        base = next(m for m in api.get("/v1/models").raise_for_status().json() if m["status"] == "promoted")
        console.print(f"phase 1: {len(train)} labeled-to-be and {len(live)} live devices replay their first "
                      f"experiment ({phase_s:g} s each) on {base['version']}")
        devices1 = [(d, experiment_signal(s, 0)) for d, s in {**train, **live}.items()]
        await asyncio.to_thread(replay, settings, devices1, "hapt", 0.0, phase_s, 1.0, start_time=phase1_start,
                                progress=progress, console=console)
        await _settle(tally)

        labels = [row for d, s in train.items()
                  for row in label_runs(d, experiment_signal(s, 0), phase1_start, phase_s, settings.workers.labels)]
        api.post("/v1/labels:bulk", json={"labels": labels}).raise_for_status()
        console.print(f"{len(labels)} labels posted for {', '.join(train)}; fine-tuning")
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
        job = api.post("/v1/finetune", json={"devices": list(train), "epochs": epochs, "split": "device", "seed": seed,
                                             "start": iso(phase1_start), "end": iso(phase1_start + phase_s)})
        job.raise_for_status()
        job_id = job.json()["id"]
        job = await asyncio.to_thread(watch_job, lambda i: api.get(f"/v1/jobs/{i}").raise_for_status().json(), job_id,
                                      1.0, console)
        result = job.get("result") or {}
        promoted = bool(result.get("promoted"))
        candidate = job.get("candidate_version")
        console.print(f"job {job_id} {job['status']}: {(result.get('decision') or {}).get('reason') or job.get('error')}")
        swap_s = None
        serving = candidate if promoted else base["version"]
        if promoted:
            t = time.monotonic()
            while any(w.classifier.version != candidate for w in fleet_workers) and time.monotonic() - t < 60:
                await asyncio.sleep(0.2)
            swap_s = round(time.monotonic() - t, 2)
            console.print(f"every worker serves {candidate} ({swap_s:.1f} s after the job ended)")
        console.print(f"phase 2: the live devices replay their second experiment on {serving}")
        devices2 = [(d, ContinuedSignal(experiment_signal(s, 1), int(phase_s) + 1)) for d, s in live.items()]
        await asyncio.to_thread(replay, settings, devices2, "hapt", 0.0, phase_s, 1.0, start_time=phase2_start,
                                progress=progress, console=console)
        await _settle(tally)
    finally:
        stop.set()
        totals = await asyncio.gather(*runs)
    with tally.lock:
        results = list(tally.results)
    before, n_before = _accuracy([r for r in results if r.window_start < phase2_start], set(live), base["version"])
    after, n_after = _accuracy([r for r in results if r.window_start >= phase2_start], set(live), serving)
    versions: dict[str, int] = {}
    for t in totals:
        for version, n in t.model_versions.items():
            versions[version] = versions.get(version, 0) + n
    decision = result.get("decision") or {}
    models = {m["version"]: m["path"] for m in api.get("/v1/models").raise_for_status().json()}
    paired = await asyncio.to_thread(paired_phase2, settings, live, phase2_start, phase_s, models[base["version"]],
                                     models[serving])
    return FinetuneReport(
        base_version=base["version"], candidate_version=candidate, promoted=promoted,
        decision=decision.get("reason") or job.get("error") or "", p_value=decision.get("p_value"),
        heldout_accuracy_before=(result.get("base") or {}).get("accuracy"),
        heldout_accuracy_after=(result.get("candidate") or {}).get("accuracy"),
        heldout_macro_f1_before=(result.get("base") or {}).get("macro_f1"),
        heldout_macro_f1_after=(result.get("candidate") or {}).get("macro_f1"),
        live_accuracy_before=before, live_accuracy_after=after, live_windows_before=n_before,
        live_windows_after=n_after, phase2_accuracy_base=paired[0], phase2_accuracy_promoted=paired[1],
        phase2_windows=paired[2], train_windows=result.get("train_windows", 0),
        validation_windows=result.get("validation_windows", 0), heldout_windows=result.get("heldout_windows", 0),
        split=result.get("split") or "", labels_posted=len(labels), job_id=job_id, seed=seed, job_status=job["status"],
        job_seconds=result.get("job_seconds"), swap_seconds=swap_s, wall_s=0.0, train_devices=list(train),
        live_devices=list(live), model_versions=versions)
