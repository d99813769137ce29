"""API keys in the database: create (the key is returned once), list, revoke, and check a presented key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, text

from admin import audit
from admin.security import SCOPES, digest, key_prefix, matches, new_key

KEY_COLUMNS = "id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at"


@dataclass(frozen=True)
class Caller:
    """The key a request came with."""

    key_id: int
    name: str
    scopes: tuple[str, ...]


class KeyRefused(Exception):
    """The presented key is not valid; `reason` says why (for the 401 body)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def create_key(conn: Connection, scope: str, name: str, expires_days: float | None = None,
               by: int | None = None) -> tuple[str, dict]:
    """(the key, its row). The key itself is stored nowhere: show it to the person now."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    if expires_days is not None and not 0 < expires_days <= 3650:
        raise ValueError("expires_days must be above 0 and at most 3650")
    key, prefix = new_key()
    expires_at = datetime.now(timezone.utc) + timedelta(days=expires_days) if expires_days else None
    row = conn.execute(text(
        f"INSERT INTO api_keys (name, key_hash, prefix, scopes, expires_at) VALUES (:name, :hash, :prefix, "
        f"ARRAY[:scope], :expires_at) RETURNING {KEY_COLUMNS}"),
        {"name": name, "hash": digest(key), "prefix": prefix, "scope": scope, "expires_at": expires_at}).one()
    after = dict(row._mapping)
    audit.record(conn, by, "create", "api_key", after["id"], None, after)
    return key, after


def list_keys(conn: Connection) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))]


def revoke_key(conn: Connection, key_id: int, by: int | None = None) -> dict | None:
    """The key's row after revoking it (already revoked keys keep their first revocation time)."""
    before = conn.execute(text(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = :id FOR UPDATE"), {"id": key_id}).first()
    if before is None:
        return None
    after = conn.execute(text(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = :id RETURNING {KEY_COLUMNS}"),
        {"id": key_id}).one()
    audit.record(conn, by, "revoke", "api_key", key_id, dict(before._mapping), dict(after._mapping))
    return dict(after._mapping)


def authenticate(conn: Connection, key: str) -> Caller:
    """The caller a key stands for; raises KeyRefused with the reason otherwise."""
    prefix = key_prefix(key)
    if prefix is None:
        raise KeyRefused("malformed key: expected iotlm_<prefix>_<secret> as made by `iotlm keys create`")
    rows = conn.execute(text(
        "SELECT id, name, key_hash, scopes, expires_at, revoked_at FROM api_keys WHERE prefix = :prefix"),
        {"prefix": prefix}).all()
    row = next((r for r in rows if matches(key, r.key_hash)), None)
    if row is None:
        raise KeyRefused("unknown key")
    if row.revoked_at is not None:
        raise KeyRefused(f"key {row.id} was revoked at {row.revoked_at.isoformat()}")
    if row.expires_at is not None and row.expires_at <= datetime.now(timezone.utc):
        raise KeyRefused(f"key {row.id} expired at {row.expires_at.isoformat()}")
    conn.execute(text("UPDATE api_keys SET last_used_at = now() WHERE id = :id"), {"id": row.id})
    return Caller(key_id=row.id, name=row.name, scopes=tuple(row.scopes))
