"""The device registry: register, list and filter, update, deactivate, issue ingest credentials.

A device is never deleted (its history stays attributable): DELETE deactivates it, and the gate and
the workers refuse its frames (`unknown_device`) once the change notice reaches them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import HTTPException, Query, Request
from sqlalchemy import text

from admin import audit, crud
from admin.deps import AdminKey, ReadKey, Store, fleet_changed
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Device, DeviceCredentials, DeviceIn, DevicePatch, Kind, Placement
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import IdFilter, LimitQ, OffsetQ, PathId
from admin.security import device_digest, new_device_secret

router = resource_router("devices", "devices")
COLUMNS = ("id, kind, placement, room_id, owner, deactivated_at IS NULL AS active, registered_at, deactivated_at, "
           "credentials_issued_at")


def _room_must_exist(conn, room_id: str | None) -> None:
    if room_id is not None and crud.get_row(conn, "rooms", "id", room_id) is None:
        raise HTTPException(422, f"no room {room_id!r}: create it first (POST /v1/rooms)")


@router.get("", response_model=list[Device], responses=CSV_RESPONSE)
def list_devices(store: Store, _: ReadKey, room_id: IdFilter = None, site_id: IdFilter = None,
                 kind: Annotated[Kind | None, Query()] = None, placement: Annotated[Placement | None, Query()] = None,
                 active: bool | None = None, format: Format = "json", limit: LimitQ = 1000, offset: OffsetQ = 0):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            f"SELECT {', '.join('d.' + c.strip() for c in COLUMNS.split(','))} FROM devices d "
            "LEFT JOIN rooms r ON r.id = d.room_id LEFT JOIN buildings b ON b.id = r.building_id "
            "WHERE (CAST(:room AS text) IS NULL OR d.room_id = :room) "
            "AND (CAST(:site AS text) IS NULL OR b.site_id = :site) "
            "AND (CAST(:kind AS text) IS NULL OR d.kind = :kind) "
            "AND (CAST(:placement AS text) IS NULL OR d.placement = :placement) "
            "AND (CAST(:active AS boolean) IS NULL OR (d.deactivated_at IS NULL) = :active) "
            "ORDER BY d.id LIMIT :limit OFFSET :offset"),
            {"room": room_id, "site": site_id, "kind": kind, "placement": placement, "active": active,
             "limit": limit, "offset": offset})]
    return listing(rows, format, Device, "devices")


@router.post("", response_model=Device, status_code=201, responses=CONFLICT)
def register_device(body: DeviceIn, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        _room_must_exist(conn, body.room_id)
        row = crud.insert_row(conn, caller.key_id, "devices", "device", body.model_dump(), COLUMNS)
    fleet_changed(request, "devices")
    return row


@router.get("/{device_id}", response_model=Device, responses=NOT_FOUND)
def get_device(device_id: PathId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return crud.must_get(conn, "devices", "id", device_id, "device", COLUMNS)


@router.patch("/{device_id}", response_model=Device, responses=NOT_FOUND)
def update_device(device_id: PathId, body: DevicePatch, store: Store, caller: AdminKey, request: Request):
    changes = body.model_dump(exclude_unset=True)
    active = changes.pop("active", None)
    for field in ("kind", "placement"):
        if field in changes and changes[field] is None:
            raise HTTPException(422, f"{field} cannot be null; leave it out to keep it")
    with store.begin() as conn:
        _room_must_exist(conn, changes.get("room_id"))
        before = crud.must_get(conn, "devices", "id", device_id, "device", COLUMNS, lock=True)
        if active is not None and active != before["active"]:
            changes["deactivated_at"] = None if active else datetime.now(timezone.utc)
        row = crud.update_row(conn, caller.key_id, "devices", "device", "id", device_id, changes, "device", COLUMNS)
    fleet_changed(request, "devices")
    return row


@router.delete("/{device_id}", response_model=Device, responses=NOT_FOUND)
def deactivate_device(device_id: PathId, store: Store, caller: AdminKey, request: Request):
    """Deactivate (never delete: its history stays). Already deactivated: answered as it is."""
    with store.begin() as conn:
        before = crud.must_get(conn, "devices", "id", device_id, "device", COLUMNS, lock=True)
        changes = {} if not before["active"] else {"deactivated_at": datetime.now(timezone.utc)}
        row = crud.update_row(conn, caller.key_id, "devices", "device", "id", device_id, changes, "device", COLUMNS,
                              action="deactivate")
    fleet_changed(request, "devices")
    return row


@router.post("/{device_id}/credentials", response_model=DeviceCredentials, status_code=201,
             responses=NOT_FOUND | CONFLICT)
def issue_credentials(device_id: PathId, store: Store, caller: AdminKey, request: Request):
    """A new ingest secret for the device, shown once; only its hash is stored. Replaces any earlier one."""
    secret = new_device_secret()
    with store.begin() as conn:
        before = crud.must_get(conn, "devices", "id", device_id, "device", COLUMNS, lock=True)
        if not before["active"]:
            raise HTTPException(409, f"device {device_id!r} is deactivated; reactivate it before issuing credentials")
        after = conn.execute(text(
            f"UPDATE devices SET credentials_hash = :hash, credentials_issued_at = now() WHERE id = :id "
            f"RETURNING {COLUMNS}"), {"hash": device_digest(secret), "id": device_id}).one()
        after = dict(after._mapping)
        audit.record(conn, caller.key_id, "issue_credentials", "device", device_id, before, after)
    fleet_changed(request, "devices")  # the gate and the MQTT broker learn the new secret now
    return DeviceCredentials(device_id=device_id, secret=secret, issued_at=after["credentials_issued_at"])
