"""The dashboards, as code: what each panel asks the database (or Prometheus) and how it is drawn.

Every SQL panel declares the columns it returns (`SqlPanel.columns`), so the tests can run it on both
storage lanes and check that the answer has the shape the visualization needs. Panels read only the
tables of `storage/schema.py` and the hourly aggregates of migration 0002; the few numbers they need
(the hop that turns windows into minutes, the silence that means "offline") come from the settings.

`build(spec)` turns a `DashboardSpec` into Grafana's dashboard JSON with grafana-foundation-sdk's
typed builders (see deploy/grafana/README.md for why that library).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import barchart, dashboard as db, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import BarAlignment, GraphDrawStyle, StackingMode
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef, DataTransformerConfig, VariableOption, VariableRefresh, VariableSort,
)

from iotlm.settings import Settings
from storage.schema import SEVERITIES

POSTGRES_TYPE = "grafana-postgresql-datasource"
POSTGRES_UID = "iotlm-postgres"
PROMETHEUS_TYPE = "prometheus"
PROMETHEUS_UID = "iotlm-prometheus"
PG = DataSourceRef(type_val=POSTGRES_TYPE, uid=POSTGRES_UID)
PROM = DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)

# Column kinds a panel expects back (the tests map them onto the Python values psycopg returns).
TIME, NUMBER, TEXT = "time", "number", "text"
SIZES = {"stat": (4, 6), "timeseries": (8, 12), "bars": (8, 12), "table": (8, 12), "statetimeline": (8, 24),
         "barchart": (8, 12)}
# "bars": stacked bars over time, one per bucket starting at its time (a time series panel drawn as bars:
# Grafana's bar chart wants one frame, a time-series query with a metric column gives one per series).
BUILDERS = {"stat": stat.Panel, "timeseries": timeseries.Panel, "bars": timeseries.Panel, "table": table.Panel,
            "statetimeline": statetimeline.Panel, "barchart": barchart.Panel}


class RawModel(Builder[Dataquery]):
    """A JSON object passed through the SDK's builders as it is, for what the SDK does not model: queries of
    the PostgreSQL plugin, SQL annotation targets (its AnnotationTarget only knows Grafana's built-in
    source) and alerting expressions."""

    def __init__(self, payload: dict):
        self.payload = payload

    def build(self) -> RawModel:
        return self

    def to_json(self) -> dict:
        return self.payload


def sql_query(sql: str, fmt: str = "table", ref_id: str = "A") -> RawModel:
    """A raw-SQL query of Grafana's PostgreSQL data source; `fmt` is "table" or "time_series"."""
    return RawModel({"refId": ref_id, "datasource": PG.to_json(), "editorMode": "code", "rawQuery": True,
                     "format": fmt, "rawSql": sql})


@dataclass(frozen=True)
class SqlPanel:
    title: str
    kind: str  # a key of BUILDERS
    sql: str
    columns: tuple[tuple[str, str], ...]  # (name, TIME | NUMBER | TEXT), in order
    fmt: str = "table"  # or "time_series": Grafana then needs a `time` column
    unit: str | None = None
    description: str = ""
    partition_by: str | None = None  # long table -> one row per value in a state timeline


@dataclass(frozen=True)
class PromPanel:
    title: str
    kind: str
    expr: str
    legend: str = ""
    unit: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Annotation:
    name: str
    sql: str  # columns: time, timeend (optional), text, tags
    color: str


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    sql: str  # __value / __text columns


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[SqlPanel | PromPanel, ...]
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = field(default=("iotlm",))

    @property
    def sql_panels(self) -> list[SqlPanel]:
        return [p for p in self.panels if isinstance(p, SqlPanel)]


