"""Alarms and their lifecycle: list and filter, look, assign and comment, acknowledge, clear.

Handling alarms needs the `label` scope: the people who label what happened are the ones who
answer alarms; configuring the fleet needs `admin`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import HTTPException, Query
from sqlalchemy import text

from admin import alarms, audit
from admin.deps import LabelKey, ReadKey, Store
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Alarm, AlarmAction, AlarmPatch, Time
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import BigRowId, IdFilter, LimitQ, OffsetQ

router = resource_router("alarms", "alarms")


@router.get("", response_model=list[Alarm], responses=CSV_RESPONSE)
def list_alarms(store: Store, _: ReadKey, status: Annotated[Literal["open", "active", "acknowledged", "cleared"] | None,
                Query(description="open = active or acknowledged")] = None,
                severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
                rule: Annotated[Literal["fall", "sensor_fault", "no_movement", "room_hours", "device_silent"] | None,
                                Query()] = None,
                device_id: IdFilter = None, room_id: IdFilter = None, since: Annotated[Time | None, Query()] = None,
                format: Format = "json", limit: LimitQ = 1000, offset: OffsetQ = 0):
    """Newest last seen first."""
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            f"SELECT {alarms.ALARM_COLUMNS} FROM alarms WHERE "
            "(CAST(:status AS text) IS NULL OR status = :status OR (:status = 'open' AND status <> 'cleared')) "
            "AND (CAST(:severity AS text) IS NULL OR severity = :severity) "
            "AND (CAST(:rule AS text) IS NULL OR rule = :rule) "
            "AND (CAST(:device AS text) IS NULL OR device_id = :device) "
            "AND (CAST(:room AS text) IS NULL OR room_id = :room) "
            "AND (CAST(:since AS timestamptz) IS NULL OR last_seen_at >= :since) "
            "ORDER BY last_seen_at DESC, id DESC LIMIT :limit OFFSET :offset"),
            {"status": status, "severity": severity, "rule": rule, "device": device_id, "room": room_id,
             "since": since, "limit": limit, "offset": offset})]
    return listing(rows, format, Alarm, "alarms")


def _found(alarm: dict | None, alarm_id: int) -> dict:
    if alarm is None:
        raise HTTPException(404, f"no alarm {alarm_id}")
    return alarm


@router.get("/{alarm_id}", response_model=Alarm, responses=NOT_FOUND)
def get_alarm(alarm_id: BigRowId, store: Store, _: ReadKey):
    with store.connect() as conn:
        return _found(alarms.get_alarm(conn, alarm_id), alarm_id)


@router.patch("/{alarm_id}", response_model=Alarm, responses=NOT_FOUND)
def update_alarm(alarm_id: BigRowId, body: AlarmPatch, store: Store, caller: LabelKey):
    """Assign it or comment on it, in any state."""
    changes = body.model_dump(exclude_unset=True)
    with store.begin() as conn:
        before = _found(alarms.get_alarm(conn, alarm_id, lock=True), alarm_id)
        if not changes:
            return before
        sets = ", ".join(f"{n} = :{n}" for n in changes)
        after = dict(conn.execute(text(f"UPDATE alarms SET {sets}, updated_at = now() WHERE id = :id "
                                       f"RETURNING {alarms.ALARM_COLUMNS}"), {"id": alarm_id, **changes}).one()._mapping)
        audit.record(conn, caller.key_id, "update", "alarm", alarm_id, before, after)
    return after


@router.post("/{alarm_id}/ack", response_model=Alarm, responses=NOT_FOUND | CONFLICT)
def acknowledge_alarm(alarm_id: BigRowId, store: Store, caller: LabelKey, body: AlarmAction | None = None):
    """active -> acknowledged (someone is on it). 409 if it is not active."""
    body = body or AlarmAction()
    with store.begin() as conn:
        return _found(alarms.acknowledge(conn, alarm_id, caller.key_id, body.comment, body.assignee), alarm_id)


@router.post("/{alarm_id}/clear", response_model=Alarm, responses=NOT_FOUND | CONFLICT)
def clear_alarm(alarm_id: BigRowId, store: Store, caller: LabelKey, body: AlarmAction | None = None):
    """active or acknowledged -> cleared (dealt with); the next alert of its rule opens a new alarm. 409 if cleared."""
    body = body or AlarmAction()
    with store.begin() as conn:
        return _found(alarms.clear(conn, alarm_id, caller.key_id, body.comment, body.assignee), alarm_id)
