"""The audit log: every write records who (key id), what, when, and the record before and after.

Written in the same transaction as the change it describes, so there is no change without its entry.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import Connection, text


def _jsonable(doc: dict | None) -> str | None:
    if doc is None:
        return None

    def default(value):
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        return str(value)

    return json.dumps(doc, default=default)


def record(conn: Connection, key_id: int | None, action: str, entity: str, entity_id, before: dict | None,
           after: dict | None) -> None:
    conn.execute(text(
        "INSERT INTO audit_log (key_id, action, entity, entity_id, before, after) "
        "VALUES (:key_id, :action, :entity, :entity_id, CAST(:before AS jsonb), CAST(:after AS jsonb))"),
        {"key_id": key_id, "action": action, "entity": entity, "entity_id": str(entity_id),
         "before": _jsonable(before), "after": _jsonable(after)})
