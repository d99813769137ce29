"""Buildings of a site. Deleting one deletes its rooms; devices in them stay registered, without a room."""

from __future__ import annotations

from fastapi import HTTPException, Request
from sqlalchemy import text

from admin import crud
from admin.deps import AdminKey, ReadKey, Store, fleet_changed
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Building, BuildingIn, BuildingPatch
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import IdFilter, LimitQ, OffsetQ, PathId

router = resource_router("buildings", "places")


def _site_must_exist(conn, site_id: str | None) -> None:
    if site_id is not None and crud.get_row(conn, "sites", "id", site_id) is None:
        raise HTTPException(422, f"no site {site_id!r}: create it first (POST /v1/sites)")


@router.get("", response_model=list[Building], responses=CSV_RESPONSE)
def list_buildings(store: Store, _: ReadKey, site_id: IdFilter = None, format: Format = "json", limit: LimitQ = 1000,
                   offset: OffsetQ = 0):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, site_id, name FROM buildings WHERE (CAST(:site AS text) IS NULL OR site_id = :site) "
            "ORDER BY id LIMIT :limit OFFSET :offset"), {"site": site_id, "limit": limit, "offset": offset})]
    return listing(rows, format, Building, "buildings")


@router.post("", response_model=Building, status_code=201, responses=CONFLICT)
def create_building(body: BuildingIn, store: Store, caller: AdminKey):
    with store.begin() as conn:
        _site_must_exist(conn, body.site_id)
        return crud.insert_row(conn, caller.key_id, "buildings", "building", body.model_dump())


@router.get("/{building_id}", response_model=Building, responses=NOT_FOUND)
def get_building(building_id: PathId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return crud.must_get(conn, "buildings", "id", building_id, "building")


@router.patch("/{building_id}", response_model=Building, responses=NOT_FOUND)
def update_building(building_id: PathId, body: BuildingPatch, store: Store, caller: AdminKey, request: Request):
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    with store.begin() as conn:
        _site_must_exist(conn, changes.get("site_id"))
        row = crud.update_row(conn, caller.key_id, "buildings", "building", "id", building_id, changes, "building")
    if "site_id" in changes:
        fleet_changed(request, "buildings")  # its devices now belong to another site's label set and rules
    return row


@router.delete("/{building_id}", status_code=204, responses=NOT_FOUND)
def delete_building(building_id: PathId, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        crud.delete_row(conn, caller.key_id, "buildings", "building", "id", building_id, "building")
    fleet_changed(request, "buildings")
