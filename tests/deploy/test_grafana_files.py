"""The exported provisioning tree, checked the way Grafana reads it (no services needed).

Grafana itself cannot run on these machines, so the structural rules it enforces at load time are
checked here: schema version, unique uids, every data source reference resolving to a provisioned data
source, every alert rule's condition and expressions naming queries that exist.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deploy.grafana import alerting
from deploy.grafana.dashboards import ALL, build, dashboards
from deploy.grafana.macros import MacroError, interpolate
from deploy.grafana.provisioning_tree import export
from iotlm.cli import app
from iotlm.settings import PROJECT_ROOT, Settings
from storage.lane import Lane

EXPRESSIONS = "__expr__"
BOARDS = "provisioning/dashboards/iotlm"
COMMITTED_PATH = "/etc/grafana/provisioning/dashboards/iotlm"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 3, 1, 16, 30, tzinfo=timezone.utc)


def _refs(node, found: list) -> list:
    """Every `datasource` object anywhere in a dashboard."""
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


@pytest.fixture(scope="module", params=[Lane.POSTGRESQL, Lane.TIMESCALEDB])
def tree(request, tmp_path_factory):
    settings = Settings()
    settings.workers.room_hours.append({"room": "kitchen", "activity": "lying", "start_hour": 22, "end_hour": 6})
    out = tmp_path_factory.mktemp(request.param.value)
    files = export(settings, out, request.param)
    return request.param, out, files


def _load(out: Path):
    datasources = yaml.safe_load((out / "provisioning/datasources/iotlm.yaml").read_text())
    provider = yaml.safe_load((out / "provisioning/dashboards/iotlm.yaml").read_text())
    rules = yaml.safe_load((out / "provisioning/alerting/iotlm.yaml").read_text())
    boards = [json.loads(p.read_text()) for p in sorted((out / BOARDS).glob("*.json"))]
    return datasources, provider, rules, boards


class TestProvisioningTree:
    def test_data_sources_carry_the_lane_and_no_password(self, tree):
        lane, out, _files = tree
        datasources, *_ = _load(out)
        assert datasources["apiVersion"] == 1
        by_type = {d["type"]: d for d in datasources["datasources"]}
        pg = by_type["grafana-postgresql-datasource"]
        assert pg["jsonData"]["timescaledb"] is (lane is Lane.TIMESCALEDB)
        assert pg["url"] == ("127.0.0.1:15433" if lane is Lane.TIMESCALEDB else "127.0.0.1:15432")
        assert pg["secureJsonData"]["password"] == "${IOTLM_GRAFANA_DB_PASSWORD}"
        assert by_type["prometheus"]["url"].startswith("http")
        assert len({d["uid"] for d in datasources["datasources"]}) == 2

    def test_dashboard_provider_points_at_the_exported_dashboards(self, tree):
        _lane, out, _files = tree
        _ds, provider, _rules, boards = _load(out)
        (p,) = provider["providers"]
        assert p["type"] == "file" and Path(p["options"]["path"]) == (out / BOARDS).resolve()
        assert len(list(Path(p["options"]["path"]).glob("*.json"))) == len(boards)

    def test_dashboards_have_schema_version_unique_uids_and_resolving_data_sources(self, tree):
        _lane, out, _files = tree
        datasources, _p, _r, boards = _load(out)
        provisioned = {(d["type"], d["uid"]) for d in datasources["datasources"]}
        assert len(boards) >= 5
        assert len({b["uid"] for b in boards}) == len(boards)
        sql_panels = 0
        for board in boards:
            assert board["schemaVersion"] >= 39 and board["title"] and len(board["uid"]) <= 40
            ids = [p["id"] for p in board["panels"]]
            assert len(set(ids)) == len(ids), board["uid"]
            for ref in _refs(board, []):
                assert (ref["type"], ref["uid"]) in provisioned, (board["uid"], ref)
            for panel in board["panels"]:
                assert panel["targets"], panel["title"]
                assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
                for target in panel["targets"]:
                    if "rawSql" in target:
                        sql_panels += 1
                        assert target["rawQuery"] and target["format"] in ("table", "time_series")
                    else:
                        assert target["expr"] and target["refId"]
            names = [v["name"] for v in board["templating"].get("list", [])]
            for panel in board["panels"]:
                for target in panel["targets"]:
                    used = set(re.findall(r"\$(\w+)", target.get("rawSql", "")))
                    assert {u for u in used if not u.startswith("__")} <= set(names), (board["uid"], panel["title"])
        assert sql_panels >= 15

    def test_variables_cover_site_building_room_device(self, tree):
        *_, boards = _load(tree[1])
        names = {v["name"] for b in boards for v in b["templating"].get("list", [])}
        assert {"site", "building", "room", "device"} <= names

    def test_alert_rules_reference_queries_that_exist(self, tree):
        _lane, out, _files = tree
        datasources, _p, rules, _b = _load(out)
        uids = {d["uid"] for d in datasources["datasources"]} | {EXPRESSIONS}
        assert rules["apiVersion"] == 1
        all_rules = [r for g in rules["groups"] for r in g["rules"]]
        assert len({r["uid"] for r in all_rules}) == len(all_rules) >= 10
        for group in rules["groups"]:
            assert group["folder"] and re.fullmatch(r"\d+[smh]", group["interval"])
        for rule in all_rules:
            refs = {q["refId"] for q in rule["data"]}
            assert rule["condition"] in refs, rule["uid"]
            for query in rule["data"]:
                assert query["datasourceUid"] in uids, rule["uid"]
                assert query["model"]["refId"] == query["refId"]
                if query["datasourceUid"] == EXPRESSIONS:
                    assert query["model"]["expression"] in refs - {query["refId"]}, rule["uid"]
                else:
                    assert query["relativeTimeRange"]["from"] > query["relativeTimeRange"]["to"] == 0
            assert rule["labels"]["severity"] in ("info", "warning", "critical")
            assert rule["noDataState"] in ("OK", "NoData", "Alerting") and rule["execErrState"] in ("OK", "Error", "Alerting")
        receivers = {c["name"] for c in rules["contactPoints"]}
        (policy,) = rules["policies"]
        assert policy["receiver"] in receivers and all(r["receiver"] in receivers for r in policy["routes"])

    def test_room_hours_rules_come_from_the_worker_settings(self, tree):
        *_, rules, _b = _load(tree[1])
        titles = [r["title"] for g in rules["groups"] for r in g["rules"]]
        assert "lying in kitchen outside 22-06h" in titles


def test_everything_reads_back_through_grafanas_typed_models():
    """The SDK's models are generated from Grafana's schemas: what they parse and write back unchanged
    has Grafana's structure. Only annotation targets are skipped: the SDK models the built-in source's only."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import alerting as alerting_models, dashboard as dashboard_models

    def round_trip(model, data: dict) -> dict:
        return json.loads(json.dumps(model.from_json(data), cls=JSONEncoder))

    settings = Settings()
    for spec in dashboards(settings):
        board = build(spec)
        back = round_trip(dashboard_models.Dashboard, board)
        for note in board["annotations"].get("list", []):
            note.pop("target")
        for note in back["annotations"].get("list", []):
            note.pop("target")
        assert back == board, spec.uid
    for rule in alerting.api_rules(settings):
        assert round_trip(alerting_models.Rule, rule) == rule, rule["uid"]
    assert round_trip(alerting_models.ContactPoint, alerting.contact_point(settings)) == alerting.contact_point(settings)
    assert round_trip(alerting_models.NotificationPolicy, alerting.policy_tree()) == alerting.policy_tree()


