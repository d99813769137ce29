"""API keys, for admins: create (the key is shown once), list, revoke. `iotlm keys` does the same
directly on the database, which is how the first admin key is made."""

from __future__ import annotations

from fastapi import HTTPException

from admin import keys
from admin.deps import AdminKey, Store
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Key, KeyIn, NewKey
from admin.routes import NOT_FOUND, resource_router
from admin.routes.params import RowId

router = resource_router("keys", "keys")


@router.get("", response_model=list[Key], responses=CSV_RESPONSE)
def list_keys(store: Store, _: AdminKey, format: Format = "json"):
    with store.connect() as conn:
        return listing(keys.list_keys(conn), format, Key, "keys")


@router.post("", response_model=NewKey, status_code=201)
def create_key(body: KeyIn, store: Store, caller: AdminKey):
    with store.begin() as conn:
        key, row = keys.create_key(conn, body.scope, body.name, body.expires_days, by=caller.key_id)
    return NewKey(key=key, **row)


@router.delete("/{key_id}", response_model=Key, responses=NOT_FOUND)
def revoke_key(key_id: RowId, store: Store, caller: AdminKey):
    with store.begin() as conn:
        row = keys.revoke_key(conn, key_id, by=caller.key_id)
    if row is None:
        raise HTTPException(404, f"no key {key_id}")
    return row
