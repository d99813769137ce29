"""Keys and scopes over every route of the OpenAPI spec: no key 401, a key without the scope 403, the
right scope never refused (2xx or 4xx, never 5xx); revoked, expired and made-up keys 401; failed
attempts from one client are rate-limited."""

from __future__ import annotations

import re
import uuid

import pytest

from admin.security import granted

pytestmark = pytest.mark.services
SCOPES = ("read", "label", "admin")


def operations(spec: dict) -> list[tuple[str, str, str | None]]:
    """(method, concrete url, scope it needs) of every operation, path parameters filled with plausible ids."""
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
            url = re.sub(r"\{(\w+)\}", lambda m: "2147480000" if params[m.group(1)]["schema"].get("type") == "integer"
                         else "no-such-thing", path)
            ops.append((method.upper(), url, op.get("x-scope")))
    return ops


@pytest.fixture(scope="module")
def spec(api):
    with api.client(None) as client:
        return client.get("/openapi.json").json()


def test_every_route_but_health_needs_a_key_and_names_its_scope(spec):
    ops = operations(spec)
    assert len(ops) > 30
    assert [(m, u) for m, u, scope in ops if scope is None] == [("GET", "/health")]
    assert {scope for _, _, scope in ops} == {None, *SCOPES}


def test_no_key_401_wrong_scope_403_right_scope_never_refused(api, spec):
    for method, url, scope in operations(spec):
        if scope is None:
            continue
        with api.client(None) as client:
            response = client.request(method, url)
            assert response.status_code == 401, (method, url, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in response.json()["detail"]
        for key in SCOPES:
            with api.client(key) as client:
                response = client.request(method, url, json={})
            if scope in granted([key]):
                assert response.status_code not in (401, 403), (key, method, url, response.text)
                assert response.status_code < 500, (key, method, url, response.text)
            else:
                assert response.status_code == 403, (key, method, url, response.text)
                assert f"scope {scope!r}" in response.json()["detail"]


@pytest.mark.parametrize("which, reason", [("revoked", "was revoked at"), ("expired", "expired at"),
                                           ("made-up", "unknown key"), ("garbage", "malformed key")])
def test_revoked_expired_unknown_and_malformed_keys_are_refused_everywhere(api, spec, which, reason):
    key = {"made-up": f"iotlm_{api.keys['admin'].split('_')[1]}_{uuid.uuid4().hex}", "garbage": "hunter2"}.get(
        which, api.keys.get(which))
    for method, url, scope in operations(spec):
        if scope is None:
            continue
        with api.client(key) as client:
            response = client.request(method, url, json={})
        assert response.status_code == 401, (which, method, url, response.text)
        assert reason in response.json()["detail"]


def test_health_needs_no_key_and_reports_each_service(api):
    with api.client(None) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok", "kafka": "ok"}


def test_keys_made_through_the_api_work_once_shown_and_stop_when_revoked(api):
    with api.client("admin") as client:
        made = client.post("/v1/keys", json={"scope": "read", "name": "dashboard"})
        assert made.status_code == 201
        key, key_id = made.json()["key"], made.json()["id"]
        listed = {k["id"]: k for k in client.get("/v1/keys").json()}
        assert "key" not in listed[key_id] and listed[key_id]["scopes"] == ["read"]
        assert key.startswith(f"iotlm_{listed[key_id]['prefix']}_")
    with api.client(key) as reader:
        assert reader.get("/v1/devices").status_code == 200
        assert reader.post("/v1/sites", json={"id": "x", "name": "x"}).status_code == 403
    with api.client("admin") as client:
        assert client.delete(f"/v1/keys/{key_id}").json()["revoked_at"] is not None
    with api.client(key) as reader:
        assert reader.get("/v1/devices").status_code == 401
    with api.client("admin") as client:
        audit = client.get("/v1/audit", params={"entity": "api_key", "entity_id": str(key_id)}).json()
    assert [a["action"] for a in audit] == ["revoke", "create"]
    assert all("key_hash" not in (a["after"] or {}) for a in audit)


def test_failed_attempts_from_one_client_are_rate_limited(start_api):
    import httpx

    strict = start_api(failed_auth_limit=3, failed_auth_window_s=60)
    bad = {"Authorization": "Bearer iotlm_00000000_nope"}
    codes = [httpx.get(f"{strict.url}/v1/devices", headers=bad).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    limited = httpx.get(f"{strict.url}/v1/devices", headers={"Authorization": f"Bearer {strict.keys['admin']}"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "too many failed key attempts" in limited.json()["detail"]
    assert httpx.get(f"{strict.url}/v1/devices").status_code == 401  # no key is no attempt: still told what to send


def test_without_kafka_the_api_serves_and_health_says_what_is_down(api, live):
    import httpx

    from deploy.process import free_ports

    stack = api.settings.stack.model_copy(update={"kafka_port": free_ports()[0]})
    url, _app, stop = live.serve(api.settings.model_copy(update={"stack": stack}))
    try:
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 503
        report = health.json()
        assert (report["status"], report["database"], report["redis"]) == ("degraded", "ok", "ok")
        assert report["kafka"].startswith("unreachable: ConnectionRefusedError")
        listed = httpx.get(f"{url}/v1/sites", headers={"Authorization": f"Bearer {api.keys['read']}"}, timeout=30)
        assert listed.status_code == 200
        frames = httpx.post(f"{url}/v1/frames:import", content=b"{}\n", timeout=60, headers={
            "Authorization": f"Bearer {api.keys['admin']}", "content-type": "application/x-ndjson"})
        assert frames.status_code == 503 and "Kafka is unavailable" in frames.json()["detail"]
    finally:
        stop()