# Every variable's "All" is this custom value, so a filter can tell "no filter" from a list of ids: with All
# everywhere, rows of devices and rooms not (yet) in the registry count too, and nothing is enumerated.
ALL = "'*'"
# Hourly aggregate rows overlapping the range: a bucket that starts before the range still counts.
HOURS_IN_RANGE = "bucket > CAST($__timeFrom() AS timestamptz) - INTERVAL '1 hour' AND bucket <= $__timeTo()"
_LEVEL_OF = {"site": "b.site_id", "building": "b.id", "room": "r.id"}


def every(*names: str) -> str:
    """SQL: these variables are all on All."""
    return " AND ".join(f"{ALL} IN (${n})" for n in names)


def chosen(name: str, column: str) -> str:
    """SQL: `column` is among the variable's values (or the variable is on All)."""
    return f"({ALL} IN (${name}) OR {column} IN (${name}))"


def registered_rooms(levels: tuple[str, ...]) -> str:
    """SQL: ids of the registry's rooms inside the selected site / building / room."""
    return ("SELECT r.id FROM rooms r JOIN buildings b ON b.id = r.building_id WHERE "
            + " AND ".join(chosen(level, _LEVEL_OF[level]) for level in levels))


def in_location(levels: tuple[str, ...], column: str = "room_id") -> str:
    """SQL: the row's room is in the selection; with every level on All, any row (unplaced devices too)."""
    return f"(({every(*levels)}) OR {column} IN ({registered_rooms(levels)}))"


def device_in_location(levels: tuple[str, ...]) -> str:
    """The same for tables that only know the device: its room in the registry."""
    return (f"(({every(*levels)}) OR device_id IN (SELECT d.id FROM devices d "
            f"WHERE d.room_id IN ({registered_rooms(levels)})))")


# The location hierarchy of storage/schema.py; each level lists what the levels above select, plus (with
# those on All) the rooms and devices seen in the data that the registry does not know yet.
SITE = Variable("site", "Site", "SELECT id AS __value, name AS __text FROM sites ORDER BY name")
BUILDING = Variable("building", "Building", "SELECT id AS __value, name AS __text FROM buildings "
                    f"WHERE {chosen('site', 'site_id')} ORDER BY name")
ROOM = Variable("room", "Room",
                f"SELECT r.id AS __value, r.name AS __text FROM rooms r WHERE r.id IN ({registered_rooms(('site', 'building'))}) "
                "UNION SELECT DISTINCT room_id, room_id FROM activity_per_room_hourly "
                f"WHERE {every('site', 'building')} AND {HOURS_IN_RANGE} AND room_id IS NOT NULL "
                "AND room_id NOT IN (SELECT id FROM rooms) ORDER BY 2")
DEVICE = Variable("device", "Device",
                  "SELECT id AS __value FROM devices "
                  f"WHERE room_id IN ({registered_rooms(('site', 'building', 'room'))}) "
                  "UNION SELECT DISTINCT device_id FROM device_windows_hourly "
                  f"WHERE {every('site', 'building', 'room')} AND {HOURS_IN_RANGE} "
                  "AND device_id NOT IN (SELECT id FROM devices WHERE room_id IS NOT NULL) ORDER BY 1")
LOCATION = (SITE, BUILDING, ROOM)
FLEET_LEVELS = ("site", "building")
ROOM_LEVELS = ("site", "building", "room")
IN_BUILDING = in_location(FLEET_LEVELS)
DEVICE_IN_BUILDING = device_in_location(FLEET_LEVELS)
IN_ROOM = in_location(ROOM_LEVELS)
DEVICE_IN_ROOM = device_in_location(ROOM_LEVELS)
THE_DEVICE = chosen("device", "device_id")


