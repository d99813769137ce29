"""The fine-tune job queue: rows of `finetune_jobs`, shared by the API (which queues and cancels) and any
number of runners (which claim, report and finish).

- claim: one UPDATE of the oldest queued job picked with `FOR UPDATE SKIP LOCKED`, so two runners
  never take the same job;
- heartbeat: the runner holding a job stamps `heartbeat_at` every `jobs.heartbeat_s`; every write a
  runner makes names itself (`runner = :me AND status = 'running'`), so a runner that lost its job
  (declared dead, cancelled) cannot touch it any more;
- recovery: a running job whose heartbeat is older than `jobs.stale_after_s` lost its runner (killed,
  host gone): it is queued again, to be run from its first step, or failed with the reason once it has
  started `jobs.max_attempts` times. Nothing is left "running" forever;
- cancel: a queued job is cancelled at once; a running one is asked to stop (`cancel_requested`), and
  its runner stops at its next progress report.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, text

COLUMNS = ("j.id, j.status, j.stage, j.percent, j.params, j.requested_by, j.base_model_version_id, "
           "j.result_model_version_id, b.version AS base_version, r.version AS candidate_version, j.created_at, "
           "j.started_at, j.finished_at, j.heartbeat_at, j.runner, j.attempts, j.cancel_requested, j.error, "
           "j.result, j.log")
FROM = ("finetune_jobs j LEFT JOIN model_versions b ON b.id = j.base_model_version_id "
        "LEFT JOIN model_versions r ON r.id = j.result_model_version_id")
FINISHED = ("succeeded", "failed", "cancelled")


class JobError(Exception):
    def __init__(self, reason: str, status: int = 409):
        super().__init__(reason)
        self.reason, self.status = reason, status


def create(conn: Connection, params: dict, requested_by: str | None, base_id: int) -> dict:
    job_id = conn.execute(text(
        "INSERT INTO finetune_jobs (base_model_version_id, params, requested_by, status, stage, log) "
        "VALUES (:base, CAST(:params AS jsonb), :by, 'queued', 'queued', ARRAY[CAST(:line AS text)]) RETURNING id"),
        {"base": base_id, "params": json.dumps(params, default=str), "by": requested_by,
         "line": f"queued by {requested_by or 'the local CLI'}"}).scalar_one()
    return get(conn, job_id)


def get(conn: Connection, job_id: int) -> dict | None:
    row = conn.execute(text(f"SELECT {COLUMNS} FROM {FROM} WHERE j.id = :id"), {"id": job_id}).first()
    return dict(row._mapping) if row is not None else None


def list_jobs(conn: Connection, status: str | None = None, limit: int = 100) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(
        f"SELECT {COLUMNS} FROM {FROM} WHERE (CAST(:status AS text) IS NULL OR j.status = :status) "
        "ORDER BY j.id DESC LIMIT :limit"), {"status": status, "limit": limit})]


def _append(line: str, keep: int) -> str:
    # the log keeps its last `keep` lines
    return (f"log = (log || ARRAY[CAST(:line AS text)])[greatest(1, cardinality(log) + 2 - {int(keep)}):]"
            if line is not None else "log = log")


def cancel(conn: Connection, job_id: int, by: str) -> dict:
    job = conn.execute(text("SELECT status FROM finetune_jobs WHERE id = :id FOR UPDATE"), {"id": job_id}).first()
    if job is None:
        raise JobError(f"no job {job_id}", 404)
    if job.status in FINISHED:
        raise JobError(f"job {job_id} already {job.status}")
    if job.status == "queued":
        conn.execute(text(f"UPDATE finetune_jobs SET status = 'cancelled', stage = 'cancelled', finished_at = now(), "
                          f"error = :why, {_append('x', 50)} WHERE id = :id"),
                     {"id": job_id, "why": f"cancelled by {by} before it started", "line": f"cancelled by {by}"})
    else:
        conn.execute(text(f"UPDATE finetune_jobs SET cancel_requested = true, {_append('x', 50)} WHERE id = :id"),
                     {"id": job_id, "line": f"cancel requested by {by}"})
    return get(conn, job_id)


def recover_stale(conn: Connection, stale_after_s: float, max_attempts: int, keep: int = 50) -> list[tuple[int, str]]:
    """Running jobs whose runner stopped heartbeating: queued again, or failed once out of attempts.
    Returns [(job id, 'requeued' | 'failed' | 'cancelled')]."""
    stale = conn.execute(text(
        "SELECT id, runner, attempts, heartbeat_at, cancel_requested FROM finetune_jobs WHERE status = 'running' "
        "AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => :stale)) "
        "ORDER BY id FOR UPDATE SKIP LOCKED"), {"stale": stale_after_s}).all()
    done = []
    for job in stale:
        seen = job.heartbeat_at.isoformat(timespec="seconds") if job.heartbeat_at else "never"
        lost = f"runner {job.runner} stopped heartbeating (last {seen}) during attempt {job.attempts}"
        if job.cancel_requested:
            action, sets, error = "cancelled", "status = 'cancelled', stage = 'cancelled', finished_at = now()", \
                f"cancelled; {lost}"
        elif job.attempts >= max_attempts:
            action, sets, error = "failed", "status = 'failed', stage = 'failed', finished_at = now()", \
                f"{lost}; {job.attempts} of {max_attempts} attempts used"
        else:
            action, sets, error = "requeued", "status = 'queued', stage = 'queued', percent = 0, runner = NULL", None
        line = f"{lost}: {'queued again, to run from its first step' if action == 'requeued' else action}"
        conn.execute(text(f"UPDATE finetune_jobs SET {sets}, error = coalesce(:error, error), {_append(line, keep)} "
                          "WHERE id = :id"), {"id": job.id, "error": error, "line": line})
        done.append((job.id, action))
    return done


def claim(conn: Connection, runner: str, keep: int = 50) -> dict | None:
    """The oldest queued job, now running under `runner`; None when there is none."""
    job_id = conn.execute(text(
        "UPDATE finetune_jobs SET status = 'running', stage = 'starting', percent = 0, runner = :runner, "
        "heartbeat_at = now(), started_at = coalesce(started_at, now()), attempts = attempts + 1, "
        f"{_append('x', keep)} WHERE id = (SELECT id FROM finetune_jobs WHERE status = 'queued' ORDER BY id "
        "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id"), {"runner": runner, "line": f"claimed by runner {runner}"}
    ).scalar()
    return get(conn, job_id) if job_id is not None else None


def report(conn: Connection, job_id: int, runner: str, *, stage: str | None = None, percent: float | None = None,
           line: str | None = None, keep: int = 50) -> str:
    """Heartbeat plus optional progress. Returns 'ok', 'cancel' (asked to stop) or 'lost' (no longer ours)."""
    row = conn.execute(text(
        "UPDATE finetune_jobs SET heartbeat_at = now(), stage = coalesce(:stage, stage), "
        f"percent = coalesce(:percent, percent), {_append(line, keep)} "
        "WHERE id = :id AND runner = :runner AND status = 'running' RETURNING cancel_requested"),
        {"id": job_id, "runner": runner, "stage": stage, "percent": percent, "line": line}).first()
    if row is None:
        return "lost"
    return "cancel" if row.cancel_requested else "ok"


def finish(conn: Connection, job_id: int, runner: str, status: str, *, error: str | None = None,
           result: dict | None = None, result_version_id: int | None = None, line: str | None = None,
           keep: int = 50) -> bool:
    """Close the job (only while `runner` holds it); False when it is no longer ours."""
    row = conn.execute(text(
        "UPDATE finetune_jobs SET status = :status, stage = :status, finished_at = now(), heartbeat_at = now(), "
        "percent = CASE WHEN CAST(:succeeded AS boolean) THEN 100 ELSE percent END, error = :error, "
        "result = CAST(:result AS jsonb), result_model_version_id = :version, "
        f"{_append(line, keep)} WHERE id = :id AND runner = :runner AND status = 'running' RETURNING id"),
        {"id": job_id, "runner": runner, "status": status, "succeeded": status == "succeeded", "error": error,
         "result": json.dumps(result or {}, default=str), "version": result_version_id, "line": line}).first()
    return row is not None


def lock_own(conn: Connection, job_id: int, runner: str) -> str:
    """Lock the job row for the final transaction: 'ok', 'cancel' or 'lost' (as `report`)."""
    row = conn.execute(text("SELECT cancel_requested FROM finetune_jobs WHERE id = :id AND runner = :runner "
                            "AND status = 'running' FOR UPDATE"), {"id": job_id, "runner": runner}).first()
    if row is None:
        return "lost"
    return "cancel" if row.cancel_requested else "ok"
