"""Sites, buildings, rooms and devices through the API on the real database; every write audited."""

from __future__ import annotations

import csv
import io

import pytest

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def places(api):
    with api.client() as c:
        assert c.post("/v1/sites", json={"id": "north", "name": "North campus"}).status_code == 201
        assert c.post("/v1/buildings", json={"id": "north-a", "site_id": "north", "name": "A"}).status_code == 201
        for room in ("a-101", "a-102"):
            assert c.post("/v1/rooms", json={"id": room, "building_id": "north-a", "name": room, "floor": 1}).status_code == 201
    return "north", "north-a", ("a-101", "a-102")


class TestPlaces:
    def test_crud_and_references_are_checked(self, api, places):
        with api.client() as c:
            assert c.get("/v1/sites/north").json() == {"id": "north", "name": "North campus"}
            assert c.patch("/v1/sites/north", json={"name": "North"}).json()["name"] == "North"
            again = c.post("/v1/sites", json={"id": "north", "name": "dup"})
            assert again.status_code == 409 and "already exists" in again.json()["detail"]
            orphan = c.post("/v1/buildings", json={"id": "b", "site_id": "nowhere", "name": "b"})
            assert orphan.status_code == 422 and "no site 'nowhere'" in orphan.json()["detail"]
            assert [r["id"] for r in c.get("/v1/rooms", params={"building_id": "north-a"}).json()] == ["a-101", "a-102"]
            assert c.get("/v1/rooms/nope").status_code == 404
            bad = c.post("/v1/sites", json={"id": "has space", "name": "x"})
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "id"]

    def test_deleting_a_building_deletes_its_rooms_and_keeps_their_devices(self, api, places):
        with api.client() as c:
            c.post("/v1/buildings", json={"id": "shed", "site_id": "north", "name": "Shed"})
            c.post("/v1/rooms", json={"id": "shed-1", "building_id": "shed", "name": "Shed"})
            c.post("/v1/devices", json={"id": "dev-shed", "room_id": "shed-1"})
            assert c.delete("/v1/buildings/shed").status_code == 204
            assert c.get("/v1/rooms/shed-1").status_code == 404
            assert c.get("/v1/devices/dev-shed").json()["room_id"] is None


class TestDevices:
    def test_register_filter_patch_deactivate_reactivate(self, api, places):
        with api.client() as c:
            made = c.post("/v1/devices", json={"id": "dev-w1", "kind": "imu", "placement": "wrist",
                                               "room_id": "a-101", "owner": "resident 1"})
            assert made.status_code == 201
            assert made.json() | {"registered_at": None} == {
                "id": "dev-w1", "kind": "imu", "placement": "wrist", "room_id": "a-101", "owner": "resident 1",
                "active": True, "registered_at": None, "deactivated_at": None, "credentials_issued_at": None}
            c.post("/v1/devices", json={"id": "dev-w2", "placement": "waist", "room_id": "a-102"})
            assert c.post("/v1/devices", json={"id": "dev-x", "room_id": "nope"}).status_code == 422
            ids = lambda **f: [d["id"] for d in c.get("/v1/devices", params=f).json()]  # noqa: E731
            assert ids(site_id="north", placement="wrist") == ["dev-w1"]
            assert ids(room_id="a-102") == ["dev-w2"]
            moved = c.patch("/v1/devices/dev-w2", json={"room_id": "a-101", "owner": "resident 2"})
            assert (moved.json()["room_id"], moved.json()["owner"]) == ("a-101", "resident 2")
            gone = c.delete("/v1/devices/dev-w2").json()
            assert gone["active"] is False and gone["deactivated_at"] is not None
            assert ids(active="false") == ["dev-w2"] and "dev-w2" not in ids(active="true")
            assert c.delete("/v1/devices/dev-w2").json()["deactivated_at"] == gone["deactivated_at"]
            assert c.patch("/v1/devices/dev-w2", json={"active": True}).json()["active"] is True
            audit = c.get("/v1/audit", params={"entity": "device", "entity_id": "dev-w2"}).json()
        # the second DELETE changed nothing, so it wrote nothing to the audit log either
        assert [a["action"] for a in audit] == ["update", "deactivate", "update", "create"]
        reactivation, first_deactivation = audit[0], audit[1]
        assert reactivation["before"]["active"] is False and reactivation["after"]["active"] is True
        assert first_deactivation["before"]["active"] is True and first_deactivation["after"]["active"] is False
        assert all(a["key_id"] is not None for a in audit)

    def test_credentials_are_shown_once_and_stored_hashed(self, api, places):
        from sqlalchemy import text

        from admin.security import matches
        from storage.lane import engine_from_settings

        from admin.registry import FleetRegistry

        with api.client() as c:
            c.post("/v1/devices", json={"id": "dev-cred"})
            first = c.post("/v1/devices/dev-cred/credentials").json()
            second = c.post("/v1/devices/dev-cred/credentials").json()
            assert first["secret"] != second["secret"] and len(second["secret"]) >= 40
            with FleetRegistry(api.settings, listen=False) as registry:  # what the edge will check frames against
                assert registry.verifies("dev-cred", second["secret"])
                assert not registry.verifies("dev-cred", first["secret"]) and not registry.verifies("dev-w1", "x")
            shown = c.get("/v1/devices/dev-cred").json()
            assert shown["credentials_issued_at"] is not None and "secret" not in shown
            c.delete("/v1/devices/dev-cred")
            refused = c.post("/v1/devices/dev-cred/credentials")
            assert refused.status_code == 409 and "deactivated" in refused.json()["detail"]
            assert c.post("/v1/devices/nope/credentials").status_code == 404
            audit_text = c.get("/v1/audit", params={"entity": "device", "entity_id": "dev-cred"}).text
        engine = engine_from_settings(api.settings)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT credentials_hash FROM devices WHERE id = 'dev-cred'")).scalar_one()
        engine.dispose()
        assert second["secret"] not in stored and matches(second["secret"], stored)
        assert not matches(first["secret"], stored)
        assert second["secret"] not in audit_text and first["secret"] not in audit_text

    def test_lists_stream_as_csv(self, api, places):
        with api.client() as c:
            response = c.get("/v1/devices", params={"format": "csv", "site_id": "north"})
            as_json = c.get("/v1/devices", params={"site_id": "north"}).json()
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["id"] for r in rows] == [d["id"] for d in as_json]
        assert rows[0]["active"] == str(as_json[0]["active"])