def test_grafana_rules_mirror_the_worker_rule_engine():
    source = (PROJECT_ROOT / "stream_workers/alerts.py").read_text()
    raised = dict(re.findall(r'rule="(\w+)", severity="(\w+)"', source))
    assert raised == alerting.WORKER_RULES


def test_committed_tree_is_what_export_writes(tmp_path):
    """deploy/grafana/provisioning is generated: regenerate it with the command in the message."""
    committed = PROJECT_ROOT / "deploy/grafana"
    export(Settings(), tmp_path, Lane.POSTGRESQL, dashboards_path=COMMITTED_PATH)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh and all((committed / p).read_text() == (tmp_path / p).read_text() for p in fresh), \
        f"run: iotlm grafana export deploy/grafana --lane postgresql --dashboards-path {COMMITTED_PATH}"


class TestMacros:
    def test_time_filter_and_group_as_grafana_expands_them(self):
        sql = "SELECT $__timeGroupAlias(t, $__interval), x FROM f WHERE $__timeFilter(t) AND a < $__timeTo()"
        plain = interpolate(sql, time_from=T0, time_to=T1, variables={}, timescaledb=False, interval="5m")
        assert plain == ("SELECT floor(extract(epoch from t)/300)*300 AS \"time\", x FROM f WHERE t BETWEEN "
                         "'2026-03-01T10:00:00.000000Z' AND '2026-03-01T16:30:00.000000Z' "
                         "AND a < '2026-03-01T16:30:00.000000Z'")
        ts = interpolate(sql, time_from=T0, time_to=T1, variables={}, timescaledb=True, interval="30s")
        assert ts.startswith("SELECT time_bucket('30.000s',t) AS \"time\"")

    def test_multi_value_variables_are_quoted_lists_and_the_custom_all_value_is_raw(self):
        sql = interpolate("WHERE room_id IN ($room) AND d = ${device} AND k IN ($room_kind)", time_from=T0,
                          time_to=T1, variables={"room": ["a", "o'b"], "device": "dev-1", "room_kind": ["x"]},
                          timescaledb=False)
        assert sql == "WHERE room_id IN ('a','o''b') AND d = dev-1 AND k IN ('x')"
        assert interpolate("('*' IN ($room) OR r IN ($room))", time_from=T0, time_to=T1, variables={"room": ALL},
                           timescaledb=False) == "('*' IN ('*') OR r IN ('*'))"

    def test_every_variable_has_the_custom_all_value(self):
        for spec in dashboards(Settings()):
            for var in build(spec)["templating"].get("list", []):
                assert var["includeAll"] and var["allValue"] == ALL and var["current"]["value"] == "$__all"

    def test_bad_macros_are_refused(self):
        for sql in ("$__timeGroup(t)", "$__timeFilter()", "$__nope(t)", "$__timeGroup(t, soon)"):
            with pytest.raises(MacroError):
                interpolate(sql, time_from=T0, time_to=T1, variables={}, timescaledb=False)


