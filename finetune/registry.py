"""The model registry (`model_versions`): every version with its parent, training data, label set,
held-out metrics, files (sha256 each, and a content hash over them) and status.

Status: `candidate` (registered, not serving), `promoted` (serving; at most one per name, a partial
unique index makes sure), `retired` (served once, replaced or rolled back). Promoting records the
version it replaces in `previous_id`; rollback retires the promoted version and promotes its
`previous_id` again, so repeated rollbacks walk back through the promotion history.

The registry is the truth; the workers follow the Redis key `settings.workers.model_key`, which
`publish` sets to the promoted version's directory after the change is committed (only the API's
Redis user may write it; the job runner runs as that principal). Publishing is idempotent, so a
promotion whose publish failed is repaired by promoting the same version again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import Connection, text

MODEL_NAME = "motion"
COLUMNS = ("id, name, version, path, status, parent_id, job_id, labels, training, metrics, files, content_hash, "
           "reason, previous_id, created_at, promoted_at, retired_at")
CHECKPOINT_FILES = ("config.json", "model.safetensors")
OPTIONAL_CHECKPOINT_FILES = ("features.safetensors",)  # a fused feature SVM (models/fusion.py), hashed when present


class RegistryError(Exception):
    """A registry change that cannot be made; `status` is the HTTP status the API answers with."""

    def __init__(self, reason: str, status: int = 409):
        super().__init__(reason)
        self.reason, self.status = reason, status


def file_hashes(directory: Path) -> tuple[dict[str, str], str]:
    """({file: sha256}, sha256 over 'name:hash' lines) of a checkpoint directory's files."""
    files = {}
    present = [name for name in OPTIONAL_CHECKPOINT_FILES if (Path(directory) / name).exists()]
    for name in CHECKPOINT_FILES + tuple(present):
        digest = hashlib.sha256()
        with (Path(directory) / name).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        files[name] = digest.hexdigest()
    content = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(files.items())).encode()).hexdigest()
    return files, content


def _lock(conn: Connection) -> None:
    # registry changes of one name are serialized: two promotions or a promotion and a rollback never interleave
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('iotlm-model-registry'))"))


def _row(conn: Connection, where: str, **params) -> dict | None:
    row = conn.execute(text(f"SELECT {COLUMNS} FROM model_versions WHERE {where}"), params).first()
    return dict(row._mapping) if row is not None else None


def list_versions(conn: Connection, limit: int = 1000) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(
        f"SELECT {COLUMNS} FROM model_versions ORDER BY id DESC LIMIT :limit"), {"limit": limit})]


def get_version(conn: Connection, version: str) -> dict | None:
    return _row(conn, "name = :name AND version = :version", name=MODEL_NAME, version=version)


def get_by_id(conn: Connection, version_id: int) -> dict | None:
    return _row(conn, "id = :id", id=version_id)


def promoted(conn: Connection) -> dict | None:
    return _row(conn, "name = :name AND status = 'promoted'", name=MODEL_NAME)


def ensure_base(conn: Connection, settings) -> dict:
    """The promoted version; on first use the settings' default checkpoint is registered and promoted
    (what the workers serve while the promotion key is unset)."""
    current = promoted(conn)
    if current is not None:
        return current
    from models.inference import resolve_checkpoint

    _lock(conn)
    current = promoted(conn)
    if current is not None:
        return current
    directory = resolve_checkpoint(settings.models.default_model, settings.models.checkpoint_dir).resolve()
    config = json.loads((directory / "config.json").read_text())
    files, content = file_hashes(directory)
    existing = get_version(conn, config["version"])
    if existing is not None:  # registered once, retired since: serve it again
        conn.execute(text("UPDATE model_versions SET status = 'promoted', promoted_at = now(), retired_at = NULL "
                          "WHERE id = :id"), {"id": existing["id"]})
        return get_by_id(conn, existing["id"])
    labels = list(config.get("head_labels") or []) or list(config.get("default_labels") or [])
    return register(conn, version=config["version"], path=directory, files=files, content_hash=content,
                    labels=labels, training={"kind": "shipped checkpoint", "checkpoint": settings.models.default_model,
                                             "data": (config.get("training") or {}).get("data")},
                    metrics=config.get("metrics") or {}, status="promoted",
                    reason="the settings' default checkpoint, registered on first use")


