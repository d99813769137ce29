"""Every SQL the dashboards and alert rules send, run on both storage lanes against a real replayed run.

Seed, per lane: three HAPT test subjects replayed through Kafka into a real stream worker, which writes
predictions, episodes, raw frames and its own alerts (a room-hours rule is configured so it raises
some) through the storage writers. What no worker writes yet is added the way its owner would: the
location registry and the model registry with the ORM, ground-truth labels from the replay's own
truth, a resolved fall alert through the AlertWriter, and an acknowledged alarm per alert (admin.alarms). Each panel's SQL then goes through Grafana's
variable and macro substitution (deploy/grafana/macros.py) and must return rows with the declared
columns and types.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

from deploy.grafana import alerting
from deploy.grafana.dashboards import ANNOTATION_COLUMNS, NUMBER, TEXT, TIME, dashboards
from deploy.grafana.macros import interpolate
from deploy.grafana.preview import options, render, run_panel, selection
from iotlm.settings import Settings
from storage import maintenance, migrate
from storage.lane import open_engine
from storage.schema import Building, Device, FinetuneJob, Label, ModelVersion, Room, Site
from storage.writer import AlertRow, AlertWriter, PredictionRow, PredictionWriter

pytestmark = pytest.mark.services

DEVICES = 3
FRAMES = 240  # seconds of signal per device
ROOMS = {"kitchen": "b-north", "bedroom": "b-north", "lab": "b-south"}
# a device streaming from a room that nobody has registered yet (the registry lags the fleet)
UNREGISTERED_DEVICE, UNREGISTERED_ROOM = "dev-annex", "annex"
NULLABLE = {"error"}  # a fine-tune job that succeeded has no error
PYTHON_TYPES = {TIME: (datetime,), NUMBER: (Decimal, float, int), TEXT: (str,)}
# Without TimescaleDB, $__timeGroup gives epoch seconds, which Grafana takes as the `time` column too.
EPOCH = (Decimal, float, int)


def _run_worker(settings, done, timeout_s: float):
    from stream_workers.app import StreamWorker

    async def main():
        stop = asyncio.Event()
        worker = StreamWorker(settings, 0, serve_metrics=False)
        run = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + timeout_s
        while not run.done() and time.monotonic() < deadline and not done(worker):
            await asyncio.sleep(0.5)
        stop.set()
        return worker, await run

    return asyncio.run(main())


def _truth_ranges(frames, labels: list[str]):
    """Label rows from the replay's truth: runs of frames whose samples are all one basic activity."""
    ranges = []
    for frame, truth in frames:
        ids = set(truth.labels.tolist())
        if len(ids) != 1 or not 1 <= next(iter(ids)) <= 6:
            continue
        name = labels[next(iter(ids)) - 1]
        start = datetime.fromtimestamp(frame.t0, timezone.utc)
        end = start + timedelta(seconds=frame.duration_s)
        if ranges and ranges[-1][2] == name and ranges[-1][0] == frame.device_id and ranges[-1][1][1] == start:
            ranges[-1] = (frame.device_id, (ranges[-1][1][0], end), name)
        else:
            ranges.append((frame.device_id, (start, end), name))
    return ranges


