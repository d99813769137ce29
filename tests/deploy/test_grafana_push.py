"""`iotlm grafana push` through grafana-client, against a stand-in for Grafana.

Grafana cannot run on these machines, so `GrafanaStandIn` below STANDS IN FOR GRAFANA: a local HTTP
server on 127.0.0.1 that implements the part of Grafana's HTTP API the push uses (data sources,
folders, dashboards, alerting provisioning), keeps what it is sent, answers with the extra fields
Grafana adds (ids, versions, provenance; secrets never returned), refuses what Grafana refuses (a bad
token, a rule naming an unknown data source or folder, a policy naming an unknown contact point), and
records every request exactly as grafana-client sent it.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from grafana_client import GrafanaApi
from typer.testing import CliRunner

from deploy.grafana import alerting
from deploy.grafana.dashboards import build, dashboards
from deploy.grafana.push import PushError, push
from iotlm.cli import app
from iotlm.settings import SecuritySettings, Settings
from storage.lane import Lane

READER_PASSWORD = "reader-password-from-the-environment"


def grafana_settings() -> Settings:
    # Grafana reads as the reader role; no database here, so its password comes as a deployment gives it
    return Settings(security=SecuritySettings(passwords={"postgres.reader": READER_PASSWORD}))


READER_ENV = {"IOTLM_SECURITY__PASSWORDS": json.dumps({"postgres.reader": READER_PASSWORD})}  # the CLI's way

TOKEN = "glsa_test_token"
# The fields Grafana's HTTP API keeps for each kind of object (anything else it drops, so a client that
# compared them would see a difference forever).
DATASOURCE_FIELDS = {"uid", "name", "type", "access", "url", "user", "database", "basicAuth", "basicAuthUser",
                     "withCredentials", "isDefault", "jsonData", "secureJsonData"}
RULE_FIELDS = {"uid", "title", "folderUID", "ruleGroup", "orgID", "condition", "data", "noDataState", "execErrState",
               "for", "annotations", "labels", "isPaused", "notification_settings", "record"}
CONTACT_POINT_FIELDS = {"uid", "name", "type", "settings", "disableResolveMessage"}
POLICY_FIELDS = {"receiver", "group_by", "routes", "group_wait", "group_interval", "repeat_interval",
                 "object_matchers", "mute_time_intervals", "continue"}


def _kept(body: dict, fields: set[str]) -> dict:
    return {k: v for k, v in body.items() if k in fields}


def _policy(tree: dict) -> dict:
    return _kept(tree, POLICY_FIELDS) | ({"routes": [_policy(r) for r in tree["routes"]]} if "routes" in tree else {})
WRITES = ("POST", "PUT", "DELETE", "PATCH")


class GrafanaStandIn:
    """A stand-in for Grafana's HTTP API (see the module docstring); `prefix` serves it under a sub-path."""

    def __init__(self, prefix: str = "", fail: str | None = None):
        self.prefix, self.fail = prefix, fail  # fail: a path regex answered with 500
        self.requests: list[dict] = []
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.groups: dict[tuple[str, str], int] = {}
        self.contact_points: dict[str, dict] = {}
        self.policies = {"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"]}
        self.next_id = 1
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                url = urlparse(self.path)
                stand_in.requests.append({"method": method, "path": url.path, "query": parse_qs(url.query),
                                          "body": body, "auth": self.headers.get("Authorization"),
                                          "agent": self.headers.get("User-Agent")})
                status, answer = stand_in.answer(method, url.path, parse_qs(url.query), body,
                                                 self.headers.get("Authorization"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PUT(self):
                self._serve("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[dict]:
        return [r for r in self.requests if r["method"] in WRITES]

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def answer(self, method: str, path: str, query: dict, body, auth: str | None):
        if auth != f"Bearer {TOKEN}":
            return 401, {"message": "invalid API key"}
        if not path.startswith(self.prefix + "/api/"):
            return 404, {"message": "Not found"}
        path = path[len(self.prefix) + len("/api"):]
        if self.fail and re.search(self.fail, path):
            return 500, {"message": "database is locked"}
        routes = [
            ("GET", r"/datasources/uid/([^/]+)", self.get_datasource), ("POST", r"/datasources", self.add_datasource),
            ("PUT", r"/datasources/uid/([^/]+)", self.put_datasource),
            ("GET", r"/folders/([^/]+)", self.get_folder), ("POST", r"/folders", self.add_folder),
            ("PUT", r"/folders/([^/]+)", self.put_folder),
            ("GET", r"/dashboards/uid/([^/]+)", self.get_dashboard), ("POST", r"/dashboards/db", self.save_dashboard),
            ("GET", r"/v1/provisioning/alert-rules/([^/]+)", self.get_rule),
            ("POST", r"/v1/provisioning/alert-rules", self.add_rule),
            ("PUT", r"/v1/provisioning/alert-rules/([^/]+)", self.put_rule),
            ("GET", r"/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", self.get_group),
            ("PUT", r"/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", self.put_group),
            ("GET", r"/v1/provisioning/contact-points", self.get_contact_points),
            ("POST", r"/v1/provisioning/contact-points", self.add_contact_point),
            ("PUT", r"/v1/provisioning/contact-points/([^/]+)", self.put_contact_point),
            ("GET", r"/v1/provisioning/policies", lambda q, b: (200, self.policies)),
            ("PUT", r"/v1/provisioning/policies", self.put_policies),
        ]
        for verb, pattern, handler in routes:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                return handler(query, body, *m.groups())
        return 404, {"message": "Not found"}

    # -- data sources: secrets are kept apart and only their presence is ever answered
    def _public(self, ds: dict) -> dict:
        out = {k: v for k, v in ds.items() if k != "secureJsonData"}
        return out | {"secureJsonFields": {k: True for k in ds.get("secureJsonData", {})}}

    def get_datasource(self, query, body, uid):
        ds = self.datasources.get(uid)
        return (200, self._public(ds)) if ds else (404, {"message": "Data source not found"})

    def add_datasource(self, query, body):
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        ds = _kept(body, DATASOURCE_FIELDS) | {"id": self._id(), "orgId": 1, "version": 1, "readOnly": False}
        self.datasources[body["uid"]] = ds
        return 200, {"datasource": self._public(ds), "id": ds["id"], "message": "Datasource added"}

    def put_datasource(self, query, body, uid):
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        old = self.datasources[uid]
        self.datasources[uid] = _kept(body, DATASOURCE_FIELDS) | {
            "id": old["id"], "orgId": 1, "version": old["version"] + 1,
            "secureJsonData": body.get("secureJsonData", old.get("secureJsonData", {}))}
        return 200, {"message": "Datasource updated"}

    def get_folder(self, query, body, uid):
        return (200, self.folders[uid]) if uid in self.folders else (404, {"message": "folder not found"})

    def add_folder(self, query, body):
        self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": self._id(), "version": 1}
        return 200, self.folders[body["uid"]]

    def put_folder(self, query, body, uid):
        self.folders[uid] |= {"title": body["title"], "version": self.folders[uid]["version"] + 1}
        return 200, self.folders[uid]

    def get_dashboard(self, query, body, uid):
        if uid not in self.dashboards:
            return 404, {"message": "Dashboard not found"}
        return 200, self.dashboards[uid]

    def save_dashboard(self, query, body):
        board, uid = body["dashboard"], body["dashboard"]["uid"]
        if body.get("folderUid") not in self.folders:
            return 400, {"message": "folder not found"}
        if uid in self.dashboards and not body.get("overwrite"):
            return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
        version = self.dashboards[uid]["dashboard"]["version"] + 1 if uid in self.dashboards else 1
        self.dashboards[uid] = {"dashboard": board | {"id": self._id(), "version": version},
                                "meta": {"folderUid": body["folderUid"], "provisioned": False, "canSave": True}}
        return 200, {"status": "success", "uid": uid, "version": version}

    # -- alerting provisioning: rules are validated as Grafana validates them
    def _rule_problem(self, rule: dict) -> str | None:
        if rule.get("folderUID") not in self.folders:
            return f"folder {rule.get('folderUID')} does not exist"
        refs = {q["refId"] for q in rule["data"]}
        if rule["condition"] not in refs:
            return f"condition {rule['condition']} does not exist"
        for q in rule["data"]:
            if q["datasourceUid"] != "__expr__" and q["datasourceUid"] not in self.datasources:
                return f"data source {q['datasourceUid']} does not exist"
        return None

    def get_rule(self, query, body, uid):
        return (200, self.rules[uid]) if uid in self.rules else (404, {"message": "rule not found"})

    def add_rule(self, query, body):
        problem = self._rule_problem(body)
        if problem:
            return 400, {"message": f"invalid alert rule: {problem}"}
        self.rules[body["uid"]] = _kept(body, RULE_FIELDS) | {"id": self._id(), "orgID": 1, "provenance": "api",
                                          "updated": "2026-12-01T08:00:00Z"}
        self.groups.setdefault((body["folderUID"], body["ruleGroup"]), 60)  # Grafana's default interval
        return 201, self.rules[body["uid"]]

    def put_rule(self, query, body, uid):
        problem = self._rule_problem(body)
        if problem or uid not in self.rules:
            return 400, {"message": f"invalid alert rule: {problem or 'unknown uid'}"}
        self.rules[uid] = _kept(body, RULE_FIELDS) | {"id": self.rules[uid]["id"], "orgID": 1, "provenance": "api"}
        return 200, self.rules[uid]

    def get_group(self, query, body, folder, group):
        if (folder, group) not in self.groups:
            return 404, {"message": "rule group not found"}
        rules = [r for r in self.rules.values() if (r["folderUID"], r["ruleGroup"]) == (folder, group)]
        return 200, {"title": group, "folderUid": folder, "interval": self.groups[(folder, group)], "rules": rules}

    def put_group(self, query, body, folder, group):
        self.groups[(folder, group)] = body["interval"]
        return 200, body

    def get_contact_points(self, query, body):
        names = query.get("name")
        return 200, [c for c in self.contact_points.values() if not names or c["name"] in names]

    def add_contact_point(self, query, body):
        self.contact_points[body["uid"]] = _kept(body, CONTACT_POINT_FIELDS) | {"provenance": "api"}
        return 202, self.contact_points[body["uid"]]

    def put_contact_point(self, query, body, uid):
        self.contact_points[uid] = _kept(body, CONTACT_POINT_FIELDS) | {"provenance": "api"}
        return 202, {"message": "contactpoint updated"}

    def put_policies(self, query, body):
        known = {c["name"] for c in self.contact_points.values()}
        receivers = [body["receiver"]] + [r["receiver"] for r in body.get("routes", [])]
        if not set(receivers) <= known:
            return 400, {"message": f"receiver {set(receivers) - known} does not exist"}
        self.policies = _policy(body) | {"provenance": "api"}
        return 202, {"message": "policies updated"}


@pytest.fixture
def grafana():
    with GrafanaStandIn() as stand_in:
        yield stand_in


def _counts(report) -> tuple[int, int, int]:
    return len(report.created), len(report.updated), len(report.unchanged)


class TestPush:
    def test_first_push_creates_everything_as_the_files_provision_it(self, grafana):
        settings = grafana_settings()
        report = push(settings, grafana.url, TOKEN, Lane.TIMESCALEDB)
        n_boards, n_rules = len(dashboards(settings)), len(alerting.api_rules(settings))
        assert len(report.created) == 2 + 1 + n_boards + n_rules + 1
        assert report.updated == ["notification policies"]  # Grafana always has a (default) tree
        assert all(r["auth"] == f"Bearer {TOKEN}" and r["agent"].startswith("grafana-client")
                   for r in grafana.requests)
        # what grafana-client delivered is what the provisioning files say
        pg = grafana.datasources["iotlm-postgres"]
        assert pg["jsonData"]["timescaledb"] is True
        assert pg["secureJsonData"] == {"password": "any"}  # PGlite (this lane) has one user, any password
        for spec in dashboards(settings):
            stored = grafana.dashboards[spec.uid]
            assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == build(spec)
            assert stored["meta"]["folderUid"] == alerting.FOLDER_UID
        posted = [r["body"] for r in grafana.requests if r["method"] == "POST" and r["path"].endswith("alert-rules")]
        assert posted == alerting.api_rules(settings)
        assert grafana.policies["receiver"] == alerting.CONTACT_POINT
        assert grafana.contact_points[alerting.CONTACT_POINT]["settings"]["url"] == settings.grafana.alert_webhook_url

    def test_a_second_push_changes_nothing(self, grafana):
        settings = grafana_settings()
        push(settings, grafana.url, TOKEN, Lane.POSTGRESQL)
        before = len(grafana.requests)
        report = push(settings, grafana.url, TOKEN, Lane.POSTGRESQL)
        assert report.created == [] and report.updated == []
        assert not [r for r in grafana.requests[before:] if r["method"] in WRITES]
        assert grafana.datasources["iotlm-postgres"]["version"] == 1

    def test_a_changed_setting_updates_only_what_depends_on_it(self, grafana):
        settings = grafana_settings()
        push(settings, grafana.url, TOKEN, Lane.POSTGRESQL)
        changed = settings.model_copy(update={
            "grafana": settings.grafana.model_copy(update={"prometheus_url": "http://prom.internal:9090"}),
            "workers": settings.workers.model_copy(update={"silent_device_s": 120.0})})
        before = len(grafana.requests)
        report = push(changed, grafana.url, TOKEN, Lane.POSTGRESQL)
        assert report.created == []
        assert sorted(report.updated) == ["alert rule iotlm-check-device-silent", "dashboard iotlm-fleet",
                                          "dashboard iotlm-room", "datasource iotlm-prometheus"]
        writes = [r for r in grafana.requests[before:] if r["method"] in WRITES]
        assert len(writes) == 4
        assert grafana.datasources["iotlm-prometheus"]["url"] == "http://prom.internal:9090"
        # an update never resends (or clears) the database password
        assert all("secureJsonData" not in (w["body"] or {}) for w in writes)
        assert grafana.datasources["iotlm-postgres"]["secureJsonData"]["password"] == READER_PASSWORD

    def test_grafana_under_a_sub_path(self):
        # grafana-client 5.1.4 alone would call http://host/grafanaapi/...: the bug push works around
        assert GrafanaApi.from_url("http://127.0.0.1:3000/grafana", credential=TOKEN).client.url \
            == "http://127.0.0.1:3000/grafanaapi", "grafana-client joins sub-paths now: drop the workaround in push.connect"
        with GrafanaStandIn(prefix="/grafana") as grafana:
            report = push(grafana_settings(), grafana.url, TOKEN, Lane.POSTGRESQL)
            assert report.created and all(r["path"].startswith("/grafana/api/") for r in grafana.requests)
            # grafana-client's own option in the query string survives the fix
            again = push(grafana_settings(), grafana.url + "?verify=false", TOKEN, Lane.POSTGRESQL)
            assert again.created == again.updated == []


class TestRefusals:
    def test_a_wrong_token(self, grafana):
        with pytest.raises(PushError, match=r"refused the token \(401\)"):
            push(grafana_settings(), grafana.url, "not-the-token", Lane.POSTGRESQL)
        assert not grafana.datasources

    def test_grafana_answering_an_error(self):
        with GrafanaStandIn(fail=r"^/dashboards/") as grafana:
            with pytest.raises(PushError, match="answered: Server Error 500: database is locked"):
                push(grafana_settings(), grafana.url, TOKEN, Lane.POSTGRESQL)

    def test_nothing_listening(self):
        from deploy.process import free_ports

        with pytest.raises(PushError, match="cannot reach Grafana"):
            push(grafana_settings(), f"http://127.0.0.1:{free_ports()[0]}", TOKEN, Lane.POSTGRESQL)

    @pytest.mark.parametrize("content_type", ["text/html", "application/octet-stream"])
    def test_something_that_is_not_grafana(self, content_type):
        class Html(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = b"<html>welcome to nginx</html>"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with pytest.raises(PushError, match="does not answer like Grafana"):
                push(grafana_settings(), f"http://127.0.0.1:{server.server_address[1]}", TOKEN, Lane.POSTGRESQL)
        finally:
            server.shutdown()
            server.server_close()

    def test_cli_reports_a_refusal_without_a_traceback(self, grafana):
        result = CliRunner().invoke(app, ["grafana", "push", "--url", grafana.url, "--token", "wrong",
                                          "--lane", "postgresql"], env=READER_ENV)
        assert result.exit_code == 1 and "refused the token (401)" in " ".join(result.output.split())
        assert "Traceback" not in result.output

    def test_cli_push_twice(self, grafana):
        args = ["grafana", "push", "--url", grafana.url, "--lane", "postgresql", "--json"]
        first = CliRunner().invoke(app, args, env={"IOTLM_GRAFANA_TOKEN": TOKEN, **READER_ENV})
        second = CliRunner().invoke(app, args, env={"IOTLM_GRAFANA_TOKEN": TOKEN, **READER_ENV})
        assert first.exit_code == second.exit_code == 0, first.output
        assert json.loads(first.stdout)["created"]
        assert json.loads(second.stdout)["created"] == json.loads(second.stdout)["updated"] == []