def fleet(settings: Settings) -> DashboardSpec:
    w = settings.workers
    return DashboardSpec(
        "iotlm-fleet", "IoT-LM / Fleet overview",
        "Devices, stream throughput, dead letters, lag, models and worker health across the fleet.",
        (SITE, BUILDING),
        (
            SqlPanel("Devices online", "stat",
                     "SELECT count(DISTINCT device_id) AS devices FROM window_predictions "
                     f"WHERE window_end > CAST($__timeTo() AS timestamptz) - INTERVAL '{w.silent_device_s:g} seconds' "
                     f"AND window_start <= $__timeTo() AND {IN_BUILDING}",
                     (("devices", NUMBER),),
                     description=f"Devices with a window ending in the last {w.silent_device_s:g} s of the range "
                                 "(workers.silent_device_s)."),
            SqlPanel("Devices seen", "stat",
                     f"SELECT count(DISTINCT device_id) AS devices FROM window_predictions "
                     f"WHERE $__timeFilter(window_start) AND {IN_BUILDING}",
                     (("devices", NUMBER),)),
            PromPanel("Frames/s", "stat", "sum(rate(iotlm_worker_frames_total[$__rate_interval]))", unit="ops"),
            PromPanel("Windows/s", "stat", "sum(rate(iotlm_worker_windows_total[$__rate_interval]))", unit="ops"),
            PromPanel("Frames/s per worker", "timeseries",
                      "sum by (worker) (rate(iotlm_worker_frames_total[$__rate_interval]))", "{{worker}}", "ops"),
            PromPanel("Windows/s per worker", "timeseries",
                      "sum by (worker) (rate(iotlm_worker_windows_total[$__rate_interval]))", "{{worker}}", "ops"),
            PromPanel("Dead letters/s by reason", "timeseries",
                      "sum by (code) (rate(iotlm_worker_dlq_total[$__rate_interval]))", "{{code}}", "ops"),
            PromPanel("Consumer lag", "timeseries", "sum by (worker) (iotlm_worker_consumer_lag)", "{{worker}}",
                      "short", "Records behind the end of the worker's partitions."),
            PromPanel("Workers up", "stat", 'sum(up{job="iotlm-workers"})',
                      description="Workers Prometheus scrapes successfully (job iotlm-workers)."),
            PromPanel("End-to-end latency p99", "timeseries",
                      "histogram_quantile(0.99, sum by (le) (rate(iotlm_worker_end_to_end_seconds_bucket[$__rate_interval])))",
                      "p99", "s", "Frame on Kafka to result written."),
            SqlPanel("Windows stored per minute", "timeseries",
                     "SELECT $__timeGroupAlias(window_start, 1m), count(*) AS windows FROM window_predictions "
                     f"WHERE $__timeFilter(window_start) AND {IN_BUILDING} GROUP BY 1 ORDER BY 1",
                     (("time", TIME), ("windows", NUMBER)), fmt="time_series"),
            SqlPanel("Model version serving", "table",
                     "SELECT model_version, coalesce((SELECT m.status FROM model_versions m WHERE m.version = model_version "
                     "ORDER BY m.id DESC LIMIT 1), 'unregistered') AS registry_status, "
                     "count(DISTINCT device_id) AS devices, count(*) AS windows, max(window_end) AS last_seen "
                     f"FROM window_predictions WHERE $__timeFilter(window_start) AND {IN_BUILDING} "
                     "GROUP BY model_version ORDER BY last_seen DESC",
                     (("model_version", TEXT), ("registry_status", TEXT), ("devices", NUMBER), ("windows", NUMBER),
                      ("last_seen", TIME)),
                     description="Versions that produced windows in the range, with their status in model_versions."),
            SqlPanel("Streaming minutes per hour by device", "bars",
                     f"SELECT bucket AS time, device_id AS metric, round(CAST(max(windows) * {w.hop_s:g} / 60 AS numeric), 1) "
                     f"AS minutes FROM device_windows_hourly WHERE {HOURS_IN_RANGE} AND {DEVICE_IN_BUILDING} "
                     "GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("minutes", NUMBER)), fmt="time_series", unit="m",
                     description="From the hourly aggregate: windows x hop (workers.hop_s)."),
        ),
    )


