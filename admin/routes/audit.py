"""The audit log: every write through the API (and the alarm keeper's), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlalchemy import text

from admin.deps import AdminKey, Store
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import AuditEntry, Name, Time
from admin.routes import resource_router
from admin.routes.params import LimitQ, OffsetQ

router = resource_router("audit", "audit")
Entity = Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$", description="device, site, alarm, label, ...")]


@router.get("", response_model=list[AuditEntry], responses=CSV_RESPONSE)
def list_audit(store: Store, _: AdminKey, entity: Entity = None, entity_id: Annotated[Name | None, Query()] = None,
               key_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
               since: Annotated[Time | None, Query()] = None, until: Annotated[Time | None, Query()] = None,
               format: Format = "json", limit: LimitQ = 1000, offset: OffsetQ = 0):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            "SELECT id, at, key_id, action, entity, entity_id, before, after FROM audit_log "
            "WHERE (CAST(:entity AS text) IS NULL OR entity = :entity) "
            "AND (CAST(:entity_id AS text) IS NULL OR entity_id = :entity_id) "
            "AND (CAST(:key_id AS integer) IS NULL OR key_id = :key_id) "
            "AND (CAST(:since AS timestamptz) IS NULL OR at >= :since) "
            "AND (CAST(:until AS timestamptz) IS NULL OR at < :until) "
            "ORDER BY id DESC LIMIT :limit OFFSET :offset"),
            {"entity": entity, "entity_id": entity_id, "key_id": key_id, "since": since, "until": until,
             "limit": limit, "offset": offset})]
    return listing(rows, format, AuditEntry, "audit")
