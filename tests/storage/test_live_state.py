"""Redis live state and the alert stream, against the stack's real Redis (keys under a per-test prefix)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from redis import Redis

from iotlm.credentials import redis_auth
from storage.live_state import AlertStream, DeviceUpdate, LiveState

pytestmark = pytest.mark.services


@pytest.fixture
def redis(settings, stack):
    client = Redis.from_url(settings.redis_url, decode_responses=True, **redis_auth(settings, "worker"))
    yield client
    client.close()


@pytest.fixture
def prefix(redis):
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"test-storage-{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = list(redis.scan_iter(f"{prefix}:*"))
    if keys:
        redis.delete(*keys)


class TestLiveState:
    def test_latest_state_keeps_since_while_activity_unchanged(self, redis, prefix):
        live = LiveState(redis, ttl_s=60, prefix=prefix)
        t = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
        live.update("dev-a", "walking", 0.8, "m1", t, room_id="kitchen")
        live.update("dev-a", "walking", 0.9, "m1", t + timedelta(seconds=5), room_id="kitchen")
        state = live.device("dev-a")
        assert (state.activity, state.since, state.confidence, state.updated_at, state.room_id) == (
            "walking", t, 0.9, t + timedelta(seconds=5), "kitchen")

        live.update("dev-a", "sitting", 0.7, "m2", t + timedelta(seconds=9), room_id="kitchen")
        state = live.device("dev-a")
        assert (state.activity, state.since, state.model_version) == ("sitting", t + timedelta(seconds=9), "m2")
        assert live.room("kitchen").activity == "sitting"
        assert live.device("dev-unknown") is None

    def test_many_devices_in_few_round_trips_end_as_one_update_each_would(self, redis, prefix):
        """update_many (the sink's path: a whole batch's devices, pipelined) against update one by one, on
        two prefixes of the same Redis; more devices than one round trip takes, some in rooms."""
        one_by_one = LiveState(redis, ttl_s=60, prefix=prefix + "-single")
        batched = LiveState(redis, ttl_s=60, prefix=prefix)
        t = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
        rounds = [[DeviceUpdate(f"dev-{i}", activity, 0.5 + i / 2000, "m1", t + timedelta(seconds=k),
                                f"room-{i % 3}" if i % 2 else None) for i in range(1200)]
                  for k, activity in enumerate(["walking", "walking", "sitting"])]
        try:
            for updates in rounds:
                batched.update_many(updates, per_round_trip=500)
                for u in updates:
                    one_by_one.update(u.device_id, u.activity, u.confidence, u.model_version, u.at, u.room_id)
            for i in (0, 1, 499, 500, 1199):
                assert batched.device(f"dev-{i}") == one_by_one.device(f"dev-{i}")
            state = batched.device("dev-7")
            assert (state.activity, state.since, state.room_id) == ("sitting", t + timedelta(seconds=2), "room-1")
            assert batched.room("room-1") == one_by_one.room("room-1")
            assert batched.present_devices("room-0", now=t) == one_by_one.present_devices("room-0", now=t)
            assert len(batched.present_devices("room-0", now=t)) == 200  # odd ids 3, 9, 15, ... below 1200
        finally:
            keys = list(redis.scan_iter(f"{prefix}-single:*"))
            if keys:
                redis.delete(*keys)

    def test_dead_devices_fade(self, redis, prefix):
        live = LiveState(redis, ttl_s=1, prefix=prefix)
        now = datetime.now(timezone.utc)
        live.update("dev-a", "lying", 0.95, "m1", now, room_id="bedroom")
        live.update("dev-b", "standing", 0.6, "m1", now, room_id="bedroom")
        assert live.occupancy("bedroom") == 2
        assert 0 < redis.ttl(f"{prefix}:device:dev-a") <= 1
        time.sleep(1.3)
        live.update("dev-b", "standing", 0.6, "m1", datetime.now(timezone.utc), room_id="bedroom")
        assert live.device("dev-a") is None  # its hash expired
        assert live.present_devices("bedroom") == ["dev-b"]
        time.sleep(1.3)
        assert live.room("bedroom") is None and live.occupancy("bedroom") == 0


class TestAlertStream:
    def test_group_created_once(self, redis, prefix):
        alerts = AlertStream(redis, f"{prefix}:alerts", maxlen=1000)
        assert alerts.ensure_group("notifier") is True
        assert alerts.ensure_group("notifier") is False

    def test_crashed_consumer_gets_its_unacked_alerts_again(self, redis, prefix):
        alerts = AlertStream(redis, f"{prefix}:alerts", maxlen=1000)
        alerts.ensure_group("notifier")
        ids = [alerts.publish({"kind": "fall", "device_id": f"dev-{i}", "severity": "critical"}) for i in range(3)]

        first = alerts.read("notifier", "worker-1", count=10)
        assert [entry_id for entry_id, _ in first] == ids
        assert alerts.ack("notifier", ids[0]) == 1
        # worker-1 "crashes" here without acknowledging the other two, then reconnects.
        alerts.publish({"kind": "offline", "device_id": "dev-9", "severity": "info"})
        again = alerts.read("notifier", "worker-1", count=10)
        assert [entry_id for entry_id, _ in again] == ids[1:]
        assert again[0][1] == {"kind": "fall", "device_id": "dev-1", "severity": "critical"}
        alerts.ack("notifier", *ids[1:])
        assert [a["kind"] for _, a in alerts.read("notifier", "worker-1")] == ["offline"]

    def test_stale_entries_of_a_consumer_that_never_returns_are_claimed(self, redis, prefix):
        alerts = AlertStream(redis, f"{prefix}:alerts", maxlen=1000)
        alerts.ensure_group("notifier")
        entry_id = alerts.publish({"kind": "inactivity"})
        assert alerts.read("notifier", "worker-dead")[0][0] == entry_id
        assert alerts.read("notifier", "worker-2", block_ms=10) == []  # nothing new for others
        time.sleep(0.05)
        claimed = alerts.claim_stale("notifier", "worker-2", min_idle_ms=20)
        assert claimed == [(entry_id, {"kind": "inactivity"})]

    def test_stream_trimmed_to_about_maxlen(self, redis, prefix):
        alerts = AlertStream(redis, f"{prefix}:alerts", maxlen=100)
        for i in range(1000):
            alerts.publish({"n": i})
        assert 100 <= redis.xlen(f"{prefix}:alerts") < 300
