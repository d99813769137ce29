"""The job runner (`iotlm jobs run`): claims queued fine-tune jobs and runs each through its steps.

    assemble -> split -> finetune -> evaluate -> store (and, when the decision rule says so, promote)

Runs outside the API process, as the API's principal (database role iotlm_api, Redis user api: the
only one that may move the promotion key). Any number of runners may share a queue (`finetune.jobs`).

Safety of a kill at any moment: the candidate's files are written into a temporary directory, hashed,
and renamed into `{models_dir}/{version}` before ONE transaction locks the job row (still ours, not
cancelled), registers the version, promotes it if decided, and closes the job. A runner killed before
that commit leaves no registry row (at worst an unreferenced directory); its job's heartbeat goes
stale and the next runner queues it again (it restarts from the first step, with the same seed) or
fails it with the reason once `jobs.max_attempts` runs were started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from finetune import jobs, registry
from finetune.dataset import Refused, assemble, check_enough, select_labels, split
from finetune.decision import decide

log = logging.getLogger(__name__)


class Stop(Exception):
    """The job must stop now: 'cancel' (asked to) or 'lost' (another runner or recovery took it)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class _Reporter:
    """Heartbeats in a thread; progress from the job's thread, which stops at a cancel or a loss."""

    def __init__(self, runner: JobRunner, job_id: int):
        self.runner, self.job_id = runner, job_id
        self.state = "ok"
        self._done = threading.Event()
        self._last_percent_at = 0.0
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._done.wait(self.runner.settings.jobs.heartbeat_s):
            try:
                with self.runner.db() as conn:
                    self.state = jobs.report(conn, self.job_id, self.runner.name)
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("job %d: heartbeat failed: %s", self.job_id, exc)

    def step(self, stage: str | None, percent: float, line: str | None = None, *, throttle: bool = False) -> None:
        if throttle and time.monotonic() - self._last_percent_at < 1.0 and self.state == "ok":
            return
        self._last_percent_at = time.monotonic()
        if line:
            log.info("job %d: %s", self.job_id, line)
        with self.runner.db() as conn:
            self.state = jobs.report(conn, self.job_id, self.runner.name, stage=stage, percent=round(percent, 1),
                                     line=line, keep=self.runner.settings.jobs.log_lines)
        if self.state != "ok":
            raise Stop(self.state)

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class JobRunner:
    def __init__(self, settings, name: str | None = None):
        from iotlm.credentials import redis_client
        from storage.lane import engine_from_settings

        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        from storage.lane import uses_timescale

        self.engine = engine_from_settings(settings, principal="api")
        self.redis = redis_client(settings, "api", decode_responses=False)
        # PGlite serves one connection at a time: the job's thread and its heartbeat take turns
        single = uses_timescale(settings) and settings.storage.timescale_single_connection
        self._lock = threading.Lock() if single else contextlib.nullcontext()

    @contextmanager
    def db(self):
        """One short transaction (never held across a step: the heartbeat needs the database too)."""
        with self._lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()

    # -- the queue ---------------------------------------------------------------------------------

    def run_once(self) -> int | None:
        """Recover stale jobs, claim one and run it to its end; the job id, or None when none was queued."""
        js = self.settings.jobs
        with self.db() as conn:
            for job_id, action in jobs.recover_stale(conn, js.stale_after_s, js.max_attempts, js.log_lines):
                log.warning("job %d lost its runner: %s", job_id, action)
            job = jobs.claim(conn, self.name, js.log_lines)
        if job is None:
            return None
        self.execute(job)
        return job["id"]

    def run_forever(self, stop: threading.Event) -> None:
        log.info("runner %s waiting for jobs", self.name)
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("runner %s: cannot reach the queue", self.name)
                ran = None
            if ran is None:
                stop.wait(self.settings.jobs.poll_s)

    # -- one job -----------------------------------------------------------------------------------

    def execute(self, job: dict) -> None:
        reporter = _Reporter(self, job["id"])
        began = time.monotonic()
        try:
            result, _version_id, line = self._steps(job, reporter, began)
            status, error = "succeeded", None
        except Stop as stop:
            if stop.why == "lost":
                log.warning("job %d is no longer held by %s; stopped", job["id"], self.name)
                return
            status, error, result, line = "cancelled", "cancelled on request", {}, "cancelled"
        except Refused as refused:
            status, error, result, line = "failed", f"refused: {refused}", {}, f"refused: {refused}"
        except Exception as exc:  # the job fails with the reason; the runner goes on
            log.exception("job %d failed", job["id"])
            status, error, result = "failed", f"{type(exc).__name__}: {exc}", {}
            line = f"failed: {error}"
        finally:
            reporter.close()
        if status != "succeeded":
            with self.db() as conn:
                jobs.finish(conn, job["id"], self.name, status, error=error, result=result, line=line,
                            keep=self.settings.jobs.log_lines)

    def _steps(self, job: dict, rep: _Reporter, began: float) -> tuple[dict, int, str]:
        import torch

        from models.metrics import classification_metrics
        from models.inference import MotionClassifier, resolve_device
        from models.train import finetune

        js, params = self.settings.jobs, job["params"] or {}
        seed = int(params.get("seed", js.seed))
        if js.threads:
            torch.set_num_threads(js.threads)
        torch.manual_seed(seed)
        device = resolve_device(self.settings.models.device)
        seconds: dict[str, float] = {}
        mark = time.monotonic()

        def lap(stage: str) -> None:
            nonlocal mark
            seconds[stage] = round(time.monotonic() - mark, 2)
            mark = time.monotonic()

        with self.db() as conn:
            base = registry.get_by_id(conn, job["base_model_version_id"])
        rep.step("assemble", 1, f"attempt {job['attempts']}: base {base['version']} on {device}")
        base_model = MotionClassifier.load(base["path"], device=device)
        with self.db() as conn:
            rows = select_labels(conn, params.get("devices"), params.get("start"), params.get("end"),
                                 params.get("labels"))
        windows = assemble(self.db, self.settings, rows, base_model.rate_hz,
                           progress=lambda done, total: rep.step(None, 1 + 24 * done / total, throttle=True),
                           label_set=params.get("labels"))
        counts = {label: int((windows.y == i).sum()) for i, label in enumerate(windows.labels)}
        rep.step("split", 25, f"{len(windows)} labeled windows from {len(set(windows.device.tolist()))} device(s), "
                              f"{len(rows)} labels: {counts}")
        lap("assemble")
        check_enough(windows, js.min_windows_total, js.min_windows_per_class)
        parts = split(windows, params.get("split") or js.split, js.block_s, seed)
        sizes = {"train": len(parts.train), "validation": len(parts.validation), "test": len(parts.test)}
        missing = [label for i, label in enumerate(windows.labels) if not (windows.y[parts.train] == i).any()]
        if missing:
            raise Refused(f"split by {parts.how}: no training window of {', '.join(map(repr, missing))}; "
                          "label these activities on more devices or over a longer time")
        if len(parts.validation) == 0 or len(parts.test) < js.min_heldout_windows:
            raise Refused(f"split by {parts.how} leaves {sizes['validation']} validation and {sizes['test']} held-out "
                          f"windows; at least 1 and {js.min_heldout_windows} are needed: label more")
        rep.step("finetune", 30, f"split by {parts.how} ({parts.dropped} windows straddling blocks dropped): {sizes}")
        lap("split")

        fit, val, test = (windows.window_set(i) for i in (parts.train, parts.validation, parts.test))
        label_vectors = base_model.label_vectors(windows.labels).cpu().numpy()  # new names: their text vectors
        model = MotionClassifier.load(base["path"], device="cpu").model
        epochs, lr = int(params.get("epochs", js.epochs)), float(params.get("lr", js.lr))
        model, history = finetune(
            model, fit, val, label_vectors, epochs=epochs, batch_size=js.batch_size, lr=lr, min_steps=0, seed=seed,
            device=device, on_step=lambda s, total: rep.step(None, 30 + 55 * s / total, throttle=True))
        best = max(history, key=lambda h: (h["val_macro_f1"], h["step"]))
        rep.step("evaluate", 85, f"fine-tuned {history[-1]['step']} steps; best validation macro-F1 "
                                 f"{best['val_macro_f1']:.3f} (step {best['step']})")
        lap("finetune")

        version = f"motion-ft-j{job['id']}-{uuid.uuid4().hex[:8]}"
        meta = {
            "version": version, "default_labels": list(windows.labels),
            "training": {"kind": "fine-tune job on labeled stream windows", "init": base["version"], "job": job["id"],
                         "split": parts.how, "windows": sizes, "hyperparameters": {
                             "epochs": epochs, "lr": lr, "batch_size": js.batch_size, "seed": seed},
                         "history": history},
            "metrics": {},
        }
        candidate = MotionClassifier(model, {**meta, "rate_hz": base_model.rate_hz, "window_s": base_model.window_s},
                                     base_model.text_vectors, device)
        y = test.y
        base_pred = base_model.predict_proba(test.acc, test.gyro, test.rate_hz, windows.labels, test.placement).argmax(1)
        cand_pred = candidate.predict_proba(test.acc, test.gyro, test.rate_hz, windows.labels, test.placement).argmax(1)
        base_metrics = classification_metrics(y, base_pred, windows.labels)
        cand_metrics = classification_metrics(y, cand_pred, windows.labels)
        decision = decide(base_pred == y, cand_pred == y, base_metrics["macro_f1"], cand_metrics["macro_f1"],
                          alpha=js.alpha, min_heldout=js.min_heldout_windows)
        auto = bool(params.get("auto_promote", js.auto_promote))
        rep.step("store", 92, decision.reason)
        lap("evaluate")

        meta["metrics"] = {"heldout": cand_metrics, "base_heldout": base_metrics}
        directory = self._write_files(model, meta, base_model.text_vectors, version)
        files, content = registry.file_hashes(directory)
        training = {
            "label_ids": sorted({int(i) for i in windows.label_id}), "devices": {
                d: [float(windows.start[windows.device == d].min()), float(windows.end[windows.device == d].max())]
                for d in sorted(set(windows.device.tolist()))},
            "split": {"how": parts.how, "groups": parts.groups, "dropped_straddling": parts.dropped},
            "windows": sizes, "class_counts": counts, "assembly": windows.stats, "params": params,
            "hyperparameters": meta["training"]["hyperparameters"],
        }
        lap("store")
        result = {
            "decision": decision.to_dict(), "auto_promote": auto, "label_set": windows.labels,
            "base_version": base["version"], "candidate_version": version,
            "train_windows": sizes["train"], "validation_windows": sizes["validation"],
            "heldout_windows": sizes["test"], "split": parts.how,
            "base": {k: base_metrics[k] for k in ("accuracy", "macro_f1", "per_class_f1", "confusion")},
            "candidate": {k: cand_metrics[k] for k in ("accuracy", "macro_f1", "per_class_f1", "confusion")},
            "stage_seconds": seconds, "device": device,
        }
        promote = decision.promote and auto
        try:
            with self.db() as conn:
                state = jobs.lock_own(conn, job["id"], self.name)
                if state != "ok":
                    raise Stop(state)
                row = registry.register(
                    conn, version=version, path=directory, files=files, content_hash=content, labels=windows.labels,
                    training=training, metrics={"heldout": result["candidate"], "base_heldout": result["base"],
                                                "decision": decision.to_dict()},
                    reason=decision.reason if auto else f"automatic promotion off; {decision.reason}",
                    parent_id=base["id"], job_id=job["id"])
                if promote:
                    row, _ = registry.promote(conn, version, f"job {job['id']}: {decision.reason}")
                result["promoted"] = promote
                result["job_seconds"] = round(time.monotonic() - began, 1)
                line = f"registered {version} ({'promoted' if promote else 'candidate'})"
                jobs.finish(conn, job["id"], self.name, "succeeded", result=result, result_version_id=row["id"],
                            line=line, keep=js.log_lines)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # not registered: its files must not linger as if it were
            raise
        if promote:
            try:
                registry.publish(self.redis, self.settings, row)
            except Exception as exc:  # committed: POST /v1/models/{version}/promote publishes again
                log.error("job %d: %s promoted but the workers' key could not be set: %s", job["id"], version, exc)
        return result, row["id"], line

    def _write_files(self, model, meta: dict, text_vectors: dict, version: str) -> Path:
        """Files written and synced under a temporary name, then renamed into place in one step."""
        from models.inference import save_checkpoint

        root = self.settings.models_dir
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-{version}"
        save_checkpoint(model, tmp, meta, text_vectors)
        for name in registry.CHECKPOINT_FILES:
            with (tmp / name).open("rb") as f:
                os.fsync(f.fileno())
        final = root / version
        os.replace(tmp, final)
        return final.resolve()

