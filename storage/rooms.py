"""Room states in storage and Redis: the `room_states` rows (idempotent, first write wins, like the
predictions) and the latest state per room in Redis.

Redis key (prefix from settings.storage.redis_key_prefix):
  {p}:room:{room_id}:state   hash  occupancy, occupancy_count, occupied, room_use, air_quality, co2_ppm,
                                   temperature_c, people, activities (JSON), window_end, device_id,
                                   model_version (TTL: settings.storage.state_ttl_s)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from storage.writer import BatchWriter, TableSpec


@dataclass(frozen=True, slots=True)
class RoomStateRow:
    device_id: str
    window_end: datetime
    model_version: str
    window_start: datetime
    room_id: str | None
    occupancy: str
    occupancy_count: float
    occupied: bool
    occupancy_probability: float
    room_use: str
    use_probability: float
    air_quality: str
    co2_ppm: float | None = None
    temperature_c: float | None = None
    humidity: float | None = None
    light_lux: float | None = None
    people: int = 0
    activities: Mapping[str, str] = field(default_factory=dict)
    distribution: Mapping = field(default_factory=dict)
    truth: Mapping | None = None


ROOM_STATES = TableSpec("room_states", RoomStateRow, ("device_id", "window_end", "model_version"),
                        json_columns=("activities", "distribution", "truth"))


class RoomStateWriter(BatchWriter):
    spec = ROOM_STATES


def room_state_key(prefix: str, room_id: str) -> str:
    return f"{prefix}:room:{room_id}:state"


def publish_room_state(redis, prefix: str, ttl_s: int, row: RoomStateRow) -> None:
    """The room's latest state (newer windows only: a re-delivered older window does not roll it back)."""
    key = room_state_key(prefix, row.room_id or row.device_id)
    known = redis.hget(key, "window_end")
    if known is not None and float(known) > row.window_end.timestamp():
        return
    mapping = {
        "occupancy": row.occupancy, "occupancy_count": row.occupancy_count, "occupied": int(row.occupied),
        "room_use": row.room_use, "use_probability": row.use_probability, "air_quality": row.air_quality,
        "co2_ppm": "" if row.co2_ppm is None else row.co2_ppm,
        "temperature_c": "" if row.temperature_c is None else row.temperature_c,
        "people": row.people, "activities": json.dumps(dict(row.activities)),
        "window_end": row.window_end.timestamp(), "device_id": row.device_id, "model_version": row.model_version,
    }
    pipe = redis.pipeline()
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, ttl_s)
    pipe.execute()


def read_room_state(redis, prefix: str, room_id: str) -> dict | None:
    fields = redis.hgetall(room_state_key(prefix, room_id))
    if not fields:
        return None
    out = dict(fields)
    out["activities"] = json.loads(out.get("activities") or "{}")
    for name in ("occupancy_count", "use_probability", "window_end"):
        out[name] = float(out[name])
    out["people"] = int(out["people"])
    out["occupied"] = out["occupied"] == "1"
    return out
