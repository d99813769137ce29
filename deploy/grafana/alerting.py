"""Alert rules as code, in Grafana's alerting model, mirroring the workers' own rule engine.

The stream workers raise five rules (stream_workers/alerts.py) and store each alert in `alerts`.
Operators can be told either by the workers (the Redis alert stream) or by Grafana; these rules make
the second choice complete:

- `iotlm-platform-alerts`: one rule per worker rule, firing per device while an alert of that rule
  started in the last ten minutes, with the worker's severity. Fall, sensor fault and no movement
  need the raw signal, so Grafana can only relay them.
- `iotlm-data-checks`: the conditions Grafana can evaluate itself from stored results, with the
  thresholds of the same settings the workers use (device silent, activity outside allowed hours).
- `iotlm-worker-health`: worker metrics in Prometheus (scrape down, consumer lag, dead letters).

Rules route through one contact point (a webhook, `grafana.alert_webhook_url`) and a policy tree that
sends critical alerts at once. `rule_groups`, `contact_points` and `policy_tree` give the HTTP API's
shapes (grafana-foundation-sdk builders); `provisioning_file` gives the file Grafana reads at start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders import alerting as al, prometheus
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.alerting import RelativeTimeRange

from deploy.grafana.dashboards import POSTGRES_UID, PROM, PROMETHEUS_UID, RawModel, sql_query
from iotlm.settings import Settings

FOLDER_UID = "iotlm"
CONTACT_POINT = "iotlm-webhook"
EXPRESSION_UID = "__expr__"  # Grafana's server-side expressions (threshold, reduce, math)
# The rules of stream_workers/alerts.py and their severities (a test keeps the two in step).
WORKER_RULES = {"fall": "critical", "sensor_fault": "warning", "no_movement": "warning",
                "room_hours": "warning", "device_silent": "warning"}


@dataclass(frozen=True)
class RuleGroupSpec:
    name: str
    interval_s: int
    rules: tuple  # al.Rule builders


def _threshold(op: str, value: float) -> al.Query:
    model = {"refId": "C", "type": "threshold", "expression": "A",
             "datasource": {"type": EXPRESSION_UID, "uid": EXPRESSION_UID},
             "conditions": [{"type": "query", "evaluator": {"type": op, "params": [value]}}]}
    return al.Query("C").datasource_uid(EXPRESSION_UID).model(RawModel(model))


def _sql_rule(uid: str, title: str, sql: str, lookback_s: int, op: str, value: float, severity: str,
              summary: str, rule: str, for_: str = "0s") -> al.Rule:
    query = (al.Query("A").datasource_uid(POSTGRES_UID).model(sql_query(sql))
             .relative_time_range(RelativeTimeRange(from_val=lookback_s, to=0)))
    return (al.Rule(title).uid(uid).condition("C").with_query(query).with_query(_threshold(op, value))
            .for_val(for_).no_data_state("OK").exec_err_state("Error")
            .labels({"severity": severity, "rule": rule, "source": "iotlm"})
            .annotations({"summary": summary}))


def _prom_rule(uid: str, title: str, expr: str, op: str, value: float, severity: str, summary: str,
               for_: str) -> al.Rule:
    model = prometheus.Dataquery().ref_id("A").expr(expr).instant().datasource(PROM)
    query = (al.Query("A").datasource_uid(PROMETHEUS_UID).model(model)
             .relative_time_range(RelativeTimeRange(from_val=600, to=0)))
    return (al.Rule(title).uid(uid).condition("C").with_query(query).with_query(_threshold(op, value))
            .for_val(for_).no_data_state("NoData").exec_err_state("Error")
            .labels({"severity": severity, "rule": uid.removeprefix("iotlm-"), "source": "iotlm-workers"})
            .annotations({"summary": summary}))


def _allowed_hours_sql(start: int, end: int) -> str:
    hour = "extract(hour FROM window_start AT TIME ZONE 'UTC')"
    if start <= end:
        return f"({hour} >= {start} AND {hour} < {end})"
    return f"({hour} >= {start} OR {hour} < {end})"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def rule_groups(settings: Settings) -> list[RuleGroupSpec]:
    w, g = settings.workers, settings.grafana
    relayed = tuple(
        _sql_rule(f"iotlm-relay-{rule}", f"Worker alert: {rule}",
                  "SELECT coalesce(device_id, '-') AS device_id, CAST(count(*) AS float8) AS alerts FROM alerts "
                  f"WHERE kind = '{rule}' AND $__timeFilter(started_at) GROUP BY 1",
                  600, "gt", 0, severity, f"{rule} on {{{{ $labels.device_id }}}} (raised by the stream workers)", rule)
        for rule, severity in WORKER_RULES.items())
    checks = [_sql_rule(
        "iotlm-check-device-silent", "Device silent",
        "SELECT device_id, CAST(extract(epoch FROM CAST($__timeTo() AS timestamptz) - max(window_end)) AS float8) "
        "AS silent_s FROM window_predictions WHERE $__timeFilter(window_start) GROUP BY device_id",
        3600, "gt", w.silent_device_s, WORKER_RULES["device_silent"],
        f"{{{{ $labels.device_id }}}} sent no window for over {w.silent_device_s:g} s", "device_silent")]
    for i, allowed in enumerate(w.room_hours):
        start, end = int(allowed["start_hour"]), int(allowed["end_hour"])
        checks.append(_sql_rule(
            f"iotlm-check-room-hours-{i}", f"{allowed['activity']} in {allowed['room']} outside {start:02d}-{end:02d}h",
            "SELECT device_id, CAST(count(*) AS float8) AS windows FROM window_predictions "
            f"WHERE room_id = {_quote(allowed['room'])} AND label = {_quote(allowed['activity'])} "
            f"AND NOT {_allowed_hours_sql(start, end)} AND $__timeFilter(window_start) GROUP BY device_id",
            600, "gt", 0, WORKER_RULES["room_hours"],
            f"{allowed['activity']} in {allowed['room']} outside {start:02d}-{end:02d}h UTC", "room_hours"))
    health = (
        _prom_rule("iotlm-worker-down", "Worker down", 'up{job="iotlm-workers"}', "lt", 1, "critical",
                   "Prometheus cannot scrape worker {{ $labels.instance }}", "2m"),
        _prom_rule("iotlm-consumer-lag", "Consumer lag high", "max by (worker) (iotlm_worker_consumer_lag)", "gt",
                   g.lag_alert_records, "warning",
                   f"worker {{{{ $labels.worker }}}} is over {g.lag_alert_records} records behind", "5m"),
        _prom_rule("iotlm-dead-letters", "Frames dead-lettered",
                   "sum by (code) (rate(iotlm_worker_dlq_total[5m]))", "gt", 0, "warning",
                   "frames go to the dead-letter topic ({{ $labels.code }})", "5m"),
    )
    return [RuleGroupSpec("iotlm-platform-alerts", 60, relayed), RuleGroupSpec("iotlm-data-checks", 60, tuple(checks)),
            RuleGroupSpec("iotlm-worker-health", 60, health)]


def _plain(obj) -> dict:
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def api_rules(settings: Settings) -> list[dict]:
    """Each rule as POST /api/v1/provisioning/alert-rules takes it."""
    return [_plain(rule.folder_uid(FOLDER_UID).rule_group(group.name).org_id(1).build())
            for group in rule_groups(settings) for rule in group.rules]


def contact_point(settings: Settings) -> dict:
    return _plain(al.ContactPoint().uid(CONTACT_POINT).name(CONTACT_POINT).type("webhook")
                  .settings({"url": settings.grafana.alert_webhook_url, "httpMethod": "POST"})
                  .disable_resolve_message(False).build())


def policy_tree() -> dict:
    """Everything to the webhook, grouped per rule; critical alerts without waiting, repeated more often."""
    critical = (al.NotificationPolicy().receiver(CONTACT_POINT).object_matchers([["severity", "=", "critical"]])
                .group_wait("0s").group_interval("1m").repeat_interval("15m"))
    return _plain(al.NotificationPolicy().receiver(CONTACT_POINT).group_by(["grafana_folder", "alertname"])
                  .group_wait("30s").group_interval("5m").repeat_interval("4h").routes([critical]).build())


def provisioning_file(settings: Settings) -> dict:
    """provisioning/alerting/iotlm.yaml: rule groups, the contact point and the policy tree."""
    groups = []
    for group in rule_groups(settings):
        rules = []
        for rule in group.rules:
            body = _plain(rule.build())
            for api_only in ("folderUID", "ruleGroup", "orgID"):
                body.pop(api_only, None)
            rules.append(body | {"isPaused": False})
        groups.append({"orgId": 1, "name": group.name, "folder": settings.grafana.folder,
                       "interval": f"{group.interval_s}s", "rules": rules})
    cp = contact_point(settings)
    receiver = {k: cp[k] for k in ("uid", "type", "settings", "disableResolveMessage")}
    return {"apiVersion": 1, "groups": groups,
            "contactPoints": [{"orgId": 1, "name": cp["name"], "receivers": [receiver]}],
            "policies": [{"orgId": 1, **policy_tree()}]}


def sql_rules(settings: Settings) -> list[tuple[str, str, int]]:
    """(uid, rawSql, lookback seconds) of every rule that queries the database."""
    out = []
    for rule in api_rules(settings):
        for q in rule["data"]:
            if q["datasourceUid"] == POSTGRES_UID:
                out.append((rule["uid"], q["model"]["rawSql"], q["relativeTimeRange"]["from"]))
    return out

