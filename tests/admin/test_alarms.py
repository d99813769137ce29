"""Alarm lifecycle on the real pipeline: a replayed fall raises one alarm; ack and clear work; a repeat within
the cooldown (seen by a restarted worker, whose in-memory cooldown is gone) updates the open alarm instead
of opening a second; a re-delivered alert counts once, even after its alarm is cleared."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

pytestmark = pytest.mark.services


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_replayed_fall_raises_one_alarm_that_is_acknowledged_updated_and_cleared(api, live):
    from admin.registry import FleetRegistry
    from storage.live_state import AlertStream

    t0 = time.time() - 1800
    with api.client() as c:
        c.post("/v1/sites", json={"id": "ward", "name": "Ward"})
        c.post("/v1/buildings", json={"id": "ward-b", "site_id": "ward", "name": "B"})
        c.post("/v1/rooms", json={"id": "ward-3", "building_id": "ward-b", "name": "Room 3"})
        c.post("/v1/devices", json={"id": "dev-fall", "placement": "wrist", "room_id": "ward-3"})
    alarms = lambda: api.client("read").get("/v1/alarms", params={"device_id": "dev-fall"}).json()  # noqa: E731

    with FleetRegistry(api.settings) as fleet:
        with live.live_worker(api.settings, fleet) as worker:
            live.send(api.settings, live.frames("dev-fall", 8, t0, fall_at=3))
            live.wait_until(lambda: worker.totals.alerts >= 1 and worker.totals.results >= 4, 150, "the fall alert")
        [alarm] = live.wait_until(alarms, 60, "the alarm")
        assert (alarm["rule"], alarm["severity"], alarm["status"], alarm["occurrences"]) == ("fall", "critical",
                                                                                             "active", 1)
        assert (alarm["subject"], alarm["room_id"]) == ("device:dev-fall", "ward-3")
        assert abs(epoch(alarm["first_seen_at"]) - (t0 + 3.2)) < 0.05  # when the free fall began

        with api.client("label") as c:
            acked = c.post(f"/v1/alarms/{alarm['id']}/ack", json={"assignee": "nurse kim", "comment": "on my way"})
            assert acked.status_code == 200
            assert (acked.json()["status"], acked.json()["assignee"]) == ("acknowledged", "nurse kim")
            again = c.post(f"/v1/alarms/{alarm['id']}/ack")
            assert again.status_code == 409 and "already acknowledged" in again.json()["detail"]

        # another fall 400 s later, past the 300 s cooldown (the workers' table keeps the cooldown across
        # the restart: one inside it raises nothing), seen by a restarted worker: the same alarm, updated
        with live.live_worker(api.settings, fleet) as worker:
            live.send(api.settings, live.frames("dev-fall", 8, t0 + 400, fall_at=3, seed=1))
            live.wait_until(lambda: worker.totals.alerts >= 1, 150, "the second fall alert")
        live.wait_until(lambda: alarms()[0]["occurrences"] == 2, 60, "the alarm to be updated")
    [alarm] = alarms()
    assert alarm["status"] == "acknowledged" and alarm["assignee"] == "nurse kim"
    assert abs(epoch(alarm["last_seen_at"]) - (t0 + 403.2)) < 0.05

    with api.client("label") as c:
        cleared = c.post(f"/v1/alarms/{alarm['id']}/clear", json={"comment": "resident fine, back in bed"})
        assert cleared.status_code == 200 and cleared.json()["status"] == "cleared"
        assert cleared.json()["comment"] == "resident fine, back in bed"
        assert c.post(f"/v1/alarms/{alarm['id']}/clear").status_code == 409
        assert c.post(f"/v1/alarms/{alarm['id']}/ack").status_code == 409
        assert c.post("/v1/alarms/999999/ack").status_code == 404

    # the first fall's alert delivered again (a worker re-reading after a crash): counted already, no new alarm
    stream = AlertStream.from_settings(api.settings, "worker")
    replayed = [a for a in (json.loads(f["alert"]) for _, f in stream.redis.xrange(stream.stream))
                if a["device_id"] == "dev-fall"]
    assert len(replayed) == 2
    stream.publish(replayed[0])
    stream.publish({**replayed[0], "dedup_key": "fall:dev-fall:new", "at": t0 + 800})  # after the clear: a new alarm
    live.wait_until(lambda: len(alarms()) == 2, 60, "the new alarm")
    newest, old = alarms()
    assert (newest["status"], newest["occurrences"], old["status"], old["occurrences"]) == ("active", 1, "cleared", 2)

    with api.client() as c:
        history = c.get("/v1/audit", params={"entity": "alarm", "entity_id": str(alarm["id"])}).json()
        as_csv = c.get("/v1/alarms", params={"device_id": "dev-fall", "format": "csv"}).text.splitlines()
    assert [(h["action"], h["key_id"] is None) for h in history] == [
        ("clear", False), ("update", True), ("acknowledge", False), ("open", True)]
    assert len(as_csv) == 3 and as_csv[0].startswith("id,subject,rule,")


def test_one_open_alarm_per_subject_and_rule_severity_escalates_and_assignment_is_audited(api):
    from admin.alarms import raise_alarm

    def alert(key: str, at: float, severity: str = "warning", device: str | None = "dev-esc", rule: str = "no_movement"):
        return {"rule": rule, "severity": severity, "device_id": device, "room": "hall", "at": at,
                "message": f"{rule} {key}", "dedup_key": key, "details": {"n": key}}

    with api.app.state.store.begin() as conn:
        assert raise_alarm(conn, alert("a", 100.0))[0] == "opened"
        outcome, updated = raise_alarm(conn, alert("b", 160.0, "critical"))
        assert outcome == "updated" and (updated["severity"], updated["occurrences"]) == ("critical", 2)
        outcome, kept = raise_alarm(conn, alert("c", 130.0, "info"))  # late and milder: counted, never downgraded
        assert (kept["severity"], kept["occurrences"], kept["message"]) == ("critical", 3, "no_movement c")
        assert kept["last_seen_at"].timestamp() == 160.0
        assert raise_alarm(conn, alert("b", 160.0))[0] == "already_counted"
        assert raise_alarm(conn, alert("d", 100.0, rule="device_silent"))[0] == "opened"  # another rule: its own
        room_only = raise_alarm(conn, alert("e", 100.0, device=None))[1]
        assert (room_only["subject"], room_only["device_id"]) == ("room:hall", None)
        assert raise_alarm(conn, {**alert("f", 1.0, device=None), "room": None}) == ("ignored", None)
    with api.client("label") as c:
        open_ones = c.get("/v1/alarms", params={"status": "open", "device_id": "dev-esc"}).json()
        assert sorted(a["rule"] for a in open_ones) == ["device_silent", "no_movement"]
        mine = next(a for a in open_ones if a["rule"] == "no_movement")
        patched = c.patch(f"/v1/alarms/{mine['id']}", json={"assignee": "kim", "comment": "checking"}).json()
        assert (patched["assignee"], patched["comment"], patched["status"]) == ("kim", "checking", "active")
        assert c.get("/v1/alarms", params={"severity": "critical", "device_id": "dev-esc"}).json()[0]["id"] == mine["id"]
        with api.client("read") as reader:
            assert reader.patch(f"/v1/alarms/{mine['id']}", json={"assignee": "x"}).status_code == 403
    with api.client() as c:
        actions = [a["action"] for a in c.get("/v1/audit", params={"entity": "alarm", "entity_id": str(mine["id"])}).json()]
    assert actions == ["update", "update", "update", "open"]  # the person's patch, two repeats, the first alert
