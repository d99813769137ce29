"""Room states on both lanes: hypertable / partitioned table, idempotent rows, the hourly aggregate, the worker's grants."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from storage import maintenance
from storage.lane import Lane
from storage.rooms import RoomStateRow, RoomStateWriter

T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
pytestmark = pytest.mark.services


def rows(n: int) -> list[RoomStateRow]:
    return [RoomStateRow(
        device_id="env-a1", window_end=T0 + timedelta(minutes=5 * i), model_version="rooms-v1",
        window_start=T0 + timedelta(minutes=5 * i - 30), room_id="a-101", occupancy="2-4 people",
        occupancy_count=float(2 + i % 3), occupied=True, occupancy_probability=0.8, room_use="meeting",
        use_probability=0.7, air_quality="moderate", co2_ppm=900.0 + 10 * i, temperature_c=22.0, humidity=40.0,
        light_lux=420.0, people=1, activities={"wrist-1": "sitting"}, distribution={"use": {"meeting": 0.7}},
        truth={"occupancy_count": 3},
    ) for i in range(n)]


def test_room_states_are_stored_once_and_aggregated_hourly(migrated):
    _url, lane, engine = migrated
    writer = RoomStateWriter(engine, lane)
    assert writer.write(rows(24)) == 24
    assert writer.write(rows(24)) == 0  # re-delivered: first write wins
    with engine.connect() as conn:
        if lane is Lane.TIMESCALEDB:
            assert conn.execute(text("SELECT count(*) FROM timescaledb_information.hypertables "
                                     "WHERE hypertable_name = 'room_states'")).scalar() == 1
        else:
            assert conn.execute(text("SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c "
                                     "ON c.oid = p.partrelid WHERE c.relname = 'room_states'")).scalar() == 1
        stored = conn.execute(text("SELECT activities, truth FROM room_states ORDER BY window_end LIMIT 1")).one()
        assert stored.activities == {"wrist-1": "sitting"} and stored.truth == {"occupancy_count": 3}
    maintenance.refresh_aggregates(engine)
    with engine.connect() as conn:
        hourly = conn.execute(text("SELECT bucket, windows, max_co2_ppm, occupied_fraction FROM room_states_hourly "
                                   "WHERE room_id = 'a-101' ORDER BY bucket")).all()
    assert [h.windows for h in hourly] == [12, 12]
    assert hourly[0].bucket == T0 and hourly[1].max_co2_ppm == pytest.approx(900 + 230)
    assert all(h.occupied_fraction == 1 for h in hourly)


def test_the_worker_role_may_write_room_states_and_not_drop_them(migrated, settings):
    _url, lane, engine = migrated
    if lane is not Lane.POSTGRESQL:
        pytest.skip("PGlite has one user: roles are a PostgreSQL-lane matter")
    with engine.connect() as conn:
        grants = {r[0] for r in conn.execute(text(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = 'iotlm_worker' AND table_name = 'room_states'"))}
    assert {"INSERT", "UPDATE", "SELECT"} <= grants and "DELETE" not in grants and "TRUNCATE" not in grants
