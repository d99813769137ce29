"""Live state in Redis: what each device and room is doing now, who is in a room, and the alert fan-out.

Keys (prefix from settings.storage.redis_key_prefix):
  {p}:device:{id}      hash  activity, since, confidence, model_version, updated_at, room_id   (TTL)
  {p}:room:{id}        hash  same fields, from the device in the room heard from last          (TTL)
  {p}:occupancy:{id}   zset  device id -> last seen (epoch s); members older than the TTL are pruned
  {p}:alerts           stream of alerts, trimmed to about alert_stream_maxlen entries

Every hash is re-armed with the TTL on each update, so a device that stops sending fades out
instead of showing a stale activity forever. Times are epoch seconds (floats) in Redis and
timezone-aware datetimes in Python.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from redis import Redis
from redis.exceptions import ResponseError

# Keeps `since` when the activity is unchanged, so "walking since 10:02" survives every update.
_UPDATE_STATE = """
if redis.call('HGET', KEYS[1], 'activity') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'since', ARGV[4])
end
redis.call('HSET', KEYS[1], 'activity', ARGV[1], 'confidence', ARGV[2], 'model_version', ARGV[3],
           'updated_at', ARGV[4], 'room_id', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[5])
"""


@dataclass(frozen=True)
class ActivityState:
    activity: str
    since: datetime
    confidence: float
    model_version: str
    updated_at: datetime
    room_id: str | None = None

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> ActivityState:
        return cls(
            activity=fields["activity"],
            since=_from_epoch(fields["since"]),
            confidence=float(fields["confidence"]),
            model_version=fields["model_version"],
            updated_at=_from_epoch(fields["updated_at"]),
            room_id=fields.get("room_id") or None,
        )


def _from_epoch(value: str) -> datetime:
    return datetime.fromtimestamp(float(value), timezone.utc)


def redis_client(settings, principal: str) -> Redis:
    """A client as `principal` (iotlm.credentials) that gives up after `redis_timeout_s`: a Redis that
    hangs must not hang its caller."""
    from iotlm import credentials

    timeout = settings.storage.redis_timeout_s
    return credentials.redis_client(settings, principal, socket_timeout=timeout, socket_connect_timeout=timeout)


@dataclass(frozen=True)
class DeviceUpdate:
    """One device's latest classification, for `LiveState.update_many`."""

    device_id: str
    activity: str
    confidence: float
    model_version: str
    at: datetime
    room_id: str | None = None


class LiveState:
    """Latest activity per device and room, and room occupancy, with TTLs so dead devices fade."""

    def __init__(self, redis: Redis, ttl_s: int, prefix: str = "iotlm"):
        self.redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._update = redis.register_script(_UPDATE_STATE)

    @classmethod
    def from_settings(cls, settings, principal: str) -> LiveState:
        return cls(redis_client(settings, principal), settings.storage.state_ttl_s, settings.storage.redis_key_prefix)

    def _key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    def update(self, device_id: str, activity: str, confidence: float, model_version: str,
               at: datetime, room_id: str | None = None) -> None:
        """Record the latest classification of a device (and of its room, and its presence there)."""
        self.update_many([DeviceUpdate(device_id, activity, confidence, model_version, at, room_id)])

    def update_many(self, updates: list[DeviceUpdate], per_round_trip: int = 500) -> None:
        """`update` for many devices in few round trips (a pipeline per `per_round_trip` devices): a
        worker's batch holds a window of every device it owns, and one round trip each would cap the sink."""
        for first in range(0, len(updates), per_round_trip):
            pipe = self.redis.pipeline(transaction=False)  # each device's script is atomic on its own
            for u in updates[first:first + per_round_trip]:
                ts = u.at.timestamp()
                args = [u.activity, u.confidence, u.model_version, ts, self.ttl_s, u.room_id or ""]
                self._update(keys=[self._key("device", u.device_id)], args=args, client=pipe)
                if u.room_id:
                    self._update(keys=[self._key("room", u.room_id)], args=args, client=pipe)
                    occupancy = self._key("occupancy", u.room_id)
                    pipe.zadd(occupancy, {u.device_id: ts})
                    pipe.expire(occupancy, self.ttl_s)
            pipe.execute()

    def device(self, device_id: str) -> ActivityState | None:
        fields = self.redis.hgetall(self._key("device", device_id))
        return ActivityState.from_hash(fields) if fields else None

    def room(self, room_id: str) -> ActivityState | None:
        fields = self.redis.hgetall(self._key("room", room_id))
        return ActivityState.from_hash(fields) if fields else None

    def present_devices(self, room_id: str, now: datetime | None = None) -> list[str]:
        """Devices heard from in the room within the TTL; older ones are pruned on the way."""
        key = self._key("occupancy", room_id)
        cutoff = (now.timestamp() if now else time.time()) - self.ttl_s
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(key, "-inf", f"({cutoff}")
        pipe.zrange(key, 0, -1)
        return sorted(pipe.execute()[1])

    def occupancy(self, room_id: str, now: datetime | None = None) -> int:
        return len(self.present_devices(room_id, now))