@pytest.mark.timescale
def test_the_api_works_on_the_timescale_lane(settings, timescale, stack, live):
    """The same API on the PGlite TimescaleDB (one connection at a time): registry, labels, rules, alarms, audit."""
    import uuid

    import httpx

    from admin.alarms import raise_alarm
    from storage import migrate

    from_scratch = settings.model_copy(update={
        "storage": settings.storage.model_copy(update={"lane": "timescale", "redis_key_prefix": f"test:{uuid.uuid4().hex[:8]}"}),
        "api": settings.api.model_copy(update={"alarm_keeper": False}),
        "kafka": settings.kafka.model_copy(update={"control_topic": f"test.{uuid.uuid4().hex[:8]}.control"}),
    })
    migrate.downgrade(settings.timescale_url)
    migrate.upgrade(settings.timescale_url)
    try:
        keys = live.make_keys(from_scratch)
        url, app, stop = live.serve(from_scratch)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30) as c:
                assert c.post("/v1/sites", json={"id": "ts", "name": "TS"}).status_code == 201
                assert c.post("/v1/buildings", json={"id": "ts-b", "site_id": "ts", "name": "B"}).status_code == 201
                assert c.post("/v1/rooms", json={"id": "ts-1", "building_id": "ts-b", "name": "1"}).status_code == 201
                assert c.post("/v1/devices", json={"id": "dev-ts", "room_id": "ts-1"}).status_code == 201
                assert app.state.registry.refusal("dev-ts") is None
                made = c.post("/v1/labels", json={"device_id": "dev-ts", "starts_at": "2026-11-30T08:00:00Z",
                                                  "ends_at": "2026-11-30T08:01:00Z", "label": "walking"})
                assert made.status_code == 201
                assert c.post("/v1/rules", json={"kind": "fall", "params": {"fall_impact_g": 3}}).status_code == 201
                with app.state.store.begin() as conn:
                    outcome, alarm = raise_alarm(conn, {"rule": "fall", "severity": "critical", "device_id": "dev-ts",
                                                        "room": "ts-1", "at": 1764576000.0, "message": "fall",
                                                        "dedup_key": "fall:dev-ts:1"})
                assert outcome == "opened"
                assert c.post(f"/v1/alarms/{alarm['id']}/ack").json()["status"] == "acknowledged"
                assert c.get("/v1/episodes").json() == []
                assert len(c.get("/v1/audit").json()) >= 8
                assert c.get("/health").json()["database"] == "ok"
        finally:
            stop()
    finally:
        migrate.downgrade(settings.timescale_url)
