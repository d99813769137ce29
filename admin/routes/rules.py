"""Alert rules as data: the five built-in kinds with their parameters, for the fleet, a site, a room or a
device, each enabled or not. Checked before storing (a bad rule is refused with the reason and never
reaches a worker); the workers pick changes up without restarting."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import HTTPException, Query, Request
from pydantic import ValidationError
from sqlalchemy import text

from admin import audit, crud
from admin.deps import AdminKey, ReadKey, Store, fleet_changed
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Rule, RuleIn, RulePatch
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import LimitQ, OffsetQ, RowId
from admin.rules import RULE_KINDS, RULE_SCOPES, checked_params

router = resource_router("rules", "alert rules")
COLUMNS = "id, kind, scope, nullif(scope_id, '') AS scope_id, params, enabled, created_at, updated_at"
SCOPE_TABLES = {"site": "sites", "room": "rooms", "device": "devices"}


def _scope_must_exist(conn, scope: str, scope_id: str | None) -> str:
    if scope == "fleet":
        if scope_id is not None:
            raise HTTPException(422, "a fleet-wide rule takes no scope_id")
        return ""
    if scope_id is None:
        raise HTTPException(422, f"a {scope} rule needs scope_id: the {scope} it applies to")
    if crud.get_row(conn, SCOPE_TABLES[scope], "id", scope_id) is None:
        raise HTTPException(422, f"no {scope} {scope_id!r}")
    return scope_id


@router.get("", response_model=list[Rule], responses=CSV_RESPONSE)
def list_rules(store: Store, _: ReadKey, kind: Annotated[Literal[RULE_KINDS] | None, Query()] = None,
               scope: Annotated[Literal[RULE_SCOPES] | None, Query()] = None, format: Format = "json",
               limit: LimitQ = 1000, offset: OffsetQ = 0):
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            f"SELECT {COLUMNS} FROM alert_rules WHERE (CAST(:kind AS text) IS NULL OR kind = :kind) "
            "AND (CAST(:scope AS text) IS NULL OR scope = :scope) ORDER BY kind, scope, scope_id LIMIT :limit OFFSET :offset"),
            {"kind": kind, "scope": scope, "limit": limit, "offset": offset})]
    return listing(rows, format, Rule, "rules")


@router.post("", response_model=Rule, status_code=201, responses=CONFLICT)
def create_rule(body: RuleIn, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        scope_id = _scope_must_exist(conn, body.scope, body.scope_id)
        if conn.execute(text("SELECT 1 FROM alert_rules WHERE kind = :k AND scope = :s AND scope_id = :i"),
                        {"k": body.kind, "s": body.scope, "i": scope_id}).first():
            raise HTTPException(409, f"a {body.kind} rule for {body.scope} {scope_id or ''} exists; change it "
                                     "(PATCH /v1/rules/{id}) instead")
        row = conn.execute(text(
            "INSERT INTO alert_rules (kind, scope, scope_id, params, enabled) VALUES "
            f"(:kind, :scope, :scope_id, CAST(:params AS jsonb), :enabled) RETURNING {COLUMNS}"),
            {"kind": body.kind, "scope": body.scope, "scope_id": scope_id, "enabled": body.enabled,
             "params": json.dumps(body.params.model_dump(exclude_none=True))}).one()
        after = dict(row._mapping)
        audit.record(conn, caller.key_id, "create", "alert_rule", after["id"], None, after)
    fleet_changed(request, "alert_rules")
    return after


@router.get("/{rule_id}", response_model=Rule, responses=NOT_FOUND)
def get_rule(rule_id: RowId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return crud.must_get(conn, "alert_rules", "id", rule_id, "rule", COLUMNS)


@router.patch("/{rule_id}", response_model=Rule, responses=NOT_FOUND)
def update_rule(rule_id: RowId, body: RulePatch, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        before = crud.must_get(conn, "alert_rules", "id", rule_id, "rule", COLUMNS, lock=True)
        changes: dict = {}
        if body.params is not None:
            try:
                params = checked_params(before["kind"], body.params)
            except ValidationError as exc:
                raise HTTPException(422, [{"loc": ["body", "params", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                                          for e in exc.errors(include_url=False, include_input=False)]) from None
            changes["params"] = json.dumps(params)
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        if not changes:
            return before
        sets = ", ".join(f"{n} = CAST(:{n} AS jsonb)" if n == "params" else f"{n} = :{n}" for n in changes)
        after = dict(conn.execute(text(f"UPDATE alert_rules SET {sets}, updated_at = now() WHERE id = :id "
                                       f"RETURNING {COLUMNS}"), {"id": rule_id, **changes}).one()._mapping)
        audit.record(conn, caller.key_id, "update", "alert_rule", rule_id, before, after)
    fleet_changed(request, "alert_rules")
    return after


@router.delete("/{rule_id}", status_code=204, responses=NOT_FOUND)
def delete_rule(rule_id: RowId, store: Store, caller: AdminKey, request: Request):
    with store.begin() as conn:
        crud.delete_row(conn, caller.key_id, "alert_rules", "alert_rule", "id", rule_id, "rule")
    fleet_changed(request, "alert_rules")