class AlertStream:
    """Alert fan-out on a Redis Stream with consumer groups.

    A consumer reads with `read`, which first hands back entries delivered to it earlier but
    never acknowledged (it crashed or lost its connection mid-way), then new ones; it calls `ack`
    once an alert is handled. Entries left pending by a consumer that never returns are taken
    over with `claim_stale`.
    """

    def __init__(self, redis: Redis, stream: str, maxlen: int):
        self.redis = redis
        self.stream = stream
        self.maxlen = maxlen

    @classmethod
    def from_settings(cls, settings, principal: str) -> AlertStream:
        return cls(redis_client(settings, principal),
                   f"{settings.storage.redis_key_prefix}:alerts", settings.storage.alert_stream_maxlen)

    def publish(self, alert: Mapping) -> str:
        """Append an alert (any JSON-able mapping); returns its stream id."""
        return self.redis.xadd(self.stream, {"alert": json.dumps(alert, default=str)},
                               maxlen=self.maxlen, approximate=True)

    def ensure_group(self, group: str, start_id: str = "0") -> bool:
        """Create the consumer group (and the stream) unless it exists; True when created.
        `start_id` "0" delivers the whole retained stream to a new group, "$" only what comes next."""
        try:
            self.redis.xgroup_create(self.stream, group, id=start_id, mkstream=True)
            return True
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise

    def read(self, group: str, consumer: str, count: int = 100, block_ms: int | None = None) -> list[tuple[str, dict]]:
        """This consumer's unacknowledged entries first, then new ones (waiting up to `block_ms`)."""
        pending = self._read(group, consumer, "0", count, None)
        return pending or self._read(group, consumer, ">", count, block_ms)

    def _read(self, group: str, consumer: str, start: str, count: int, block_ms: int | None):
        reply = self.redis.xreadgroup(group, consumer, {self.stream: start}, count=count, block=block_ms)
        entries = reply[0][1] if reply else []
        # Entries trimmed away while pending come back with no fields: nothing left to deliver.
        return [(entry_id, json.loads(fields["alert"])) for entry_id, fields in entries if fields]

    def ack(self, group: str, *entry_ids: str) -> int:
        return self.redis.xack(self.stream, group, *entry_ids) if entry_ids else 0

    def claim_stale(self, group: str, consumer: str, min_idle_ms: int, count: int = 100) -> list[tuple[str, dict]]:
        """Take over entries another consumer has held unacknowledged for at least `min_idle_ms`."""
        _next, entries, *_ = self.redis.xautoclaim(self.stream, group, consumer, min_idle_ms, "0-0", count=count)
        return [(entry_id, json.loads(fields["alert"])) for entry_id, fields in entries if fields]