@pytest.fixture(scope="module", params=["postgresql", pytest.param("timescaledb", marks=pytest.mark.timescale)])
def replayed(request, settings, stack):
    """(settings, engine, timescaledb flag, replay start, replay end) with a replayed run stored."""
    from deploy.process import free_port_block
    from deploy.topics import admin_client, ensure_topics, topic_partitions
    from ingest.producer import DeviceProducer
    from ingest.simulate import hapt_devices

    tag = uuid.uuid4().hex[:8]
    admin = None
    if request.param == "postgresql":
        db = f"grafana_panels_{tag}"
        admin = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {db}"))
        url = make_url(settings.database_url).set(database=db).render_as_string(hide_password=False)
        stack_update, lane = {"postgres_db": db}, "postgresql"
    else:
        request.getfixturevalue("timescale")
        url = settings.timescale_url
        migrate.downgrade(url)
        stack_update, lane = {}, "timescale"
    migrate.upgrade(url, lane=lane)

    devices = hapt_devices(DEVICES)
    rooms = dict(zip((d for d, _ in devices), ROOMS))
    private = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"test.{tag}.frames", "dlq_topic": f"test.{tag}.dlq", "alerts_topic": f"test.{tag}.alerts",
            "control_topic": f"test.{tag}.control", "partitions": 2}),
        "workers": settings.workers.model_copy(update={
            "consumer_group": f"test-{tag}", "metrics_port": free_port_block(4), "model_key": f"test:{tag}:model",
            "commit_interval_s": 0.5, "device_rooms": rooms,
            # walking is never allowed in the kitchen: the worker's room_hours rule fires there
            "room_hours": [{"room": "kitchen", "activity": "walking", "start_hour": 0, "end_hour": 0}]}),
        "stack": settings.stack.model_copy(update=stack_update),
        "storage": settings.storage.model_copy(update={"lane": lane}),
    })
    ensure_topics(private)
    # two minutes before an hour boundary, an hour ago or more: the hourly aggregates get two buckets
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1, minutes=2)
    t0 = start.timestamp() // private.workers.hop_s * private.workers.hop_s
    frames = [signal.frame(device_id, seq, t0 + seq, 1.0) for device_id, signal in devices for seq in range(FRAMES)]
    frames = [f for f in frames if f is not None]
    with DeviceProducer(private) as producer:
        for frame, truth in frames:
            producer.send(frame, truth=truth)

    last = {"n": -1, "since": time.monotonic()}

    def settled(worker) -> bool:  # results stop growing for 4 s once there are some
        n = worker.totals.results
        if n != last["n"]:
            last.update(n=n, since=time.monotonic())
        return n > 0 and time.monotonic() - last["since"] > 4

    worker, totals = _run_worker(private, settled, timeout_s=180)
    assert totals.results > DEVICES * 30, totals

    engine = open_engine(url, single_connection=True)
    end = datetime.fromtimestamp(t0 + FRAMES, timezone.utc)
    with engine.connect() as conn:
        serving = conn.execute(text("SELECT min(model_version) FROM window_predictions")).scalar_one()
    with Session(engine) as session, session.begin():
        # no relationships are mapped, so each level is flushed before the one that refers to it
        for level in ([Site(id="site-1", name="Riverside campus")],
                      [Building(id="b-north", site_id="site-1", name="North"),
                       Building(id="b-south", site_id="site-1", name="South")],
                      [Room(id=r, building_id=b, name=r.title(), floor=1) for r, b in ROOMS.items()],
                      [Device(id=d, placement="waist", room_id=r) for d, r in rooms.items()]):
            session.add_all(level)
            session.flush()
        session.add_all([Label(device_id=d, starts_at=a, ends_at=b, label=name, labeled_by="hapt-replay",
                               source="import") for d, (a, b), name in _truth_ranges(frames, private.workers.labels)])
        v0 = ModelVersion(name="motion", version="motion-v0", path="/m/v0", status="retired", metrics={"f1": 0.7},
                          promoted_at=start - timedelta(days=3), created_at=start - timedelta(days=4))
        v1 = ModelVersion(name="motion", version=serving, path="/m/v1", status="promoted", metrics={"f1": 0.62},
                          promoted_at=start + timedelta(minutes=1), created_at=start - timedelta(days=1))
        session.add_all([v0, v1])
        session.flush()
        session.add(FinetuneJob(base_model_version_id=v0.id, result_model_version_id=v1.id, status="succeeded",
                                created_at=start + timedelta(seconds=30), finished_at=start + timedelta(minutes=1)))
    with engine.connect() as conn:
        copied = conn.execute(text(
            "SELECT window_start, window_end, model_version, label, probability, distribution FROM window_predictions "
            "WHERE device_id = :d ORDER BY window_start DESC LIMIT 40"), {"d": devices[0][0]}).all()
    PredictionWriter(engine).write([PredictionRow(UNREGISTERED_DEVICE, *row[:6], room_id=UNREGISTERED_ROOM)
                                    for row in copied])
    fall_at = start + timedelta(seconds=20)
    AlertWriter(engine).write([AlertRow(f"fall:{devices[0][0]}:{fall_at.timestamp():.2f}", fall_at, "fall", "critical",
                                        devices[0][0], rooms[devices[0][0]], ended_at=fall_at + timedelta(minutes=3),
                                        payload={"message": "fall: free fall then an impact of 3.1 g"})])
    # every stored alert as the admin API's alarm keeper turns it into an alarm, each acknowledged
    from admin.alarms import acknowledge, raise_alarm

    with engine.begin() as conn:
        stored = conn.execute(text("SELECT dedup_key, started_at, kind, severity, device_id, room_id, "
                                   "payload->>'message' FROM alerts")).all()
        for key, at, kind, severity, device, room, message in stored:
            outcome, alarm = raise_alarm(conn, {"rule": kind, "dedup_key": key, "at": at.timestamp(),
                                                "severity": severity, "device_id": device, "room": room,
                                                "message": message or ""})
            if outcome == "opened":
                acknowledge(conn, alarm["id"], None, assignee="nurse kim")
    maintenance.refresh_aggregates(engine)
    yield private, engine, lane == "timescale", start, end
    engine.dispose()
    kafka_admin = admin_client(private, client_id="iotlm-test-cleanup")
    try:
        kafka_admin.delete_topics(list(topic_partitions(private)))
    finally:
        kafka_admin.close()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()
    else:
        migrate.downgrade(url)


