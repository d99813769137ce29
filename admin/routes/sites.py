"""Sites: the top of the place hierarchy (site -> buildings -> rooms). Deleting one deletes its buildings and
rooms; devices in those rooms stay registered, without a room."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import text

from admin import crud
from admin.deps import AdminKey, ReadKey, Store, fleet_changed
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Site, SiteIn, SitePatch
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import LimitQ, OffsetQ, PathId

router = resource_router("sites", "places")


@router.get("", response_model=list[Site], responses=CSV_RESPONSE)
def list_sites(store: Store, _: ReadKey, format: Format = "json", limit: LimitQ = 1000, offset: OffsetQ = 0):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            text("SELECT id, name FROM sites ORDER BY id LIMIT :limit OFFSET :offset"), {"limit": limit, "offset": offset})]
    return listing(rows, format, Site, "sites")


@router.post("", response_model=Site, status_code=201, responses=CONFLICT)
def create_site(body: SiteIn, store: Store, caller: AdminKey):
    with store.begin() as conn:
        return crud.insert_row(conn, caller.key_id, "sites", "site", body.model_dump())


@router.get("/{site_id}", response_model=Site, responses=NOT_FOUND)
def get_site(site_id: PathId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return crud.must_get(conn, "sites", "id", site_id, "site")


@router.patch("/{site_id}", response_model=Site, responses=NOT_FOUND)
def update_site(site_id: PathId, body: SitePatch, store: Store, caller: AdminKey):
    with store.begin() as conn:
        return crud.update_row(conn, caller.key_id, "sites", "site", "id", site_id, body.model_dump(exclude_unset=True),
                               "site")


@router.delete("/{site_id}", status_code=204, responses=NOT_FOUND)
def delete_site(site_id: PathId, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        crud.delete_row(conn, caller.key_id, "sites", "site", "id", site_id, "site")
    fleet_changed(request, "sites")
