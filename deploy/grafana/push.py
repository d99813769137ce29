"""`iotlm grafana push`: upload data sources, folder, dashboards, alert rules, contact point and policy
tree to a running Grafana through grafana-client, idempotently.

Each object is read first and written only when a field we own differs (fields Grafana adds, such as
ids, versions and provenance, are ignored), so a second push with the same settings changes nothing.
Secrets cannot be read back, so the database password is sent only when the data source is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

from deploy.grafana import alerting
from deploy.grafana.dashboards import build, dashboards
from deploy.grafana.provisioning_tree import datasources
from iotlm.settings import Settings
from storage.lane import Lane


class PushError(Exception):
    """Why the push stopped, in words for the operator."""


@dataclass
class PushReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def check_target(url: str, token: str) -> None:
    """Refuse a malformed --url or an empty --token before anything is contacted."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PushError(f"--url must look like http(s)://host[:port][/path], got {url!r}")
    if not token:
        raise PushError("--token is empty: create a service account token in Grafana (role Admin)")


def connect(url: str, token: str, timeout_s: float) -> GrafanaApi:
    check_target(url, token)
    # grafana-client 5.1.4 appends "api" to the URL's path without a slash, so Grafana served under a
    # sub-path (http://host/grafana) becomes http://host/grafanaapi; a trailing slash avoids that.
    parsed = urlparse(url)
    url = urlunparse(parsed._replace(path=parsed.path.rstrip("/") + "/"))
    return GrafanaApi.from_url(url, credential=token, timeout=timeout_s)


def covers(current, desired) -> bool:
    """Whether `current` (what Grafana holds) already has every field of `desired` with its value."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and covers(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and all(
            covers(c, d) for c, d in zip(current, desired))
    return current == desired


class NotGrafana(ValueError):
    """The server answered, but not with Grafana's JSON."""


def _read(call):
    """call()'s JSON answer, or None when Grafana answers 404."""
    try:
        answer = call()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise
    # grafana-client hands text/* answers back as a string (an HTML page from a proxy, say).
    if not isinstance(answer, (dict, list)):
        raise NotGrafana(f"expected JSON, got {str(answer)[:80]!r}")
    return answer


class GrafanaSync:
    def __init__(self, api: GrafanaApi, settings: Settings, lane: Lane, server_version_num: int = 150000):
        self.api, self.settings, self.lane, self.version = api, settings, lane, server_version_num
        self.report = PushReport()

    def _note(self, what: str, current, desired, create, update) -> None:
        if current is None:
            create()
            self.report.created.append(what)
        elif covers(current, desired):
            self.report.unchanged.append(what)
        else:
            update()
            self.report.updated.append(what)

    def sync_datasources(self) -> None:
        from sqlalchemy.engine import make_url

        from storage.lane import url_from_settings

        ds_api = self.api.datasource
        reader = make_url(url_from_settings(self.settings, "timescale" if self.lane is Lane.TIMESCALEDB else "postgresql",
                                            "reader"))
        for ds in datasources(self.settings, self.lane, self.version, password=reader.password):
            # `editable` belongs to provisioning files only; the HTTP API has no such field
            ds = {k: v for k, v in ds.items() if k != "editable"}
            public = {k: v for k, v in ds.items() if k != "secureJsonData"}
            current = _read(lambda: ds_api.get_datasource_by_uid(ds["uid"]))
            self._note(f"datasource {ds['uid']}", current, public, lambda: ds_api.create_datasource(ds),
                       lambda: ds_api.update_datasource_by_uid(ds["uid"], public))

    def sync_folder(self) -> None:
        title = self.settings.grafana.folder
        current = _read(lambda: self.api.folder.get_folder(alerting.FOLDER_UID))
        self._note(f"folder {alerting.FOLDER_UID}", current, {"title": title},
                   lambda: self.api.folder.create_folder(title, uid=alerting.FOLDER_UID),
                   lambda: self.api.folder.update_folder(alerting.FOLDER_UID, title=title, overwrite=True))

    def sync_dashboards(self) -> None:
        for spec in dashboards(self.settings):
            board = build(spec)
            current = _read(lambda: self.api.dashboard.get_dashboard(spec.uid))
            self._note(f"dashboard {spec.uid}", current, {"dashboard": board, "meta": {"folderUid": alerting.FOLDER_UID}},
                       lambda: self._save_dashboard(board), lambda: self._save_dashboard(board))

    def _save_dashboard(self, board: dict) -> None:
        self.api.dashboard.update_dashboard({"dashboard": board, "folderUid": alerting.FOLDER_UID, "overwrite": True,
                                             "message": "iotlm grafana push"})

    def sync_alert_rules(self) -> None:
        prov = self.api.alertingprovisioning
        for rule in alerting.api_rules(self.settings):
            current = _read(lambda: prov.get_alertrule(rule["uid"]))
            self._note(f"alert rule {rule['uid']}", current, rule, lambda: prov.create_alertrule(rule),
                       lambda: prov.update_alertrule(rule["uid"], rule))
        for group in alerting.rule_groups(self.settings):
            current = _read(lambda: prov.get_rule_group(alerting.FOLDER_UID, group.name)) or {}
            if current.get("interval") != group.interval_s:
                prov.update_rule_group(alerting.FOLDER_UID, group.name, current | {"interval": group.interval_s})
                self.report.updated.append(f"rule group {group.name}")

    def sync_notifications(self) -> None:
        prov = self.api.alertingprovisioning
        cp = alerting.contact_point(self.settings)
        found = [c for c in _read(lambda: prov.get_contactpoints(name=cp["name"])) or [] if c.get("uid") == cp["uid"]]
        self._note(f"contact point {cp['uid']}", found[0] if found else None, cp,
                   lambda: prov.create_contactpoint(cp), lambda: prov.update_contactpoint(cp["uid"], cp))
        tree = alerting.policy_tree()
        current = _read(prov.get_notification_policy_tree)
        self._note("notification policies", current, tree, lambda: None,
                   lambda: prov.set_notification_policy_tree(tree))

    def run(self) -> PushReport:
        # Data sources and the folder first: dashboards and rules refer to them.
        for step in (self.sync_datasources, self.sync_folder, self.sync_dashboards, self.sync_alert_rules,
                     self.sync_notifications):
            step()
        return self.report


def push(settings: Settings, url: str, token: str, lane: Lane, server_version_num: int = 150000) -> PushReport:
    """Upload everything; raises PushError with a readable reason on any refusal or network failure."""
    api = connect(url, token, settings.grafana.request_timeout_s)
    try:
        return GrafanaSync(api, settings, lane, server_version_num).run()
    except GrafanaUnauthorizedError as exc:
        raise PushError(f"Grafana at {url} refused the token (401): check --token") from exc
    except GrafanaException as exc:
        if exc.status_code == 403:
            raise PushError("the token may not change this Grafana (403): give its service account the Admin role") from exc
        raise PushError(f"Grafana at {url} answered: {exc.message}") from exc
    # grafana-client wraps timeouts and HTTP errors but lets connection errors and undecodable answers through.
    except (NotGrafana, niquests.exceptions.JSONDecodeError) as exc:
        raise PushError(f"{url} does not answer like Grafana's HTTP API: {exc}") from exc
    except niquests.exceptions.RequestException as exc:
        raise PushError(f"cannot reach Grafana at {url}: {str(exc).splitlines()[0]}") from exc