def _kitchen(spec, settings) -> dict[str, list[str]]:
    """A narrow selection: the kitchen, its building and site, its device, warnings and worse."""
    device = next(d for d, r in settings.workers.device_rooms.items() if r == "kitchen")
    picked = {"site": ["site-1"], "building": [ROOMS["kitchen"]], "room": ["kitchen"], "device": [device],
              "severity": ["warning", "critical"]}
    return {v.name: picked[v.name] for v in spec.variables}


def _range(replayed):
    _settings, _engine, _ts, start, end = replayed
    return start - timedelta(minutes=5), end + timedelta(minutes=5)


def _check_shape(title: str, columns: list[str], rows: list[tuple], expected) -> None:
    assert columns == [name for name, _ in expected], title
    assert rows, f"{title}: no rows"
    for name, kind in expected:
        i = columns.index(name)
        values = [r[i] for r in rows if r[i] is not None]
        assert values or name in NULLABLE, f"{title}: {name} is always NULL"
        allowed = PYTHON_TYPES[kind] + (EPOCH if (kind, name) == (TIME, "time") else ())
        bad = [v for v in values if not isinstance(v, allowed)]
        assert not bad, f"{title}: {name} should be {kind}, got {type(bad[0]).__name__}"


PANELS = [(spec.uid, panel.title) for spec in dashboards(Settings()) for panel in spec.sql_panels]