def register(conn: Connection, *, version: str, path: Path, files: dict, content_hash: str, labels: list[str],
             training: dict, metrics: dict, reason: str | None = None, parent_id: int | None = None,
             job_id: int | None = None, status: str = "candidate") -> dict:
    """Insert a version whose files are already written and hashed (call inside the transaction that
    also records the job's result, so a version is registered whole or not at all)."""
    row = conn.execute(text(
        "INSERT INTO model_versions (name, version, path, status, parent_id, job_id, labels, training, metrics, "
        "files, content_hash, reason, promoted_at) VALUES (:name, :version, :path, :status, :parent_id, :job_id, "
        ":labels, CAST(:training AS jsonb), CAST(:metrics AS jsonb), CAST(:files AS jsonb), :content_hash, :reason, "
        f"CASE WHEN CAST(:promoted AS boolean) THEN now() END) RETURNING {COLUMNS}"),
        {"name": MODEL_NAME, "version": version, "path": str(path), "status": status, "promoted": status == "promoted", "parent_id": parent_id,
         "job_id": job_id, "labels": list(labels), "training": json.dumps(training, default=str),
         "metrics": json.dumps(metrics, default=str), "files": json.dumps(files), "content_hash": content_hash,
         "reason": reason}).one()
    return dict(row._mapping)


def _check_files(row: dict) -> None:
    """A version is only served when its files are there and unchanged since registration."""
    try:
        files, content = file_hashes(Path(row["path"]))
    except OSError as exc:
        raise RegistryError(f"version {row['version']}: its files cannot be read ({exc})") from None
    if row["content_hash"] and content != row["content_hash"]:
        raise RegistryError(f"version {row['version']}: files changed since registration (content hash "
                            f"{content[:12]} != {row['content_hash'][:12]}); refusing to serve them")


def promote(conn: Connection, version: str, reason: str) -> tuple[dict, dict | None]:
    """(the promoted row, the row it replaced or None). Promoting the promoted version again is a no-op
    here (publish still re-sets the key)."""
    _lock(conn)
    target = get_version(conn, version)
    if target is None:
        raise RegistryError(f"no model version {version!r}", 404)
    current = promoted(conn)
    if current is not None and current["id"] == target["id"]:
        return target, None
    _check_files(target)
    if current is not None:
        conn.execute(text("UPDATE model_versions SET status = 'retired', retired_at = now() WHERE id = :id"),
                     {"id": current["id"]})
    conn.execute(text(
        "UPDATE model_versions SET status = 'promoted', promoted_at = now(), retired_at = NULL, reason = :reason, "
        "previous_id = :previous WHERE id = :id"),
        {"id": target["id"], "previous": current["id"] if current else None, "reason": reason})
    return get_by_id(conn, target["id"]), current


def rollback(conn: Connection, reason: str) -> tuple[dict, dict]:
    """(the version serving again, the version rolled back): the promoted version is retired and the one
    it replaced is promoted again (its own `previous_id` kept, so a second rollback goes further back)."""
    _lock(conn)
    current = promoted(conn)
    if current is None:
        raise RegistryError("no promoted version to roll back")
    if current["previous_id"] is None:
        raise RegistryError(f"version {current['version']} replaced no earlier version: nothing to roll back to")
    previous = get_by_id(conn, current["previous_id"])
    _check_files(previous)
    conn.execute(text("UPDATE model_versions SET status = 'retired', retired_at = now() WHERE id = :id"),
                 {"id": current["id"]})
    conn.execute(text("UPDATE model_versions SET status = 'promoted', promoted_at = now(), retired_at = NULL, "
                      "reason = :reason WHERE id = :id"), {"id": previous["id"], "reason": reason})
    return get_by_id(conn, previous["id"]), current


def publish(redis_client, settings, row: dict) -> None:
    """Point the workers' hot-reload key at the version's files (they swap it in between two batches)."""
    redis_client.set(settings.workers.model_key, str(row["path"]))


def live_key(redis_client, settings) -> str | None:
    value = redis_client.get(settings.workers.model_key)
    return value.decode() if isinstance(value, bytes) else value
