"""Label sets: per site, the activity names the workers classify its devices against (hot-reloaded).
A site without one uses the default, `settings.workers.labels`."""

from __future__ import annotations

from fastapi import HTTPException, Request
from sqlalchemy import text

from admin import audit, crud
from admin.deps import AdminKey, ReadKey, Store, fleet_changed
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import LabelSet, LabelSetIn
from admin.routes import NOT_FOUND, resource_router
from admin.routes.params import PathId

router = resource_router("label-sets", "labels")


@router.get("", response_model=list[LabelSet], responses=CSV_RESPONSE)
def list_label_sets(store: Store, _: ReadKey, format: Format = "json"):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT site_id, labels, updated_at FROM label_sets ORDER BY site_id"))]
    return listing(rows, format, LabelSet, "label_sets")


@router.get("/{site_id}", response_model=LabelSet, responses=NOT_FOUND)
def get_label_set(site_id: PathId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return crud.must_get(conn, "label_sets", "site_id", site_id, "label set for site")


@router.put("/{site_id}", response_model=LabelSet, responses=NOT_FOUND)
def put_label_set(site_id: PathId, body: LabelSetIn, store: Store, caller: AdminKey, request: Request):
    """Set the site's label set (replacing any earlier one). Names must be distinct."""
    seen = set()
    repeated = sorted({x for x in body.labels if x in seen or seen.add(x)})
    if repeated:
        raise HTTPException(422, f"each activity name may appear once; repeated: {', '.join(repeated)}")
    with store.begin() as conn:
        crud.must_get(conn, "sites", "id", site_id, "site")
        before = crud.get_row(conn, "label_sets", "site_id", site_id, lock=True)
        after = dict(conn.execute(text(
            "INSERT INTO label_sets (site_id, labels) VALUES (:site, :labels) ON CONFLICT (site_id) "
            "DO UPDATE SET labels = excluded.labels, updated_at = now() RETURNING site_id, labels, updated_at"),
            {"site": site_id, "labels": body.labels}).one()._mapping)
        audit.record(conn, caller.key_id, "update" if before else "create", "label_set", site_id, before, after)
    fleet_changed(request, "label_sets")
    return after


@router.delete("/{site_id}", status_code=204, responses=NOT_FOUND)
def delete_label_set(site_id: PathId, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        crud.delete_row(conn, caller.key_id, "label_sets", "label_set", "site_id", site_id, "label set for site")
    fleet_changed(request, "label_sets")
