"""The registry reaches the running pipeline without a restart: the gate and a live worker refuse
unregistered and deactivated devices (`unknown_device`), and follow rule and label-set changes.

The registries here reload on change notices only (`registry_refresh_s` is 300 s in these tests)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.services


@pytest.fixture
def fleet(api):
    from admin.registry import FleetRegistry

    with api.client() as c:
        c.post("/v1/sites", json={"id": "care", "name": "Care home"})
        c.post("/v1/buildings", json={"id": "care-main", "site_id": "care", "name": "Main"})
        c.post("/v1/rooms", json={"id": "care-1", "building_id": "care-main", "name": "Room 1"})
    with FleetRegistry(api.settings) as registry:
        yield registry


def dead_letters(settings, device_id: str):
    from ingest.dead_letters import read_dead_letters

    return [d for d in read_dead_letters(settings, last=500) if d.device_id == device_id]


def test_the_gate_refuses_an_unregistered_device_to_the_dlq_then_admits_it_once_registered(api, fleet, live):
    from ingest.codec import encode
    from ingest.gate import IngestGate
    from ingest.producer import DeviceProducer

    t0 = time.time() - 600
    first, second, third = (encode(f) for f in live.frames("dev-gate", 3, t0))
    with DeviceProducer(api.settings) as producer:
        gate = IngestGate(api.settings, producer, admission=fleet)
        refused = gate.admit(first, "test")
        assert (refused.accepted, refused.code) == (False, "unknown_device")
        assert "not in the registry" in refused.reason
        with api.client() as c:
            c.post("/v1/devices", json={"id": "dev-gate", "room_id": "care-1"})
        live.wait_until(lambda: fleet.refusal("dev-gate") is None, 30, "the registry to hear of the registration")
        assert gate.admit(second, "test").accepted
        with api.client() as c:
            c.delete("/v1/devices/dev-gate")
        live.wait_until(lambda: fleet.refusal("dev-gate") is not None, 30, "the registry to hear of the deactivation")
        assert gate.admit(third, "test").code == "unknown_device"
    letters = live.wait_until(lambda: len(found := dead_letters(api.settings, "dev-gate")) == 2 and found, 40,
                              "two dead letters")
    assert [d.code for d in letters] == ["unknown_device", "unknown_device"]
    assert "not in the registry" in letters[0].reason and "deactivated" in letters[1].reason
    assert [d.payload for d in letters] == [first, third]


def test_a_live_worker_follows_registration_deactivation_rules_and_label_sets(api, fleet, live):
    t0 = time.time() - 3600
    since = datetime.fromtimestamp(t0 - 60, timezone.utc).isoformat()
    with api.client() as c, live.live_worker(api.settings, fleet) as worker:
        # unregistered: dead-lettered by the worker too (frames that reached the topic some other way)
        live.send(api.settings, live.frames("dev-live", 4, t0))
        live.wait_until(lambda: len(dead_letters(api.settings, "dev-live")) == 4, 120, "4 refused frames")
        assert {d.code for d in dead_letters(api.settings, "dev-live")} == {"unknown_device"}
        assert worker.totals.results == 0

        # registered in a site with its own label set: classified against that set, no restart
        assert c.put("/v1/label-sets/care", json={"labels": ["resting", "moving about"]}).status_code == 200
        assert c.post("/v1/devices", json={"id": "dev-live", "room_id": "care-1"}).status_code == 201
        live.wait_until(lambda: fleet.refusal("dev-live") is None, 30, "the registration")
        live.send(api.settings, live.frames("dev-live", 8, t0 + 10))
        live.wait_until(lambda: worker.totals.results >= 4, 150, "results of the registered device")
        rows = c.get("/v1/history/devices/dev-live", params={"start": since, "bucket_s": 3600}).json()
        assert rows and {r["label"] for r in rows} <= {"resting", "moving about"}
        state = c.get("/v1/state/devices/dev-live").json()
        assert state["room_id"] == "care-1" and state["activity"] in ("resting", "moving about")

        # a stuck sensor alerts; with the rule disabled for one device that device no longer does
        for device in ("dev-stuck-a", "dev-stuck-b"):
            c.post("/v1/devices", json={"id": device, "room_id": "care-1"})
        off = c.post("/v1/rules", json={"kind": "sensor_fault", "scope": "device", "scope_id": "dev-stuck-b",
                                        "enabled": False})
        assert off.status_code == 201
        live.wait_until(lambda: fleet.rule_overrides("sensor_fault", "dev-stuck-b") is None, 30, "the rule change")
        results_before = worker.totals.results
        live.send(api.settings, live.frames("dev-stuck-a", 6, t0 + 100, stuck_axis=1)
                  + live.frames("dev-stuck-b", 6, t0 + 100, stuck_axis=1))
        # six 1 s frames make 2 or 3 windows per device, depending on where t0 falls on the hop grid
        live.wait_until(lambda: worker.totals.results >= results_before + 4, 150, "results of the stuck devices")
        alerts = lambda device: c.get("/v1/alerts", params={"device_id": device,  # noqa: E731
                                                            "start": since}).json()
        live.wait_until(lambda: alerts("dev-stuck-a"), 60, "the stuck sensor alert")
        assert [a["kind"] for a in alerts("dev-stuck-a")] == ["sensor_fault"]
        assert alerts("dev-stuck-b") == []

        # deactivated: refused again
        c.delete("/v1/devices/dev-live")
        live.wait_until(lambda: fleet.refusal("dev-live") is not None, 30, "the deactivation")
        results_before = worker.totals.results
        live.send(api.settings, live.frames("dev-live", 3, t0 + 200))
        live.wait_until(lambda: len(dead_letters(api.settings, "dev-live")) == 7, 120, "3 more refused frames")
    assert "deactivated" in dead_letters(api.settings, "dev-live")[-1].reason
