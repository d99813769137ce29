"""Alert rules as data: the five kinds with their parameters, scoped, checked before storing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def room(api):
    with api.client() as c:
        c.post("/v1/sites", json={"id": "rs", "name": "Rules site"})
        c.post("/v1/buildings", json={"id": "rs-b", "site_id": "rs", "name": "B"})
        c.post("/v1/rooms", json={"id": "rs-1", "building_id": "rs-b", "name": "1"})
        c.post("/v1/devices", json={"id": "dev-rs", "room_id": "rs-1"})
    return "rs-1"


@pytest.mark.parametrize("rule, reason", [
    ({"kind": "fall", "params": {"fall_impact_g": 0.5}}, "greater than 1"),
    ({"kind": "fall", "params": {"fall_freefall_g": 0.3, "bogus": 1}}, "Extra inputs are not permitted"),
    ({"kind": "teleport"}, "does not match any of the expected tags"),
    ({"kind": "room_hours", "params": {"room_hours": [{"activity": "lying", "start_hour": 22, "end_hour": 22}]}},
     "never be allowed"),
    ({"kind": "no_movement", "scope": "room"}, "needs scope_id"),
    ({"kind": "no_movement", "scope": "room", "scope_id": "nowhere"}, "no room 'nowhere'"),
    ({"kind": "device_silent", "scope_id": "rs-1"}, "fleet-wide rule takes no scope_id"),
])
def test_a_bad_rule_is_refused_with_the_reason_and_nothing_is_stored(api, room, rule, reason):
    with api.client() as c:
        stored_before = c.get("/v1/rules").json()
        refused = c.post("/v1/rules", json=rule)
        assert refused.status_code == 422, refused.text
        assert reason in refused.text
        assert c.get("/v1/rules").json() == stored_before


def test_scoped_rules_combine_most_specific_first_and_changes_are_checked(api, room):
    from admin.registry import FleetRegistry

    with api.client() as c:
        fleet_rule = c.post("/v1/rules", json={"kind": "no_movement", "params": {"no_movement_s": 600}}).json()
        room_rule = c.post("/v1/rules", json={"kind": "no_movement", "scope": "room", "scope_id": "rs-1",
                                              "params": {"no_movement_std": 0.02}}).json()
        assert (room_rule["scope"], room_rule["scope_id"], room_rule["enabled"]) == ("room", "rs-1", True)
        dup = c.post("/v1/rules", json={"kind": "no_movement", "params": {}})
        assert dup.status_code == 409 and "PATCH /v1/rules/" in dup.json()["detail"]
        hours = c.post("/v1/rules", json={"kind": "room_hours", "scope": "room", "scope_id": "rs-1", "params": {
            "room_hours": [{"activity": "lying", "start_hour": 21, "end_hour": 8}]}})
        assert hours.status_code == 201
        bad_patch = c.patch(f"/v1/rules/{room_rule['id']}", json={"params": {"no_movement_std": -1}})
        assert bad_patch.status_code == 422 and bad_patch.json()["detail"][0]["loc"] == ["body", "params", "no_movement_std"]
        assert c.get(f"/v1/rules/{room_rule['id']}").json()["params"] == {"no_movement_std": 0.02}

        with FleetRegistry(api.settings, listen=False) as registry:
            assert registry.rule_overrides("no_movement", "dev-rs") == {"no_movement_s": 600, "no_movement_std": 0.02}
            assert registry.rule_overrides("room_hours", "dev-rs") == {
                "room_hours": [{"room": "rs-1", "activity": "lying", "start_hour": 21, "end_hour": 8}]}
            assert registry.rule_overrides("fall", "dev-rs") == {}
            assert registry.rule_overrides("no_movement", "dev-elsewhere") == {"no_movement_s": 600}
        c.patch(f"/v1/rules/{fleet_rule['id']}", json={"enabled": False})
        with FleetRegistry(api.settings, listen=False) as registry:
            # the room's rule is more specific and enabled: it still runs there, with both parameters
            assert registry.rule_overrides("no_movement", "dev-rs") == {"no_movement_s": 600, "no_movement_std": 0.02}
            assert registry.rule_overrides("no_movement", "dev-elsewhere") is None
        assert c.delete(f"/v1/rules/{room_rule['id']}").status_code == 204
        audit = c.get("/v1/audit", params={"entity": "alert_rule", "entity_id": str(room_rule["id"])}).json()
    assert [a["action"] for a in audit] == ["delete", "create"]
