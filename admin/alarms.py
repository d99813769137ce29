"""Alarms: what an operator handles, made from the workers' alerts.

Lifecycle: active (unacknowledged) -> acknowledged -> cleared; clearing an active alarm directly is
allowed too. There is at most one open (not cleared) alarm per subject (device, or room for an
alert without a device) and rule, guaranteed by a partial unique index; an alert while one is open
updates it (occurrences, last seen, highest severity, latest message) instead of opening another.
An alert already counted (the same `dedup_key`, kept in the alarm's `dedup_keys`: a re-delivery, a worker
re-reading after a crash) changes nothing, even once its alarm is cleared.

`AlarmKeeper` reads the alerts from the Redis alert stream with its own consumer group, so each is
handled once by the keepers together and none is lost while they are down (pending entries are
read again).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone

from sqlalchemy import Connection, text

from admin import audit

log = logging.getLogger(__name__)
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
ALARM_COLUMNS = ("id, subject, rule, device_id, room_id, severity, status, message, details, occurrences, "
                 "first_seen_at, last_seen_at, assignee, comment, acknowledged_at, acknowledged_by, cleared_at, "
                 "cleared_by")
KEEPER_GROUP = "iotlm-alarms"


class AlarmTransitionError(Exception):
    """The alarm is not in a state that allows the action (answered with 409)."""


def _row(conn: Connection, sql: str, **params) -> dict | None:
    row = conn.execute(text(sql), params).first()
    return dict(row._mapping) if row is not None else None


def subject_of(alert: dict) -> str | None:
    if alert.get("device_id"):
        return f"device:{alert['device_id']}"
    if alert.get("room"):
        return f"room:{alert['room']}"
    return None


def raise_alarm(conn: Connection, alert: dict) -> tuple[str, dict | None]:
    """Open or update the alarm for one alert (a worker's `Alert.as_dict()`). Returns (what happened, alarm):
    'opened', 'updated', 'already_counted' or 'ignored' (an alert without a subject)."""
    subject, rule, key = subject_of(alert), alert["rule"], alert["dedup_key"]
    if subject is None:
        return "ignored", None
    at = datetime.fromtimestamp(float(alert["at"]), timezone.utc)
    severity = alert.get("severity") if alert.get("severity") in SEVERITY_RANK else "warning"
    details = {k: v for k, v in (alert.get("details") or {}).items()}
    counted = _row(conn, f"SELECT {ALARM_COLUMNS} FROM alarms WHERE subject = :subject AND rule = :rule "
                         "AND :key = ANY(dedup_keys) ORDER BY id DESC LIMIT 1",
                   subject=subject, rule=rule, key=key)
    if counted is not None:
        return "already_counted", counted
    for _ in range(2):  # a second keeper may open the same alarm between our look and our insert
        current = _row(conn, f"SELECT {ALARM_COLUMNS} FROM alarms WHERE subject = :subject AND rule = :rule "
                             "AND status <> 'cleared' FOR UPDATE", subject=subject, rule=rule)
        if current is not None:
            if SEVERITY_RANK[severity] < SEVERITY_RANK[current["severity"]]:
                severity = current["severity"]
            after = _row(conn, "UPDATE alarms SET occurrences = occurrences + 1, "
                               "dedup_keys = array_append(dedup_keys, CAST(:key AS text)), "
                               "last_seen_at = greatest(last_seen_at, :at), severity = :severity, message = :message, "
                               "details = CAST(:details AS jsonb), updated_at = now() "
                               f"WHERE id = :id RETURNING {ALARM_COLUMNS}",
                         key=key, at=at, severity=severity, message=alert.get("message", ""),
                         details=json.dumps(details, default=str), id=current["id"])
            audit.record(conn, None, "update", "alarm", after["id"], current, after)
            return "updated", after
        opened = _row(conn, "INSERT INTO alarms (subject, rule, device_id, room_id, severity, message, details, "
                            "dedup_keys, first_seen_at, last_seen_at) VALUES (:subject, :rule, "
                            ":device_id, :room_id, :severity, :message, CAST(:details AS jsonb), "
                            "ARRAY[CAST(:key AS text)], :at, :at) "
                            "ON CONFLICT (subject, rule) WHERE status <> 'cleared' DO NOTHING "
                            f"RETURNING {ALARM_COLUMNS}",
                      subject=subject, rule=rule, device_id=alert.get("device_id"), room_id=alert.get("room"),
                      severity=severity, message=alert.get("message", ""), details=json.dumps(details, default=str),
                      key=key, at=at)
        if opened is not None:
            audit.record(conn, None, "open", "alarm", opened["id"], None, opened)
            return "opened", opened
    raise RuntimeError(f"could not open or update the alarm of {subject} {rule}")


def get_alarm(conn: Connection, alarm_id: int, lock: bool = False) -> dict | None:
    return _row(conn, f"SELECT {ALARM_COLUMNS} FROM alarms WHERE id = :id" + (" FOR UPDATE" if lock else ""),
                id=alarm_id)


def acknowledge(conn: Connection, alarm_id: int, key_id: int | None, comment: str | None = None,
                assignee: str | None = None) -> dict | None:
    before = get_alarm(conn, alarm_id, lock=True)
    if before is None:
        return None
    if before["status"] != "active":
        when = before["acknowledged_at"] if before["status"] == "acknowledged" else before["cleared_at"]
        raise AlarmTransitionError(f"alarm {alarm_id} is already {before['status']} (at {when.isoformat()}); "
                                   "only an active alarm can be acknowledged")
    after = _row(conn, "UPDATE alarms SET status = 'acknowledged', acknowledged_at = now(), acknowledged_by = :by, "
                       "comment = coalesce(:comment, comment), assignee = coalesce(:assignee, assignee), "
                       f"updated_at = now() WHERE id = :id RETURNING {ALARM_COLUMNS}",
                 by=key_id, comment=comment, assignee=assignee, id=alarm_id)
    audit.record(conn, key_id, "acknowledge", "alarm", alarm_id, before, after)
    return after


def clear(conn: Connection, alarm_id: int, key_id: int | None, comment: str | None = None,
          assignee: str | None = None) -> dict | None:
    before = get_alarm(conn, alarm_id, lock=True)
    if before is None:
        return None
    if before["status"] == "cleared":
        raise AlarmTransitionError(f"alarm {alarm_id} was already cleared at {before['cleared_at'].isoformat()}")
    after = _row(conn, "UPDATE alarms SET status = 'cleared', cleared_at = now(), cleared_by = :by, "
                       "comment = coalesce(:comment, comment), assignee = coalesce(:assignee, assignee), "
                       f"updated_at = now() WHERE id = :id RETURNING {ALARM_COLUMNS}",
                 by=key_id, comment=comment, assignee=assignee, id=alarm_id)
    audit.record(conn, key_id, "clear", "alarm", alarm_id, before, after)
    return after


class AlarmKeeper:
    """Follows the Redis alert stream and keeps the alarms table in step with it."""

    def __init__(self, settings, store, stream=None, consumer: str = "keeper-0"):
        from storage.live_state import AlertStream

        self.store = store  # admin.deps.DataStore
        self.stream = stream or AlertStream.from_settings(settings, "api")
        self.consumer = consumer
        self.handled: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def handle_pending(self, block_ms: int | None = 500) -> int:
        """Turn the next alerts into alarms; returns how many were handled."""
        entries = self.stream.read(KEEPER_GROUP, self.consumer, block_ms=block_ms)
        for entry_id, alert in entries:
            try:
                with self.store.begin() as conn:
                    outcome, _ = raise_alarm(conn, alert)
            except (KeyError, TypeError, ValueError) as exc:  # not an alert we can read: leave a trace, go on
                log.error("alert %s cannot become an alarm (%s): %r", entry_id, exc, alert)
                outcome = "unreadable"
            self.handled[outcome] = self.handled.get(outcome, 0) + 1
            self.stream.ack(KEEPER_GROUP, entry_id)
        return len(entries)

    def start(self) -> AlarmKeeper:
        # created once; from then on the group's position survives restarts of the keeper
        self.stream.ensure_group(KEEPER_GROUP, start_id="$")
        self._thread = threading.Thread(target=self._run, name="alarm-keeper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.handle_pending()
            except Exception as exc:  # Redis or the database away: wait and try again
                log.warning("alarm keeper: %s", exc)
                self._stop.wait(2.0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