class TestPanelsOnBothLanes:
    @pytest.mark.parametrize("uid,title", PANELS, ids=[f"{u}:{t}" for u, t in PANELS])
    @pytest.mark.parametrize("pick", ["all", "kitchen"])
    def test_panel_sql_returns_the_columns_its_visualization_needs(self, replayed, uid, title, pick):
        settings, engine, timescaledb, _start, _end = replayed
        spec = next(s for s in dashboards(settings) if s.uid == uid)
        panel = next(p for p in spec.sql_panels if p.title == title)
        time_from, time_to = _range(replayed)
        selected = _kitchen(spec, settings) if pick == "kitchen" else None
        columns, rows = run_panel(engine, spec, panel, time_from=time_from, time_to=time_to, timescaledb=timescaledb,
                                  interval="30s", selected=selected)
        _check_shape(title, columns, rows, panel.columns)

    def test_variables_list_the_registry_level_by_level_and_what_it_does_not_know(self, replayed):
        settings, engine, timescaledb, *_ = replayed
        spec = next(s for s in dashboards(settings) if s.uid == "iotlm-device")
        time_from, time_to = _range(replayed)

        def offered(name, **selected):
            return sorted(options(engine, spec, name, time_from=time_from, time_to=time_to, timescaledb=timescaledb,
                                  selected=selected))

        assert offered("site") == ["site-1"] and offered("building") == ["b-north", "b-south"]
        # with site and building on All, the room and device seen only in the data are offered too
        assert offered("room") == sorted([*ROOMS, UNREGISTERED_ROOM])
        assert offered("device") == sorted([*settings.workers.device_rooms, UNREGISTERED_DEVICE])
        assert offered("room", building=["b-north"]) == sorted(r for r, b in ROOMS.items() if b == "b-north")
        assert offered("device", room=["lab"]) == [d for d, r in settings.workers.device_rooms.items() if r == "lab"]
        assert offered("building", site=["elsewhere"]) == []

    def test_annotations_return_time_text_and_tags(self, replayed):
        settings, engine, timescaledb, *_ = replayed
        time_from, time_to = _range(replayed)
        checked = 0
        for spec in dashboards(settings):
            for note in spec.annotations:
                sql = interpolate(note.sql, time_from=time_from, time_to=time_to, variables=selection(spec),
                                  timescaledb=timescaledb)
                with engine.connect() as conn:
                    result = conn.execute(text(sql))
                    columns, rows = list(result.keys()), [tuple(r) for r in result]
                wanted = list(ANNOTATION_COLUMNS)
                if "timeend" in columns:
                    wanted.insert(1, ("timeend", TIME))
                _check_shape(f"{spec.uid} annotation {note.name}", columns, rows, wanted)
                checked += 1
        assert checked == sum(len(s.annotations) for s in dashboards(settings))

    def test_numbers_match_the_stored_run(self, replayed):
        settings, engine, timescaledb, _start, end = replayed
        fleet = next(s for s in dashboards(settings) if s.uid == "iotlm-fleet")
        room = next(s for s in dashboards(settings) if s.uid == "iotlm-room")
        time_from, _ = _range(replayed)
        by_title = {p.title: p for p in fleet.sql_panels + room.sql_panels}
        # the range ends with the replay: every device was still streaming
        _, rows = run_panel(engine, fleet, by_title["Devices online"], time_from=time_from, time_to=end,
                            timescaledb=timescaledb)
        assert rows == [(DEVICES + 1,)]  # the unregistered device counts with everything on All
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM window_predictions")).scalar_one()
            kitchen = conn.execute(text("SELECT count(*) FROM window_predictions WHERE room_id = 'kitchen'")).scalar_one()
        _, rows = run_panel(engine, fleet, by_title["Windows stored per minute"], time_from=time_from,
                            time_to=end + timedelta(minutes=5), timescaledb=timescaledb)
        assert sum(r[1] for r in rows) == stored
        # the data source's timescaledb flag decides what $__timeGroup becomes: time_bucket or epoch arithmetic
        assert all(isinstance(r[0], datetime if timescaledb else Decimal) for r in rows)
        _, rows = run_panel(engine, room, by_title["Activity minutes per hour"], time_from=time_from,
                            time_to=end + timedelta(hours=1), timescaledb=timescaledb)
        assert float(sum(r[2] for r in rows)) == pytest.approx(stored * settings.workers.hop_s / 60, abs=0.1)
        assert kitchen > 0
        # one building selected: only the device in its room (the lab)
        south = {"building": ["b-south"]}
        lab_device = next(d for d, r in settings.workers.device_rooms.items() if ROOMS[r] == "b-south")
        _, rows = run_panel(engine, fleet, by_title["Devices seen"], time_from=time_from, time_to=end,
                            timescaledb=timescaledb, selected=south)
        assert rows == [(1,)]
        _, rows = run_panel(engine, fleet, by_title["Streaming minutes per hour by device"], time_from=time_from,
                            time_to=end, timescaledb=timescaledb, selected=south)
        assert {r[1] for r in rows} == {lab_device}