class TestCli:
    def test_export_writes_the_tree(self, tmp_path):
        result = CliRunner().invoke(app, ["grafana", "export", str(tmp_path / "g"), "--lane", "timescale", "--json"])
        assert result.exit_code == 0, result.output
        files = json.loads(result.stdout)["files"]
        assert len(files) == 3 + len(dashboards(Settings())) and all(Path(f).is_file() for f in files)

    @pytest.mark.parametrize("args,message", [
        (["export", "{tmp}/g", "--lane", "mysql"], "unknown --lane"),
        (["export", "{tmp}/file", "--lane", "postgresql"], "is not a folder"),
        (["push", "--url", "ftp://grafana", "--token", "t", "--lane", "postgresql"], "--url must look like"),
        (["push", "--url", "http://127.0.0.1:3000", "--token", "", "--lane", "postgresql"], "--token is empty"),
        (["preview", "{tmp}/p", "--hours", "0"], "--hours must be positive"),
    ])
    def test_bad_input_is_a_clear_error(self, tmp_path, args, message):
        (tmp_path / "file").write_text("x")
        result = CliRunner().invoke(app, ["grafana", *[a.format(tmp=tmp_path) for a in args]])
        assert result.exit_code == 1
        assert message in " ".join(result.output.split()) and "Traceback" not in result.output
