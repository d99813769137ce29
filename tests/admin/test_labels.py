"""Label sets per site and labels (single, bulk JSON, CSV): all or nothing, overlaps refused with a reason."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.services
T = "2026-11-30T10:{:02d}:00Z"


@pytest.fixture(scope="module")
def fleet(api):
    with api.client() as c:
        c.post("/v1/sites", json={"id": "home", "name": "Home"})
        c.post("/v1/buildings", json={"id": "home-b", "site_id": "home", "name": "House"})
        c.post("/v1/rooms", json={"id": "kitchen", "building_id": "home-b", "name": "Kitchen"})
        for device in ("dev-l1", "dev-l2"):
            c.post("/v1/devices", json={"id": device, "room_id": "kitchen"})
        c.post("/v1/devices", json={"id": "dev-nosite"})
        put = c.put("/v1/label-sets/home", json={"labels": ["cooking", "washing up", "sitting"]})
        assert put.status_code == 200
    return "home"


def label(device="dev-l1", start=0, end=5, activity="cooking", **extra):
    return {"device_id": device, "starts_at": T.format(start), "ends_at": T.format(end), "label": activity, **extra}


class TestLabelSets:
    def test_put_get_replace_and_refusals(self, api, fleet):
        with api.client() as c:
            assert c.get("/v1/label-sets/home").json()["labels"] == ["cooking", "washing up", "sitting"]
            assert c.put("/v1/label-sets/nowhere", json={"labels": ["a", "b"]}).status_code == 404
            repeated = c.put("/v1/label-sets/home", json={"labels": ["a", "a"]})
            assert repeated.status_code == 422 and "repeated: a" in repeated.json()["detail"]
            assert c.put("/v1/label-sets/home", json={"labels": ["alone"]}).status_code == 422
            with api.client("label") as labeler:
                assert labeler.put("/v1/label-sets/home", json={"labels": ["a", "b"]}).status_code == 403
            audit = c.get("/v1/audit", params={"entity": "label_set", "entity_id": "home"}).json()
        assert [a["action"] for a in audit] == ["create"]


class TestLabels:
    def test_single_label_with_the_key_as_labeler_then_overlap_refused_with_reason(self, api, fleet):
        with api.client("label") as c:
            made = c.post("/v1/labels", json=label())
            assert made.status_code == 201
            assert made.json()["labeled_by"] == "test-label" and made.json()["source"] == "manual"
            overlap = c.post("/v1/labels", json=label(start=4, end=8, activity="sitting"))
            assert overlap.status_code == 422
            refusal = overlap.json()["detail"]["refused"][0]
            assert refusal["index"] == 0 and f"overlaps label {made.json()['id']} (cooking" in refusal["reason"]
            touching = c.post("/v1/labels", json=label(start=5, end=8, activity="sitting"))
            assert touching.status_code == 201  # [0, 5) and [5, 8) do not overlap
            other_device = c.post("/v1/labels", json=label(device="dev-l2", start=0, end=8))
            assert other_device.status_code == 201

    def test_activity_must_be_in_the_sites_label_set_or_the_default(self, api, fleet):
        with api.client("label") as c:
            wrong = c.post("/v1/labels", json=label(start=20, end=21, activity="walking"))
            assert wrong.status_code == 422
            assert "not in the label set of dev-l1's site: cooking, washing up, sitting" in \
                wrong.json()["detail"]["refused"][0]["reason"]
            default = c.post("/v1/labels", json=label(device="dev-nosite", start=20, end=21, activity="walking"))
            assert default.status_code == 201  # no site: the default set (settings.workers.labels)
            unknown = c.post("/v1/labels", json=label(device="dev-ghost"))
            assert "no device 'dev-ghost'" in unknown.json()["detail"]["refused"][0]["reason"]
            backwards = c.post("/v1/labels", json=label(start=30, end=29))
            assert "ends_at must be after starts_at" in backwards.json()["detail"]["refused"][0]["reason"]
            naive = c.post("/v1/labels", json=label() | {"starts_at": "2026-11-30T10:00:00"})
            assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["body", "starts_at"]

    def test_bulk_is_all_or_nothing_and_names_each_refused_item(self, api, fleet):
        with api.client("label") as c:
            before = len(c.get("/v1/labels", params={"device_id": "dev-l2"}).json())
            batch = [label(device="dev-l2", start=40, end=42), label(device="dev-l2", start=41, end=43),
                     label(device="dev-l2", start=44, end=45, activity="dancing")]
            refused = c.post("/v1/labels:bulk", json={"labels": batch})
            assert refused.status_code == 422
            assert [p["index"] for p in refused.json()["detail"]["refused"]] == [1, 2]
            assert len(c.get("/v1/labels", params={"device_id": "dev-l2"}).json()) == before
            ok = c.post("/v1/labels:bulk", json={"labels": [batch[0], label(device="dev-l2", start=42, end=43)]})
            assert ok.status_code == 201 and ok.json()["created"] == 2
            assert len(c.get("/v1/labels", params={"device_id": "dev-l2"}).json()) == before + 2

    def test_csv_import_is_all_or_nothing_then_listed_as_csv(self, api, fleet):
        with api.client("label") as c:  # a refusal found while storing names its CSV line too
            overlapping = ("device_id,starts_at,ends_at,label\n"
                           f"dev-l1,{T.format(0)},{T.format(1)},sitting\n")
            refused = c.post("/v1/labels:import", content=overlapping, headers={"content-type": "text/csv"})
            assert [p["line"] for p in refused.json()["detail"]["refused"]] == [2]
        good = ("device_id,starts_at,ends_at,label,labeled_by\n"
                f"dev-l1,{T.format(50)},{T.format(52)},washing up,carer\n"
                f"dev-l1,{T.format(52)},{T.format(55)},sitting,carer\n")
        bad = good + "dev-l1,yesterday,today,sitting,carer\n"
        with api.client("label") as c:
            refused = c.post("/v1/labels:import", content=bad, headers={"content-type": "text/csv"})
            assert refused.status_code == 422
            assert [p["line"] for p in refused.json()["detail"]["refused"]] == [4]
            no_header = c.post("/v1/labels:import", content="a,b\n1,2\n", headers={"content-type": "text/csv"})
            assert "header lacks device_id" in no_header.json()["detail"]
            made = c.post("/v1/labels:import", content=good, headers={"content-type": "text/csv"})
            assert made.status_code == 201 and made.json()["created"] == 2
            exported = c.get("/v1/labels", params={"device_id": "dev-l1", "start": T.format(50), "format": "csv"})
        lines = exported.text.splitlines()
        assert lines[0] == "id,device_id,starts_at,ends_at,label,labeled_by,labeled_at,source"
        assert [line.split(",")[4] for line in lines[1:]] == ["washing up", "sitting"]
        assert all(line.split(",")[5:] [0] == "carer" and line.endswith(",import") for line in lines[1:])

    def test_delete_needs_label_scope_and_is_audited(self, api, fleet):
        with api.client("label") as c:
            made = c.post("/v1/labels", json=label(device="dev-l2", start=58, end=59)).json()
            with api.client("read") as reader:
                assert reader.delete(f"/v1/labels/{made['id']}").status_code == 403
            assert c.delete(f"/v1/labels/{made['id']}").status_code == 204
            assert c.delete(f"/v1/labels/{made['id']}").status_code == 404
        with api.client() as c:
            audit = c.get("/v1/audit", params={"entity": "label", "entity_id": str(made["id"])}).json()
        assert [(a["action"], a["before"] is None, a["after"] is None) for a in audit] == [
            ("delete", False, True), ("create", True, False)]
