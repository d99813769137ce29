"""Fine-tune jobs: queue one (`POST /v1/finetune`), follow it (`GET /v1/jobs/{id}`), cancel it.

The API only queues: a job runner (`iotlm jobs run`, finetune/runner.py) claims and runs it, reporting
its stage, percent and a log tail in the job row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import Field

from admin import audit
from admin.deps import AdminKey, ReadKey, Store
from admin.models import Body, Ident, Out, Time
from admin.routes import CONFLICT, NOT_FOUND, PROBLEMS
from admin.routes.params import LimitQ, RowId
from admin.rules import ActivityName
from finetune import jobs, registry

router = APIRouter(tags=["fine-tuning"], responses=PROBLEMS)


class FinetuneIn(Body):
    devices: list[Ident] | None = Field(None, min_length=1, max_length=10_000,
                                        description="Devices whose labels to use; default: all labeled devices.")
    start: Time | None = Field(None, description="Only labeled time from here on.")
    end: Time | None = Field(None, description="Only labeled time before this.")
    labels: list[ActivityName] | None = Field(
        None, min_length=2, max_length=64,
        description="The label set to learn (new activity names welcome); default: every labeled activity.")
    base_version: str | None = Field(None, max_length=64, description="Default: the promoted version.")
    split: Literal["auto", "device", "time"] | None = None
    epochs: int | None = Field(None, ge=1, le=200)
    lr: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    auto_promote: bool | None = Field(None, description="Promote when the decision rule says so (default: settings).")


class Job(Out):
    id: int
    status: str
    stage: str
    percent: float
    params: dict[str, Any]
    requested_by: str | None
    base_version: str | None
    candidate_version: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    runner: str | None
    attempts: int
    cancel_requested: bool
    error: str | None
    result: dict[str, Any]
    log: list[str]


@router.post("/v1/finetune", response_model=Job, status_code=202, responses=NOT_FOUND)
def create_job(body: FinetuneIn, store: Store, caller: AdminKey, request: Request):
    """Queue a fine-tune of the promoted (or the given) version on the labeled stream data."""
    if body.start and body.end and body.end <= body.start:
        raise HTTPException(422, "end must be after start")
    if body.labels and len(set(body.labels)) != len(body.labels):
        raise HTTPException(422, "the label set names an activity twice")
    params = body.model_dump(mode="json", exclude_none=True, exclude={"base_version"})
    with store.begin() as conn:
        promoted = registry.ensure_base(conn, request.app.state.settings)
        base = registry.get_version(conn, body.base_version) if body.base_version else promoted
        if base is None:
            raise HTTPException(404, f"no model version {body.base_version!r}")
        job = jobs.create(conn, params, caller.name, base["id"])
        audit.record(conn, caller.key_id, "create", "finetune_job", job["id"], None, {"params": params,
                                                                                       "base": base["version"]})
    return job


@router.get("/v1/jobs", response_model=list[Job])
def list_jobs(store: Store, _: ReadKey, status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
              | None = Query(None), limit: LimitQ = 100):
    with store.connect() as conn:
        return jobs.list_jobs(conn, status, limit)


@router.get("/v1/jobs/{job_id}", response_model=Job, responses=NOT_FOUND)
def get_job(job_id: RowId, store: Store, _: ReadKey):
    """Stage, percent, the log's last lines, and (when done) the result: metrics and the decision."""
    with store.connect() as conn:
        job = jobs.get(conn, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


@router.post("/v1/jobs/{job_id}/cancel", response_model=Job, responses=NOT_FOUND | CONFLICT)
def cancel_job(job_id: RowId, store: Store, caller: AdminKey):
    """A queued job is cancelled now; a running one stops at its runner's next progress report."""
    try:
        with store.begin() as conn:
            job = jobs.cancel(conn, job_id, caller.name)
            audit.record(conn, caller.key_id, "cancel", "finetune_job", job_id, None, {"status": job["status"]})
    except jobs.JobError as exc:
        raise HTTPException(exc.status, exc.reason) from None
    return job
