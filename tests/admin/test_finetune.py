"""The fine-tuning loop against the real services: labels posted through the API on stored raw frames,
jobs run by real runners (one of them a subprocess killed with SIGKILL), the registry and promotion
rule, and promotion/rollback reaching a live worker.

The labeled data are real HAPT recordings of TRAIN subjects (1, 3, 5, 6), stored as the raw frames a
worker keeps; test subjects never appear here. Epochs are few: these tests check behaviour, the
accuracy numbers come from `iotlm demo --scenario finetune` (docs/finetune.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import text

from finetune import jobs, registry
from finetune.dataset import LabeledWindows, split
from finetune.decision import decide, mcnemar_exact_p
from iotlm.credentials import redis_client

pytestmark = pytest.mark.services
NEW_NAME = "floor routine"  # an activity name the base model was never trained or labeled with
SITE_LABELS = ["walking", "walking upstairs", "walking downstairs", "sitting", "standing", NEW_NAME, "idle"]
T0 = 1_700_000_000.0  # event time of the stored recordings (a fixed past day)


# -- the rule and the split, on their own -----------------------------------------------------------

def test_exact_mcnemar_and_the_promotion_rule():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_exact_p(8, 2) == pytest.approx(56 / 1024)  # P(X >= 8 | 10, 1/2)
    n = 200
    base = np.zeros(n, bool)
    base[:120] = True
    better = base.copy()
    better[120:150] = True  # 30 more right, none lost
    assert decide(base, better, 0.5, 0.6).promote
    worse = base.copy()
    worse[:30] = False  # a regression
    d = decide(base, worse, 0.5, 0.4)
    assert not d.promote and "not more accurate" in d.reason and d.base_only_right == 30
    slightly = base.copy()
    slightly[120:123] = True  # 3 more right: within chance for this size
    d = decide(base, slightly, 0.5, 0.51)
    assert not d.promote and "not significant" in d.reason and d.p_value > 0.05
    assert not decide(base, better, 0.5, 0.45).promote  # accuracy up, macro-F1 down: not automatic
    assert not decide(base[:10], better[:10], 0.5, 0.6, min_heldout=20).promote


def _windows(devices: list[str], seconds: float, hop: float = 1.28, window: float = 2.56) -> LabeledWindows:
    start = np.concatenate([np.arange(0, seconds - window, hop) + T0 for _ in devices])
    device = np.concatenate([[d] * int(len(start) / len(devices)) for d in devices])
    n = len(start)
    return LabeledWindows(np.zeros((n, 64, 3), np.float32), None, np.arange(n) % 2, ["a", "b"], device, start,
                          start + window, np.zeros(n, int), 25.0, "waist")


def test_time_blocks_never_share_signal_and_devices_split_whole():
    w = _windows(["d1", "d2"], 600.0)
    s = split(w, "time", block_s=60.0)
    assert s.how == "time" and s.dropped > 0 and len(s.test) and len(s.validation)
    for a, b in ((s.train, s.test), (s.train, s.validation), (s.validation, s.test)):
        for d in ("d1", "d2"):
            ia, ib = a[w.device[a] == d], b[w.device[b] == d]
            # no window of one part overlaps in time a window of the other part on the same device
            overlap = (w.start[ia][:, None] < w.end[ib][None, :]) & (w.start[ib][None, :] < w.end[ia][:, None])
            assert not overlap.any()
    w = _windows(["d1", "d2", "d3", "d4", "d5"], 100.0)
    s = split(w, "auto")
    assert s.how == "device"
    parts = [set(w.device[i]) for i in (s.train, s.validation, s.test)]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


# -- helpers on the real services -------------------------------------------------------------------

def store_subject(settings, subject: int, device_id: str, seconds: int, t0: float = T0) -> list:
    """The first `seconds` of a HAPT subject as raw frames in `raw_frames` (what a worker stores);
    returns the (frame, truth) pairs."""
    from ingest.codec import encode
    from ingest.simulate import SubjectSignal
    from storage.writer import RawFrameRow, RawFrameWriter

    signal_ = SubjectSignal.load([subject])[subject]
    pairs = [signal_.frame(device_id, seq, t0 + seq, 1.0) for seq in range(seconds)]
    writer = RawFrameWriter(settings)
    writer.write([RawFrameRow(device_id, datetime.fromtimestamp(f.t0, timezone.utc), f.seq, encode(f))
                  for f, _ in pairs])
    writer.engine.dispose()
    return pairs


def label_runs(pairs, names: dict[int, str], t0: float = T0) -> list[dict]:
    """One label per run of one basic HAPT activity (ids 1-6 -> `names`), as a person would post them."""
    ids = np.concatenate([truth.labels for _, truth in pairs])
    device_id = pairs[0][0].device_id
    out, i = [], 0
    while i < len(ids):
        j = i
        while j < len(ids) and ids[j] == ids[i]:
            j += 1
        if int(ids[i]) in names and j - i >= 150:  # runs of 3 s or more
            out.append({"device_id": device_id, "label": names[int(ids[i])],
                        "starts_at": datetime.fromtimestamp(t0 + i / 50, timezone.utc).isoformat(),
                        "ends_at": datetime.fromtimestamp(t0 + j / 50, timezone.utc).isoformat()})
        i = j
    return out


def hapt_names(settings) -> dict[int, str]:
    names = dict(zip(range(1, 7), settings.workers.labels))
    names[6] = NEW_NAME  # HAPT's "lying", under a name no model has seen
    return names


def runner_settings(settings, tmp_path, **jobs_):
    return settings.model_copy(update={"jobs": settings.jobs.model_copy(update={
        "models_dir": str(tmp_path / "models"), "epochs": 2, "heartbeat_s": 0.5, "min_windows_per_class": 8,
        "min_windows_total": 40, "min_heldout_windows": 20, **jobs_})})


def run_job(api, admin, body: dict, runner_settings_) -> dict:
    from finetune.runner import JobRunner

    made = admin.post("/v1/finetune", json=body)
    assert made.status_code == 202, made.text
    runner = JobRunner(runner_settings_)
    try:
        assert runner.run_once() == made.json()["id"]
    finally:
        runner.close()
    return admin.get(f"/v1/jobs/{made.json()['id']}").json()


@pytest.fixture(scope="module")
def fleet(api):
    """Three devices (HAPT train subjects 1, 3, 5: 300 s each) in a site whose label set has a new
    activity name, their raw frames stored and their activity runs labeled through the API."""
    with api.client() as admin:
        for path, body in (("/v1/sites", {"id": "ft-site", "name": "ft"}),
                           ("/v1/buildings", {"id": "ft-b", "site_id": "ft-site", "name": "b"}),
                           ("/v1/rooms", {"id": "ft-r", "building_id": "ft-b", "name": "r"})):
            assert admin.post(path, json=body).status_code == 201
        assert admin.put("/v1/label-sets/ft-site", json={"labels": SITE_LABELS}).status_code == 200
        labels = []
        for subject in (1, 3, 5):
            device = f"hapt-s{subject:02d}"
            assert admin.post("/v1/devices", json={"id": device, "placement": "waist", "room_id": "ft-r"}).status_code == 201
            labels += label_runs(store_subject(api.settings, subject, device, 300), hapt_names(api.settings))
        posted = admin.post("/v1/labels:bulk", json={"labels": labels})
        assert posted.status_code == 201, posted.text
    return {"devices": ["hapt-s01", "hapt-s03", "hapt-s05"], "labels": len(labels)}


# -- refusals ---------------------------------------------------------------------------------------

def test_one_class_and_too_few_labels_are_refused_with_the_reason(api, fleet, tmp_path):
    settings = runner_settings(api.settings, tmp_path)
    with api.client() as admin:
        one = run_job(api, admin, {"labels": ["standing", "lying"], "devices": ["hapt-s01"],
                                   "end": datetime.fromtimestamp(T0 + 26, timezone.utc).isoformat()}, settings)
        assert one["status"] == "failed" and "one class" in one["error"], one
        few = run_job(api, admin, {"devices": ["hapt-s01"], "labels": ["walking", NEW_NAME]},
                      runner_settings(api.settings, tmp_path, min_windows_per_class=1000))
        assert few["status"] == "failed" and "too few labeled windows" in few["error"] and "1000" in few["error"]
        assert few["candidate_version"] is None
        assert admin.post("/v1/finetune", json={"labels": ["walking"]}).status_code == 422  # a set of one
        assert admin.post("/v1/finetune", json={"base_version": "nope"}).status_code == 404
        listed = admin.get("/v1/models").json()
        assert [m["status"] for m in listed] == ["promoted"]  # only the base: nothing was registered


# -- a new activity name, the decision, the registry -----------------------------------------------

def test_a_new_activity_name_becomes_recognizable_and_the_better_model_is_promoted(api, fleet, tmp_path):
    settings = runner_settings(api.settings, tmp_path, epochs=3)
    with api.client() as admin:
        base = admin.get("/v1/models").json()[0]
        job = run_job(api, admin, {"labels": [n for n in SITE_LABELS if n != "idle"], "split": "time", "lr": 1e-3},
                      settings)
        assert job["status"] == "succeeded", job
        result = job["result"]
        new_f1_base, new_f1 = result["base"]["per_class_f1"][NEW_NAME], result["candidate"]["per_class_f1"][NEW_NAME]
        print("new class F1 base", new_f1_base, "candidate", new_f1, result["decision"]["reason"])
        assert new_f1_base < 0.5  # the base cannot tell this activity (HAPT lying) under its new name
        assert new_f1 >= 0.7 and new_f1 - new_f1_base >= 0.3
        assert result["promoted"] and result["decision"]["promote"] and result["decision"]["p_value"] < 0.05
        models = {m["version"]: m for m in admin.get("/v1/models").json()}
        cand = models[job["candidate_version"]]
        assert cand["status"] == "promoted" and cand["live"] and cand["parent_version"] == base["version"]
        assert cand["previous_version"] == base["version"] and models[base["version"]]["status"] == "retired"
        assert NEW_NAME in cand["labels"] and cand["training"]["label_ids"] and cand["job_id"] == job["id"]
        assert registry.file_hashes(cand["path"])[1] == cand["content_hash"]
        assert json.loads(open(os.path.join(cand["path"], "config.json")).read())["version"] == cand["version"]
        rc = redis_client(api.settings, "api")
        assert rc.get(api.settings.workers.model_key) == cand["path"]
        rc.close()
        # the regression: a learning rate that wrecks the weights; never promoted automatically
        bad = run_job(api, admin, {"labels": [n for n in SITE_LABELS if n != "idle"], "split": "time", "lr": 0.5,
                                   "epochs": 1}, settings)
        assert bad["status"] == "succeeded" and not bad["result"]["promoted"], bad["result"]["decision"]
        assert bad["result"]["decision"]["base_only_right"] > bad["result"]["decision"]["candidate_only_right"]
        models = {m["version"]: m for m in admin.get("/v1/models").json()}
        assert models[bad["candidate_version"]]["status"] == "candidate"
        assert "not promoted" in models[bad["candidate_version"]]["reason"]
        assert models[job["candidate_version"]]["status"] == "promoted"  # still the one serving
        # rollback in the registry: the base again, and no further
        back = admin.post("/v1/models/rollback").json()
        assert back["promoted"]["version"] == base["version"] and back["replaced"] == job["candidate_version"]
        assert admin.post("/v1/models/rollback").status_code == 409


# -- a runner killed mid-job ------------------------------------------------------------------------

def test_a_runner_killed_mid_job_leaves_no_version_and_the_job_is_resumed(api, fleet, tmp_path):
    from finetune.runner import JobRunner

    killed_settings = runner_settings(api.settings, tmp_path, epochs=200)  # long: it is killed while training
    env = os.environ | killed_settings.environ()
    with api.client() as admin:
        job_id = admin.post("/v1/finetune", json={"labels": ["walking", "standing", NEW_NAME], "split": "time"}).json()["id"]
        runner = subprocess.Popen([sys.executable, "-m", "iotlm", "jobs", "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = admin.get(f"/v1/jobs/{job_id}").json()
                if job["stage"] == "finetune" and job["percent"] > 31:
                    break
                assert runner.poll() is None, "the runner exited before training"
                time.sleep(0.2)
            else:
                raise AssertionError(f"the job never reached training: {job}")
            runner.send_signal(signal.SIGKILL)
            runner.wait(10)
        finally:
            if runner.poll() is None:
                runner.kill()
        job = admin.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "running" and job["candidate_version"] is None
        with JobRunner(api.settings).db() as conn:
            assert conn.execute(text("SELECT count(*) FROM model_versions WHERE job_id = :j"), {"j": job_id}).scalar() == 0
        leftovers = list((tmp_path / "models").glob("*")) if (tmp_path / "models").exists() else []
        assert not [p for p in leftovers if not p.name.startswith(".tmp-")]  # no final directory either

        # another runner finds the heartbeat stale, queues the job again and runs it from its first step
        time.sleep(1.5)
        resumed = JobRunner(runner_settings(api.settings, tmp_path, epochs=1, stale_after_s=1.0))
        try:
            assert resumed.run_once() == job_id
        finally:
            resumed.close()
        job = admin.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["attempts"] == 2 and job["candidate_version"]
        assert any("stopped heartbeating" in line and "queued again" in line for line in job["log"]), job["log"]
        with JobRunner(api.settings).db() as conn:
            assert conn.execute(text("SELECT count(*) FROM model_versions WHERE job_id = :j"), {"j": job_id}).scalar() == 1

        # out of attempts: failed with the reason, never left running
        job_id = admin.post("/v1/finetune", json={"labels": ["walking", "standing"]}).json()["id"]
        vanished = JobRunner(api.settings, name="vanished-runner")
        with vanished.db() as conn:
            assert jobs.claim(conn, vanished.name)["id"] == job_id  # ... and then it is never heard of again
        time.sleep(1.5)
        with vanished.db() as conn:
            assert jobs.recover_stale(conn, 1.0, max_attempts=1) == [(job_id, "failed")]
        vanished.close()
        job = admin.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "failed" and "vanished-runner stopped heartbeating" in job["error"]


def test_cancel_a_queued_and_a_running_job(api, fleet, tmp_path):
    from finetune.runner import JobRunner

    with api.client() as admin:
        queued = admin.post("/v1/finetune", json={"labels": ["walking", "standing"]}).json()["id"]
        assert admin.post(f"/v1/jobs/{queued}/cancel").json()["status"] == "cancelled"
        assert admin.post(f"/v1/jobs/{queued}/cancel").status_code == 409
        running = admin.post("/v1/finetune", json={"labels": ["walking", "standing"]}).json()["id"]
        runner = JobRunner(runner_settings(api.settings, tmp_path))
        with runner.db() as conn:
            jobs.claim(conn, runner.name)
        assert admin.post(f"/v1/jobs/{running}/cancel").json()["cancel_requested"]
        with runner.db() as conn:
            job = jobs.get(conn, running)
        runner.execute(job)  # stops at its first progress report
        runner.close()
        job = admin.get(f"/v1/jobs/{running}").json()
        assert job["status"] == "cancelled" and job["candidate_version"] is None
    # `iotlm jobs watch` follows it through the API to its end: a job that did not succeed exits 1
    watched = subprocess.run([sys.executable, "-m", "iotlm", "jobs", "watch", str(running), "--json"],
                             env=os.environ | {"IOTLM_API_KEY": api.keys["read"], "IOTLM_API__URL": api.url},
                             capture_output=True, text=True, timeout=60)
    assert watched.returncode == 1 and json.loads(watched.stdout.splitlines()[-1])["status"] == "cancelled"
    assert "claimed by runner" in watched.stderr  # the log lines are shown under the bar


# -- promotion and rollback reach a live worker -----------------------------------------------------

def test_promotion_and_rollback_reach_a_live_worker_and_the_job_windows_its_stream_as_it_did(api, live, tmp_path):
    settings = api.settings
    with api.client() as admin:
        current = [m for m in admin.get("/v1/models").json() if m["status"] == "promoted"][0]
        # a version with other weights' name: the base's files under a new version, registered with its hash
        path = tmp_path / "copy"
        shutil.copytree(current["path"], path)
        config = json.loads((path / "config.json").read_text())
        config["version"] = f"motion-copy-{uuid.uuid4().hex[:6]}"
        (path / "config.json").write_text(json.dumps(config))
        files, content = registry.file_hashes(path)
        from storage.lane import engine_from_settings

        engine = engine_from_settings(settings)
        with engine.begin() as conn:
            registry.register(conn, version=config["version"], path=path, files=files, content_hash=content,
                              labels=current["labels"], training={}, metrics={}, parent_id=current["id"])
        engine.dispose()
        device, t0 = f"dev-ft-{uuid.uuid4().hex[:6]}", time.time() - 3000

        def versions_since(start: float) -> dict[str, int]:
            import psycopg

            from iotlm.credentials import postgres_connect_kwargs

            with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
                rows = conn.execute("SELECT model_version, count(*) FROM window_predictions WHERE device_id = %s "
                                    "AND window_start >= %s GROUP BY 1",
                                    (device, datetime.fromtimestamp(start, timezone.utc))).fetchall()
            return dict(rows)

        stream = live.frames(device, 36, t0)
        with live.live_worker(settings) as worker:
            def serve_and_check(segment: int, version: str) -> None:
                live.wait_until(lambda: worker.classifier.version == version, 30, f"worker serving {version}")
                start = t0 + 12 * segment
                live.send(settings, stream[12 * segment:12 * (segment + 1)])
                live.wait_until(lambda: versions_since(start + 3).get(version, 0) >= 4, 60, f"rows of {version}")
                assert set(versions_since(start + 3)) == {version}

            serve_and_check(0, current["version"])
            promoted = admin.post(f"/v1/models/{config['version']}/promote")
            assert promoted.status_code == 200, promoted.text
            serve_and_check(1, config["version"])
            back = admin.post("/v1/models/rollback")
            assert back.status_code == 200 and back.json()["promoted"]["version"] == current["version"]
            serve_and_check(2, current["version"])
            live.wait_until(lambda: sum(versions_since(t0).values()) >= 24, 30, "the stream's windows")
            # the job's windows of this stream, cut from raw_frames, are exactly the worker's windows
            import psycopg

            from finetune.dataset import assemble
            from iotlm.credentials import postgres_connect_kwargs

            with psycopg.connect(**postgres_connect_kwargs(settings)) as conn:
                stored = {round(r[0].timestamp(), 3) for r in conn.execute(
                    "SELECT window_start FROM window_predictions WHERE device_id = %s", (device,))}
            label = {"id": 0, "device_id": device, "label": "standing",
                     "starts_at": datetime.fromtimestamp(t0, timezone.utc),
                     "ends_at": datetime.fromtimestamp(t0 + 36, timezone.utc)}
            engine = engine_from_settings(settings)
            windows = assemble(engine.connect, settings, [label], worker.classifier.model.rate_hz)
            engine.dispose()
            assert {round(float(x), 3) for x in windows.start} == stored
        # a version whose files changed after registration is refused, the serving one stays
        (path / "config.json").write_text("{}")
        refused = admin.post(f"/v1/models/{config['version']}/promote")
        assert refused.status_code == 409 and "changed since registration" in refused.json()["detail"]