def room(settings: Settings) -> DashboardSpec:
    w = settings.workers
    return DashboardSpec(
        "iotlm-room", "IoT-LM / Building and room",
        "What happens in each room: activity over time, minutes per activity, who is there now.",
        LOCATION,
        (
            SqlPanel("Activity timeline per room", "statetimeline",
                     "SELECT $__timeGroupAlias(window_start, $__interval), room_id AS room, "
                     "mode() WITHIN GROUP (ORDER BY label) AS activity FROM window_predictions "
                     f"WHERE $__timeFilter(window_start) AND {IN_ROOM} GROUP BY 1, 2 ORDER BY 1, 2",
                     (("time", TIME), ("room", TEXT), ("activity", TEXT)), partition_by="room",
                     description="The most frequent activity of each interval, over every device in the room."),
            SqlPanel("Activity minutes per hour", "bars",
                     f"SELECT bucket AS time, label AS metric, round(CAST(sum(windows) * {w.hop_s:g} / 60 AS numeric), 2) "
                     f"AS minutes FROM activity_per_room_hourly WHERE {HOURS_IN_RANGE} AND {IN_ROOM} "
                     "GROUP BY 1, 2 ORDER BY 1, 2",
                     (("time", TIME), ("metric", TEXT), ("minutes", NUMBER)), fmt="time_series", unit="m",
                     description="From the hourly aggregate activity_per_room_hourly: windows x hop."),
            SqlPanel("Occupancy now", "stat",
                     "SELECT count(DISTINCT device_id) AS devices FROM window_predictions "
                     f"WHERE window_end > CAST($__timeTo() AS timestamptz) - INTERVAL '{w.silent_device_s:g} seconds' "
                     f"AND window_start <= $__timeTo() AND {IN_ROOM}",
                     (("devices", NUMBER),), description="Devices streaming from the selected rooms."),
            SqlPanel("Occupancy per room", "timeseries",
                     "SELECT $__timeGroupAlias(window_start, $__interval), room_id AS metric, "
                     "count(DISTINCT device_id) AS devices FROM window_predictions "
                     f"WHERE $__timeFilter(window_start) AND {IN_ROOM} GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("devices", NUMBER)), fmt="time_series"),
            SqlPanel("Room state", "table",
                     "SELECT DISTINCT ON (device_id) device_id, room_id AS room, label AS activity, "
                     "probability AS confidence, window_end AS seen_at FROM window_predictions "
                     f"WHERE $__timeFilter(window_start) AND {IN_ROOM} ORDER BY device_id, window_end DESC",
                     (("device_id", TEXT), ("room", TEXT), ("activity", TEXT), ("confidence", NUMBER),
                      ("seen_at", TIME)),
                     description="Each device's latest activity in the range."),
        ),
        (EPISODES_IN_ROOM, ALERTS_IN_ROOM),
    )


def device(settings: Settings) -> DashboardSpec:
    w = settings.workers
    return DashboardSpec(
        "iotlm-device", "IoT-LM / Device detail",
        "One device: its latest state, episodes, confidence and the frames it sends.",
        (*LOCATION, DEVICE),
        (
            SqlPanel("Latest state", "table",
                     "SELECT DISTINCT ON (device_id) device_id, label AS activity, probability AS confidence, "
                     "model_version, window_end AS seen_at FROM window_predictions "
                     f"WHERE {THE_DEVICE} AND {IN_ROOM} AND $__timeFilter(window_start) ORDER BY device_id, window_end DESC",
                     (("device_id", TEXT), ("activity", TEXT), ("confidence", NUMBER), ("model_version", TEXT),
                      ("seen_at", TIME))),
            SqlPanel("Episode timeline", "statetimeline",
                     "SELECT started_at AS time, device_id AS device, label AS activity FROM activity_episodes "
                     f"WHERE {THE_DEVICE} AND {IN_ROOM} AND $__timeFilter(started_at) ORDER BY 1, 2",
                     (("time", TIME), ("device", TEXT), ("activity", TEXT)), partition_by="device"),
            SqlPanel("Confidence", "timeseries",
                     "SELECT $__timeGroupAlias(window_start, $__interval), device_id AS metric, "
                     "avg(probability) AS confidence FROM window_predictions "
                     f"WHERE {THE_DEVICE} AND {IN_ROOM} AND $__timeFilter(window_start) GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("confidence", NUMBER)), fmt="time_series",
                     unit="percentunit"),
            SqlPanel("Raw frames received", "timeseries",
                     "SELECT $__timeGroupAlias(t0, $__interval), device_id AS metric, count(*) AS frames "
                     f"FROM raw_frames WHERE {THE_DEVICE} AND {DEVICE_IN_ROOM} AND $__timeFilter(t0) GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("frames", NUMBER)), fmt="time_series",
                     description="Frames stored in raw_frames (the signal itself is msgpack: see `iotlm db` to decode)."),
            SqlPanel("Raw frame size", "table",
                     "SELECT device_id, count(*) AS frames, round(avg(length(payload))) AS mean_bytes, "
                     "min(t0) AS first_frame, max(t0) AS last_frame FROM raw_frames "
                     f"WHERE {THE_DEVICE} AND {DEVICE_IN_ROOM} AND $__timeFilter(t0) GROUP BY device_id ORDER BY device_id",
                     (("device_id", TEXT), ("frames", NUMBER), ("mean_bytes", NUMBER), ("first_frame", TIME),
                      ("last_frame", TIME))),
            SqlPanel("Episodes", "table",
                     "SELECT started_at, ended_at, device_id, label AS activity, windows, "
                     "round(CAST(mean_probability AS numeric), 3) AS confidence, model_version FROM activity_episodes "
                     f"WHERE {THE_DEVICE} AND {IN_ROOM} AND $__timeFilter(started_at) ORDER BY started_at DESC LIMIT 500",
                     (("started_at", TIME), ("ended_at", TIME), ("device_id", TEXT), ("activity", TEXT),
                      ("windows", NUMBER), ("confidence", NUMBER), ("model_version", TEXT))),
            SqlPanel("Streaming minutes per hour", "bars",
                     f"SELECT bucket AS time, device_id AS metric, round(CAST(max(windows) * {w.hop_s:g} / 60 AS numeric), 1) "
                     f"AS minutes FROM device_windows_hourly WHERE {THE_DEVICE} AND {DEVICE_IN_ROOM} AND {HOURS_IN_RANGE} "
                     "GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("minutes", NUMBER)), fmt="time_series", unit="m"),
        ),
        (EPISODES_OF_DEVICE, ALERTS_OF_DEVICE),
    )


SEVERITY = Variable("severity", "Severity", "SELECT unnest(ARRAY[{}]) AS __value".format(
    ", ".join(f"'{s}'" for s in reversed(SEVERITIES))))
ALERT_FILTER = f"$__timeFilter(started_at) AND {chosen('severity', 'severity')} AND {IN_ROOM}"
ALARM_FILTER = f"$__timeFilter(first_seen_at) AND {chosen('severity', 'severity')} AND {IN_ROOM}"
SECONDS_TO_ACK = "extract(epoch FROM acknowledged_at - first_seen_at)"


def alerts(settings: Settings) -> DashboardSpec:
    return DashboardSpec(
        "iotlm-alerts", "IoT-LM / Alerts and alarms",
        "The stream workers' alerts (stream_workers/alerts.py) and the alarms operators handle (admin API): "
        "open now, history, by rule and severity, time to acknowledge.",
        (*LOCATION, SEVERITY),
        (
            SqlPanel("Open alarms", "stat",
                     f"SELECT count(*) AS open_alarms FROM alarms WHERE status <> 'cleared' AND {ALARM_FILTER}",
                     (("open_alarms", NUMBER),),
                     description="Alarms not cleared yet (active or acknowledged): one per subject and rule."),
            SqlPanel("Open alarms, oldest first", "table",
                     "SELECT first_seen_at, last_seen_at, rule, severity, status, subject, room_id AS room, assignee, "
                     f"occurrences, message FROM alarms WHERE status <> 'cleared' AND {ALARM_FILTER} "
                     "ORDER BY first_seen_at LIMIT 500",
                     (("first_seen_at", TIME), ("last_seen_at", TIME), ("rule", TEXT), ("severity", TEXT),
                      ("status", TEXT), ("subject", TEXT), ("room", TEXT), ("assignee", TEXT), ("occurrences", NUMBER),
                      ("message", TEXT))),
            SqlPanel("Time to acknowledge", "table",
                     f"SELECT rule, count(*) AS acknowledged, percentile_cont(0.5) WITHIN GROUP (ORDER BY {SECONDS_TO_ACK}) "
                     f"AS median_s, max({SECONDS_TO_ACK}) AS max_s FROM alarms "
                     f"WHERE acknowledged_at IS NOT NULL AND {ALARM_FILTER} GROUP BY rule ORDER BY rule",
                     (("rule", TEXT), ("acknowledged", NUMBER), ("median_s", NUMBER), ("max_s", NUMBER)),
                     description="From an alarm's first alert to its acknowledgement (POST /v1/alarms/{id}/ack)."),
            SqlPanel("Alarms by rule and severity", "barchart",
                     "SELECT rule || ' / ' || severity AS rule_severity, count(*) AS alarms FROM alarms "
                     f"WHERE {ALARM_FILTER} GROUP BY 1 ORDER BY 2 DESC",
                     (("rule_severity", TEXT), ("alarms", NUMBER))),
            SqlPanel("Open alerts", "stat",
                     f"SELECT count(*) AS open_alerts FROM alerts WHERE ended_at IS NULL AND {ALERT_FILTER}",
                     (("open_alerts", NUMBER),)),
            SqlPanel("Open alerts by rule", "table",
                     "SELECT started_at, kind AS rule, severity, device_id, room_id AS room, "
                     "payload->>'message' AS message FROM alerts "
                     f"WHERE ended_at IS NULL AND {ALERT_FILTER} ORDER BY started_at DESC LIMIT 500",
                     (("started_at", TIME), ("rule", TEXT), ("severity", TEXT), ("device_id", TEXT), ("room", TEXT),
                      ("message", TEXT))),
            SqlPanel("Alerts over time by rule", "timeseries",
                     "SELECT $__timeGroupAlias(started_at, $__interval), kind AS metric, count(*) AS alerts "
                     f"FROM alerts WHERE {ALERT_FILTER} GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("alerts", NUMBER)), fmt="time_series"),
            SqlPanel("By rule and severity", "barchart",
                     f"SELECT kind || ' / ' || severity AS rule_severity, count(*) AS alerts FROM alerts "
                     f"WHERE {ALERT_FILTER} GROUP BY 1 ORDER BY 2 DESC",
                     (("rule_severity", TEXT), ("alerts", NUMBER))),
            SqlPanel("Time to resolve", "table",
                     "SELECT kind AS rule, count(*) AS resolved, "
                     "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - started_at)) AS median_s, "
                     "max(extract(epoch FROM ended_at - started_at)) AS max_s FROM alerts "
                     f"WHERE ended_at IS NOT NULL AND {ALERT_FILTER} GROUP BY kind ORDER BY kind",
                     (("rule", TEXT), ("resolved", NUMBER), ("median_s", NUMBER), ("max_s", NUMBER)),
                     description="Started to ended (time to acknowledge is on the alarms above)."),
            SqlPanel("Alert history", "table",
                     "SELECT started_at, ended_at, kind AS rule, severity, device_id, room_id AS room, "
                     f"payload->>'message' AS message FROM alerts WHERE {ALERT_FILTER} ORDER BY started_at DESC LIMIT 1000",
                     (("started_at", TIME), ("ended_at", TIME), ("rule", TEXT), ("severity", TEXT),
                      ("device_id", TEXT), ("room", TEXT), ("message", TEXT))),
        ),
        (ALERTS_IN_ROOM,),
    )


# Accuracy needs ground truth: windows inside a label range of the same device (table labels).
LABELED = ("FROM window_predictions p JOIN labels l ON l.device_id = p.device_id "
           "AND p.window_start >= l.starts_at AND p.window_start < l.ends_at WHERE $__timeFilter(p.window_start)")
CORRECT = "CASE WHEN p.label = l.label THEN 1.0 ELSE 0.0 END"


def models(settings: Settings) -> DashboardSpec:
    return DashboardSpec(
        "iotlm-models", "IoT-LM / Model quality",
        "Live accuracy where labels exist, per model version; confidence; promotions, rollbacks, fine-tunes.",
        (),
        (
            SqlPanel("Live accuracy per model version", "timeseries",
                     f"SELECT $__timeGroupAlias(p.window_start, $__interval), p.model_version AS metric, "
                     f"avg({CORRECT}) AS accuracy {LABELED} GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("accuracy", NUMBER)), fmt="time_series", unit="percentunit"),
            SqlPanel("Accuracy per model version", "table",
                     f"SELECT p.model_version, count(*) AS labeled_windows, avg({CORRECT}) AS accuracy, "
                     f"avg(p.probability) AS mean_confidence {LABELED} GROUP BY 1 ORDER BY 1",
                     (("model_version", TEXT), ("labeled_windows", NUMBER), ("accuracy", NUMBER),
                      ("mean_confidence", NUMBER))),
            SqlPanel("Confusion on labeled windows", "table",
                     f"SELECT l.label AS truth, p.label AS predicted, count(*) AS windows {LABELED} "
                     "GROUP BY 1, 2 ORDER BY 1, 3 DESC",
                     (("truth", TEXT), ("predicted", TEXT), ("windows", NUMBER))),
            SqlPanel("Mean confidence per model version", "timeseries",
                     "SELECT $__timeGroupAlias(window_start, $__interval), model_version AS metric, "
                     "avg(probability) AS confidence FROM window_predictions WHERE $__timeFilter(window_start) "
                     "GROUP BY 1, 2 ORDER BY 1",
                     (("time", TIME), ("metric", TEXT), ("confidence", NUMBER)), fmt="time_series",
                     unit="percentunit"),
            SqlPanel("Promotions and rollbacks", "table",
                     "SELECT coalesce(promoted_at, created_at) AS at, name, version, status, "
                     "CASE WHEN status = 'retired' AND promoted_at IS NOT NULL THEN 'rolled back' "
                     "WHEN status = 'promoted' THEN 'promoted' ELSE status END AS event, "
                     "CAST(metrics AS text) AS metrics FROM model_versions ORDER BY 1 DESC",
                     (("at", TIME), ("name", TEXT), ("version", TEXT), ("status", TEXT), ("event", TEXT),
                      ("metrics", TEXT))),
            SqlPanel("Fine-tune jobs", "table",
                     "SELECT j.created_at, j.status, b.version AS base_version, r.version AS result_version, "
                     "j.finished_at, j.error FROM finetune_jobs j JOIN model_versions b ON b.id = j.base_model_version_id "
                     "LEFT JOIN model_versions r ON r.id = j.result_model_version_id "
                     "WHERE $__timeFilter(j.created_at) ORDER BY j.created_at DESC",
                     (("created_at", TIME), ("status", TEXT), ("base_version", TEXT), ("result_version", TEXT),
                      ("finished_at", TIME), ("error", TEXT))),
        ),
        (PROMOTIONS,),
    )


EPISODES_IN_ROOM = Annotation(
    "Episodes", "SELECT started_at AS time, ended_at AS timeend, label || ' on ' || device_id AS text, "
    f"label AS tags FROM activity_episodes WHERE $__timeFilter(started_at) AND {IN_ROOM}", "green")
EPISODES_OF_DEVICE = Annotation(
    "Episodes", "SELECT started_at AS time, ended_at AS timeend, label || ' on ' || device_id AS text, "
    f"label AS tags FROM activity_episodes WHERE $__timeFilter(started_at) AND {THE_DEVICE} AND {IN_ROOM}", "green")
ALERTS_IN_ROOM = Annotation(
    "Alerts", "SELECT started_at AS time, ended_at AS timeend, kind || ': ' || coalesce(payload->>'message', '') AS text, "
    "kind || ',' || severity AS tags FROM alerts WHERE $__timeFilter(started_at) "
    f"AND {IN_ROOM}", "red")
ALERTS_OF_DEVICE = Annotation(
    "Alerts", "SELECT started_at AS time, ended_at AS timeend, kind || ': ' || coalesce(payload->>'message', '') AS text, "
    f"kind || ',' || severity AS tags FROM alerts WHERE $__timeFilter(started_at) AND {THE_DEVICE} AND {IN_ROOM}",
    "red")
PROMOTIONS = Annotation(
    "Promotions", "SELECT promoted_at AS time, name || ' ' || version || ' promoted' AS text, 'promotion' AS tags "
    "FROM model_versions WHERE promoted_at IS NOT NULL AND $__timeFilter(promoted_at)", "blue")
ANNOTATION_COLUMNS = (("time", TIME), ("text", TEXT), ("tags", TEXT))


def dashboards(settings: Settings) -> list[DashboardSpec]:
    return [fleet(settings), room(settings), device(settings), alerts(settings), models(settings)]


def _panel(spec: SqlPanel | PromPanel, panel_id: int):
    h, w = SIZES[spec.kind]
    panel = BUILDERS[spec.kind]().id(panel_id).title(spec.title).height(h).span(w)
    if spec.description:
        panel = panel.description(spec.description)
    if spec.unit:
        panel = panel.unit(spec.unit)
    if spec.kind == "bars":
        panel = (panel.draw_style(GraphDrawStyle.BARS).bar_alignment(BarAlignment.AFTER).fill_opacity(80)
                 .stacking(StackingConfig().mode(StackingMode.NORMAL)))
    if isinstance(spec, PromPanel):
        query = prometheus.Dataquery().ref_id("A").expr(spec.expr).datasource(PROM)
        if spec.legend:
            query = query.legend_format(spec.legend)
        return panel.datasource(PROM).with_target(query)
    panel = panel.datasource(PG).with_target(sql_query(spec.sql, spec.fmt))
    if spec.partition_by:
        panel = panel.with_transformation(DataTransformerConfig(
            id_val="partitionByValues", options={"fields": [spec.partition_by], "keepFields": False}))
    return panel


def build(spec: DashboardSpec) -> dict:
    """Grafana's dashboard JSON for `spec` (a plain dict, ready for a file or the HTTP API)."""
    board = (db.Dashboard(spec.title).uid(spec.uid).description(spec.description).tags(list(spec.tags))
             .time("now-6h", "now").refresh("30s").timezone("browser").editable())
    for var in spec.variables:
        board = board.with_variable(
            db.QueryVariable(var.name).label(var.label).datasource(PG).query(var.sql).multi(True)
            .include_all(True).all_value(ALL).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .current(VariableOption(selected=True, text="All", value="$__all")))
    for note in spec.annotations:
        board = board.annotation(
            db.AnnotationQuery().name(note.name).datasource(PG).enable(True).icon_color(note.color)
            .target(sql_query(note.sql, ref_id="Anno")))
    for panel_id, panel in enumerate(spec.panels, start=1):
        board = board.with_panel(_panel(panel, panel_id))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))

