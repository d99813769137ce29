"""Rooms of a building. Deleting one leaves its devices registered, without a room."""

from __future__ import annotations

from fastapi import HTTPException, Request
from sqlalchemy import text

from admin import crud
from admin.deps import AdminKey, ReadKey, Store, fleet_changed
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Room, RoomIn, RoomPatch
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import IdFilter, LimitQ, OffsetQ, PathId

router = resource_router("rooms", "places")


def _building_must_exist(conn, building_id: str | None) -> None:
    if building_id is not None and crud.get_row(conn, "buildings", "id", building_id) is None:
        raise HTTPException(422, f"no building {building_id!r}: create it first (POST /v1/buildings)")


@router.get("", response_model=list[Room], responses=CSV_RESPONSE)
def list_rooms(store: Store, _: ReadKey, building_id: IdFilter = None, format: Format = "json", limit: LimitQ = 1000,
               offset: OffsetQ = 0):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, building_id, name, floor FROM rooms WHERE (CAST(:b AS text) IS NULL OR building_id = :b) "
            "ORDER BY id LIMIT :limit OFFSET :offset"), {"b": building_id, "limit": limit, "offset": offset})]
    return listing(rows, format, Room, "rooms")


@router.post("", response_model=Room, status_code=201, responses=CONFLICT)
def create_room(body: RoomIn, store: Store, caller: AdminKey):
    with store.begin() as conn:
        _building_must_exist(conn, body.building_id)
        return crud.insert_row(conn, caller.key_id, "rooms", "room", body.model_dump())


@router.get("/{room_id}", response_model=Room, responses=NOT_FOUND)
def get_room(room_id: PathId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return crud.must_get(conn, "rooms", "id", room_id, "room")


@router.patch("/{room_id}", response_model=Room, responses=NOT_FOUND)
def update_room(room_id: PathId, body: RoomPatch, store: Store, caller: AdminKey, request: Request):
    changes = body.model_dump(exclude_unset=True)
    if changes.get("building_id", "") is None or changes.get("name", "") is None:
        raise HTTPException(422, "building_id and name cannot be null; leave them out to keep them")
    with store.begin() as conn:
        _building_must_exist(conn, changes.get("building_id"))
        row = crud.update_row(conn, caller.key_id, "rooms", "room", "id", room_id, changes, "room")
    if "building_id" in changes:
        fleet_changed(request, "rooms")
    return row


@router.delete("/{room_id}", status_code=204, responses=NOT_FOUND)
def delete_room(room_id: PathId, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        crud.delete_row(conn, caller.key_id, "rooms", "room", "id", room_id, "room")
    fleet_changed(request, "rooms")
