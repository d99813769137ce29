"""Row-level writes shared by the resource routers, each recorded in the audit log in the same transaction.

Table and column names come from the routers (fixed strings), values always travel as bound parameters.
"""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import Connection, text

from admin import audit


def get_row(conn: Connection, table: str, key: str, value, columns: str = "*", lock: bool = False) -> dict | None:
    row = conn.execute(text(f"SELECT {columns} FROM {table} WHERE {key} = :v" + (" FOR UPDATE" if lock else "")),
                       {"v": value}).first()
    return dict(row._mapping) if row is not None else None


def must_get(conn: Connection, table: str, key: str, value, what: str, columns: str = "*", lock: bool = False) -> dict:
    row = get_row(conn, table, key, value, columns, lock)
    if row is None:
        raise HTTPException(404, f"no {what} {value!r}")
    return row


def insert_row(conn: Connection, key_id: int | None, table: str, entity: str, values: dict, columns: str = "*") -> dict:
    names = list(values)
    row = conn.execute(text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) "
                            f"RETURNING {columns}"), values).one()
    after = dict(row._mapping)
    audit.record(conn, key_id, "create", entity, after.get("id", after.get("site_id")), None, after)
    return after


def update_row(conn: Connection, key_id: int | None, table: str, entity: str, key: str, value, changes: dict,
               what: str, columns: str = "*", action: str = "update") -> dict:
    before = must_get(conn, table, key, value, what, columns, lock=True)
    if not changes:
        return before
    sets = ", ".join(f"{name} = :new_{name}" for name in changes)
    row = conn.execute(text(f"UPDATE {table} SET {sets} WHERE {key} = :v RETURNING {columns}"),
                       {"v": value, **{f"new_{n}": v for n, v in changes.items()}}).one()
    after = dict(row._mapping)
    audit.record(conn, key_id, action, entity, value, before, after)
    return after


def delete_row(conn: Connection, key_id: int | None, table: str, entity: str, key: str, value, what: str) -> dict:
    before = must_get(conn, table, key, value, what, lock=True)
    conn.execute(text(f"DELETE FROM {table} WHERE {key} = :v"), {"v": value})
    audit.record(conn, key_id, "delete", entity, value, before, None)
    return before
