"""One query suite, run on both lanes: each answer must equal what the data says, computed here in
Python, so PostgreSQL (materialized views) and TimescaleDB (continuous aggregates) agree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import groupby

import pytest
from sqlalchemy.orm import Session

from storage import maintenance
from storage.queries import StorageQueries
from storage.schema import Label, ModelVersion
from storage.writer import (
    AlertRow, AlertWriter, EpisodeRow, EpisodeWriter, PredictionRow, PredictionWriter, RawFrameRow, RawFrameWriter,
)

HOP_S = 30  # sparse windows keep the PGlite lane quick; the queries do not depend on the hop
LABELS = ["walking", "sitting", "lying"]
DEVICE_ROOMS = {"dev-a": "room-1", "dev-b": "room-1", "dev-c": "room-2"}
pytestmark = pytest.mark.services


@dataclass
class Dataset:
    start: datetime
    end: datetime
    predictions: list[PredictionRow]
    episodes: list[EpisodeRow]
    alerts: list[AlertRow]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    predictions = []
    for d, (device, room) in enumerate(DEVICE_ROOMS.items()):
        for i in range(2 * 3600 // HOP_S):
            t = start + timedelta(seconds=i * HOP_S)
            label = LABELS[(i // 20 + d) % len(LABELS)]
            p = 0.5 + (i % 5) / 10
            dist = {lab: (p if lab == label else (1 - p) / 2) for lab in LABELS}
            predictions.append(PredictionRow(device, t, t + timedelta(seconds=2 * HOP_S), "m1", label, p, dist, room))
            if device == "dev-a" and i < 120:  # a candidate model shadowing the first hour
                predictions.append(PredictionRow(device, t, t + timedelta(seconds=2 * HOP_S), "m2", "standing",
                                                 0.7, {"standing": 0.7, "sitting": 0.3}, room))
    episodes = []
    for (device, _), run in groupby((r for r in predictions if r.model_version == "m1"),
                                    key=lambda r: (r.device_id, r.label)):
        run = list(run)
        episodes.append(EpisodeRow(device, run[0].window_start, run[-1].window_end, "m1", run[0].label, len(run),
                                   sum(r.probability for r in run) / len(run), run[0].room_id))
    alerts = [
        AlertRow("fall:dev-a:1", start + timedelta(minutes=10), "fall", "critical", "dev-a", "room-1",
                 ended_at=start + timedelta(minutes=12), payload={"impact_g": 3.1}),
        AlertRow("inactive:dev-c:1", start + timedelta(minutes=70), "inactivity", "warning", "dev-c", "room-2",
                 payload={"minutes": 45}),
        AlertRow("offline:dev-b:1", start + timedelta(minutes=100), "offline", "info", "dev-b", "room-1"),
    ]
    return Dataset(start, start + timedelta(hours=2), predictions, episodes, alerts)


@pytest.fixture(scope="module")
def queries(migrated, dataset) -> StorageQueries:
    _url, lane, engine = migrated
    assert PredictionWriter(engine).write(dataset.predictions) == len(dataset.predictions)
    EpisodeWriter(engine, lane).write(dataset.episodes)
    AlertWriter(engine, lane).write(dataset.alerts)
    with Session(engine) as session, session.begin():
        session.add_all([
            # promoted, then replaced by v2 (one promoted version per name: model_versions_one_promoted)
            ModelVersion(name="motion", version="v1", path="/m/v1", status="retired",
                         promoted_at=dataset.start - timedelta(days=2), metrics={"f1": 0.81}),
            ModelVersion(name="motion", version="v2", path="/m/v2", status="promoted",
                         promoted_at=dataset.start - timedelta(days=1), metrics={"f1": 0.86}),
            ModelVersion(name="motion", version="v3", path="/m/v3", status="candidate", metrics={"f1": 0.88}),
        ])
    maintenance.refresh_aggregates(engine)
    return StorageQueries(engine)


def _floor(t: datetime, minutes: int) -> datetime:
    return t - timedelta(minutes=t.minute % minutes, seconds=t.second, microseconds=t.microsecond)


def _expected_history(rows, minutes: int):
    groups = defaultdict(list)
    for r in rows:
        groups[(_floor(r.window_start, minutes), r.label)].append(r.probability)
    out = [(b, lab, len(ps), round(sum(ps) / len(ps), 6)) for (b, lab), ps in groups.items()]
    return sorted(out, key=lambda x: (x[0], -x[2], x[1]))


def _history(rows):
    return [(r["bucket"], r["label"], r["windows"], round(r["mean_probability"], 6)) for r in rows]


class TestHistory:
    def test_device_history_bucketed(self, queries, dataset):
        got = queries.device_history("dev-a", dataset.start, dataset.end, "15 minutes", model_version="m1")
        want = [r for r in dataset.predictions if r.device_id == "dev-a" and r.model_version == "m1"]
        assert _history(got) == _expected_history(want, 15)
        assert len({r["bucket"] for r in got}) == 8

    def test_device_history_all_models(self, queries, dataset):
        got = queries.device_history("dev-a", dataset.start, dataset.start + timedelta(hours=1), "1 hour")
        assert {r["label"]: r["windows"] for r in got}["standing"] == 120

    def test_room_history(self, queries, dataset):
        got = queries.room_history("room-1", dataset.start, dataset.end, "30 minutes", model_version="m1")
        want = [r for r in dataset.predictions if r.room_id == "room-1" and r.model_version == "m1"]
        assert _history(got) == _expected_history(want, 30)


class TestAggregates:
    def test_activity_minutes_per_room_hour(self, queries, dataset):
        got = queries.activity_minutes("room-1", dataset.start, dataset.end, hop_s=HOP_S, model_version="m1")
        counts = defaultdict(int)
        for r in dataset.predictions:
            if r.room_id == "room-1" and r.model_version == "m1":
                counts[(_floor(r.window_start, 60), r.label)] += 1
        want = sorted((b, lab, n, round(n * HOP_S / 60, 2)) for (b, lab), n in counts.items())
        assert [(r["bucket"], r["label"], r["windows"], float(r["minutes"])) for r in got] == want
        assert sum(float(r["minutes"]) for r in got) == 2 * 2 * 60  # two devices, two hours

    def test_device_uptime(self, queries, dataset):
        got = queries.device_uptime("dev-a", dataset.start, dataset.end, hop_s=HOP_S)
        assert [(r["bucket"], r["windows"], float(r["minutes"])) for r in got] == [
            (dataset.start, 120, 60.0), (dataset.start + timedelta(hours=1), 120, 60.0)]
        # The last window starts one hop before the end of the data and lasts two hops.
        assert got[1]["last_window_end"] == dataset.end + timedelta(seconds=HOP_S)


class TestEpisodesAlertsModels:
    def test_episodes_by_device_and_label(self, queries, dataset):
        got = queries.episodes(dataset.start, dataset.end, device_id="dev-b")
        want = [e for e in dataset.episodes if e.device_id == "dev-b"]
        assert [(e["started_at"], e["ended_at"], e["label"], e["windows"]) for e in got] == [
            (e.started_at, e.ended_at, e.label, e.windows) for e in want]
        lying = queries.episodes(dataset.start, dataset.end, room_id="room-2", label="lying")
        assert lying and all(e["device_id"] == "dev-c" and e["label"] == "lying" for e in lying)

    def test_growing_episode_keeps_latest_version(self, queries, dataset, migrated):
        first = dataset.episodes[0]
        grown = EpisodeRow(first.device_id, first.started_at, first.ended_at + timedelta(minutes=5),
                           first.model_version, first.label, first.windows + 10, first.mean_probability, first.room_id)
        assert EpisodeWriter(migrated[2], migrated[1]).write([grown]) == 1
        got = queries.episodes(first.started_at, first.ended_at, device_id=first.device_id)
        assert (got[0]["ended_at"], got[0]["windows"]) == (grown.ended_at, grown.windows)

    def test_alerts(self, queries, dataset):
        everything = queries.alerts(dataset.start, dataset.end)
        assert [a["dedup_key"] for a in everything] == ["offline:dev-b:1", "inactive:dev-c:1", "fall:dev-a:1"]
        assert [a["dedup_key"] for a in queries.alerts(dataset.start, dataset.end, room_id="room-1", open_only=True)] \
            == ["offline:dev-b:1"]
        assert queries.alerts(dataset.start, dataset.end, kind="fall")[0]["payload"] == {"impact_g": 3.1}

    def test_latest_model_version(self, queries):
        assert queries.latest_model_version("motion")["version"] == "v2"
        assert queries.latest_model_version(status="candidate")["version"] == "v3"
        assert queries.latest_model_version("unknown") is None


class TestFineTuningInput:
    def test_labeled_frames_are_the_frames_inside_new_label_ranges(self, queries, dataset, migrated):
        _url, lane, engine = migrated
        frames = [RawFrameRow("dev-b", dataset.start + timedelta(seconds=10 * i), i, f"frame-{i}".encode())
                  for i in range(30)]
        RawFrameWriter(engine, lane).write(frames)
        labeled_at = datetime.now(timezone.utc)
        with Session(engine) as session, session.begin():
            session.add_all([
                Label(device_id="dev-b", starts_at=dataset.start + timedelta(seconds=50),
                      ends_at=dataset.start + timedelta(seconds=100), label="falling", labeled_by="nurse",
                      source="manual", labeled_at=labeled_at),
                Label(device_id="dev-b", starts_at=dataset.start, ends_at=dataset.start + timedelta(seconds=30),
                      label="sitting", labeled_by="import", source="import",
                      labeled_at=labeled_at - timedelta(days=30)),  # already used by an earlier fine-tune
            ])
        got = queries.labeled_frames(labeled_at - timedelta(minutes=1))
        assert [(f["seq"], f["payload"], f["label"]) for f in got] == [
            (i, f"frame-{i}".encode(), "falling") for i in range(5, 10)]
        assert len(queries.labeled_frames(labeled_at - timedelta(days=31), device_id="dev-b", limit=4)) == 4