class TestAlertRulesOnBothLanes:
    def test_every_sql_rule_runs_and_counts_what_the_workers_stored(self, replayed):
        settings, engine, timescaledb, *_ = replayed
        time_from, time_to = _range(replayed)
        rules = alerting.sql_rules(settings)
        assert {uid for uid, *_ in rules} >= {f"iotlm-relay-{r}" for r in alerting.WORKER_RULES}
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT kind, count(*) FROM alerts GROUP BY kind")).all())
        assert stored.get("room_hours", 0) > 0 and stored["fall"] == 1  # the worker's own rule fired
        for uid, sql, _lookback in rules:
            with engine.connect() as conn:
                result = conn.execute(text(interpolate(sql, time_from=time_from, time_to=time_to, variables={},
                                                       timescaledb=timescaledb)))
                columns, rows = list(result.keys()), [tuple(r) for r in result]
            assert len(columns) == 2 and all(isinstance(r[0], str) and isinstance(r[1], float) for r in rows), uid
            kind = uid.removeprefix("iotlm-relay-")
            if kind in alerting.WORKER_RULES:
                assert sum(r[1] for r in rows) == stored.get(kind, 0), uid
        # Grafana's own room-hours check sees the walking in the kitchen the worker alerted on
        room_rule = next(sql for uid, sql, _ in rules if uid == "iotlm-check-room-hours-0")
        with engine.connect() as conn:
            n = conn.execute(text(interpolate(room_rule, time_from=time_from, time_to=time_to, variables={},
                                              timescaledb=timescaledb))).all()
            walking = conn.execute(text("SELECT count(*) FROM window_predictions "
                                        "WHERE room_id = 'kitchen' AND label = 'walking'")).scalar_one()
        assert sum(r[1] for r in n) == walking

    def test_device_silent_fires_only_once_devices_are_quiet_for_the_workers_limit(self, replayed):
        settings, engine, timescaledb, start, end = replayed
        (rule,) = [r for r in alerting.api_rules(settings) if r["uid"] == "iotlm-check-device-silent"]
        sql = rule["data"][0]["model"]["rawSql"]
        evaluator = rule["data"][1]["model"]["conditions"][0]["evaluator"]
        assert evaluator == {"type": "gt", "params": [settings.workers.silent_device_s]}

        def silent_s(now: datetime) -> dict[str, float]:
            with engine.connect() as conn:
                return dict(conn.execute(text(interpolate(sql, time_from=start - timedelta(hours=1), time_to=now,
                                                          variables={}, timescaledb=timescaledb))).all())

        limit = settings.workers.silent_device_s
        assert all(s <= limit for s in silent_s(end).values())  # still streaming at the end of the replay
        later = silent_s(end + timedelta(seconds=limit + 30))
        assert len(later) == DEVICES + 1 and all(s > limit for s in later.values())


def test_previews_are_drawn_from_the_panels_sql(replayed, tmp_path):
    import os
    from pathlib import Path

    settings, engine, timescaledb, start, end = replayed
    out = Path(os.environ.get("IOTLM_GRAFANA_PREVIEWS") or tmp_path) / ("timescaledb" if timescaledb else "postgresql")
    files = render(engine, dashboards(settings), out, time_from=start - timedelta(minutes=2),
                   time_to=end + timedelta(minutes=2), timescaledb=timescaledb, interval="30s")
    assert [f.name for f in files] == ["room.png", "fleet.png"]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 20_000


class TestCommandsOnTheReplayedDatabase:
    @staticmethod
    def _env(settings) -> dict[str, str]:
        return {**settings.stack.environ(), "IOTLM_STATE_DIR": str(settings.state_dir),
                "IOTLM_STORAGE__LANE": settings.storage.lane}

    def test_export_detects_the_lane_and_sets_the_timescaledb_flag(self, replayed, tmp_path):
        import yaml
        from typer.testing import CliRunner

        from iotlm.cli import app

        settings, _engine, timescaledb, *_ = replayed
        result = CliRunner().invoke(app, ["grafana", "export", str(tmp_path), "--json"], env=self._env(settings))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["lane"] == ("timescaledb" if timescaledb else "postgresql")
        (pg, _prom) = yaml.safe_load((tmp_path / "provisioning/datasources/iotlm.yaml").read_text())["datasources"]
        assert pg["jsonData"]["timescaledb"] is timescaledb
        assert pg["url"] == f"{settings.stack.host}:{settings.stack.timescale_port if timescaledb else settings.stack.postgres_port}"
        assert pg["jsonData"]["database"] == ("postgres" if timescaledb else settings.stack.postgres_db)
        assert pg["jsonData"]["postgresVersion"] >= 1500

    def test_preview_command_draws_from_the_database(self, replayed, tmp_path):
        from typer.testing import CliRunner

        from iotlm.cli import app

        settings, *_ = replayed
        result = CliRunner().invoke(app, ["grafana", "preview", str(tmp_path), "--hours", "3"], env=self._env(settings))
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in tmp_path.glob("*.png")) == ["fleet.png", "room.png"]
