"""The model registry: list versions, promote one, roll back (finetune/registry.py does the work).

A promotion or rollback is committed in the registry first, then published on the workers' hot-reload
key; every worker swaps the model in between two batches, without a restart, and every result row
names the version that produced it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel

from admin import audit
from admin.deps import AdminKey, ReadKey, Store
from admin.models import Out
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import PathId
from finetune import registry

router = resource_router("models", "models")


class ModelVersion(Out):
    id: int
    name: str
    version: str
    status: str
    path: str
    parent_version: str | None = None
    previous_version: str | None = None
    job_id: int | None = None
    labels: list[str]
    training: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, str]
    content_hash: str | None
    reason: str | None
    created_at: datetime
    promoted_at: datetime | None
    retired_at: datetime | None
    live: bool = False  # the workers' hot-reload key names this version's files


class Promotion(BaseModel):
    promoted: ModelVersion
    replaced: str | None
    published_key: str


def _documents(rows: list[dict], by_id: dict[int, dict], live: str | None) -> list[dict]:
    return [row | {"parent_version": by_id.get(row["parent_id"], {}).get("version"),
                   "previous_version": by_id.get(row["previous_id"], {}).get("version"),
                   "live": live is not None and live == row["path"]} for row in rows]


def _live(request: Request) -> str | None:
    state = request.app.state
    return registry.live_key(state.live_state.redis, state.settings)


@router.get("", response_model=list[ModelVersion])
def list_models(store: Store, _: ReadKey, request: Request):
    """Every version, newest first (the settings' default checkpoint is registered on first use)."""
    with store.begin() as conn:
        registry.ensure_base(conn, request.app.state.settings)
        rows = registry.list_versions(conn)
    return _documents(rows, {r["id"]: r for r in rows}, _live(request))


@router.get("/{version}", response_model=ModelVersion, responses=NOT_FOUND)
def get_model(version: PathId, store: Store, _: ReadKey, request: Request):
    with store.begin() as conn:
        registry.ensure_base(conn, request.app.state.settings)
        rows = registry.list_versions(conn)
    found = [r for r in rows if r["version"] == version]
    if not found:
        raise HTTPException(404, f"no model version {version!r}")
    return _documents(found, {r["id"]: r for r in rows}, _live(request))[0]


def _publish(request: Request, row: dict) -> str:
    state = request.app.state
    registry.publish(state.live_state.redis, state.settings, row)
    return state.settings.workers.model_key


@router.post("/rollback", response_model=Promotion, responses=CONFLICT)
def rollback(store: Store, caller: AdminKey, request: Request):
    """Retire the promoted version and serve again the one it replaced."""
    try:
        with store.begin() as conn:
            registry.ensure_base(conn, request.app.state.settings)
            row, retired = registry.rollback(conn, f"rollback by {caller.name} (key {caller.key_id})")
            audit.record(conn, caller.key_id, "rollback", "model_version", row["version"],
                         {"version": retired["version"]}, {"version": row["version"]})
    except registry.RegistryError as exc:
        raise HTTPException(exc.status, exc.reason) from None
    key = _publish(request, row)
    return {"promoted": _documents([row], {}, row["path"])[0], "replaced": retired["version"], "published_key": key}


@router.post("/{version}/promote", response_model=Promotion, responses=NOT_FOUND | CONFLICT)
def promote(version: PathId, store: Store, caller: AdminKey, request: Request):
    """Serve this version from now on (its files are checked against their registered hash first).
    Promoting the promoted version again re-publishes it."""
    try:
        with store.begin() as conn:
            registry.ensure_base(conn, request.app.state.settings)
            row, replaced = registry.promote(conn, version, f"promoted by {caller.name} (key {caller.key_id})")
            if replaced is not None:
                audit.record(conn, caller.key_id, "promote", "model_version", version,
                             {"version": replaced["version"]}, {"version": version})
    except registry.RegistryError as exc:
        raise HTTPException(exc.status, exc.reason) from None
    key = _publish(request, row)
    return {"promoted": _documents([row], {}, row["path"])[0],
            "replaced": replaced["version"] if replaced else None, "published_key": key}
