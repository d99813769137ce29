"""Where a worker's output goes, and how the store says "not now".

`ResultSink` is the interface the worker codes against: `write(batch)` returns only once the batch is
durable (the worker commits Kafka offsets after it), must be idempotent (a batch re-sent after a crash
or a retry creates no duplicate), and signals backpressure explicitly by raising `SinkBackpressure`
with how long to wait: the worker then pauses consumption and re-sends the same batch, instead of a
write blocking silently inside the event loop.

`StorageSink` adapts the interface onto `storage.writer` (idempotent upserts keyed by device, window
start and model version; raw frames by device, t0 and seq; episodes by start; alerts by dedup key),
then updates the live state in Redis (`storage.live_state`: each device's latest activity) and appends
alerts to the Redis alert stream.
The Redis stream is at-least-once: an alert re-raised after a crash carries the same `dedup_key`.

Redis only mirrors what the database holds, so a Redis outage degrades, never stops: results keep
flowing into the database while the sink keeps, per device, the latest state Redis has not had (and up
to `live_state_backlog` alerts), and hands it over as soon as Redis answers again (tried at most every
`REDIS_RETRY_S`). What is lost of live state: the intermediate states of the outage (only each device's
latest is applied, and its `since` is when Redis came back if the activity changed meanwhile); alerts
past the backlog, and the backlog itself if the worker dies during the outage, reach the Redis stream
never (they are in the database and on the alerts topic).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from stream_workers.records import Alert, Episode, RawFrame, WindowResult


@dataclass
class SinkBatch:
    results: list[WindowResult] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    raw_frames: list[RawFrame] = field(default_factory=list)
    room_states: list = field(default_factory=list)  # stream_workers.rooms.RoomStateResult

    def __len__(self) -> int:
        return len(self.results) + len(self.episodes) + len(self.alerts) + len(self.raw_frames) + len(self.room_states)

    def records(self) -> list:
        return [*self.results, *self.episodes, *self.alerts, *self.raw_frames, *self.room_states]

    def split(self) -> list[SinkBatch]:
        """One batch per record: to find the one record a store refuses."""
        return ([SinkBatch(results=[r]) for r in self.results] + [SinkBatch(episodes=[e]) for e in self.episodes]
                + [SinkBatch(alerts=[a]) for a in self.alerts] + [SinkBatch(raw_frames=[f]) for f in self.raw_frames]
                + [SinkBatch(room_states=[r]) for r in self.room_states])

    def extend(self, other: SinkBatch) -> None:
        self.results += other.results
        self.episodes += other.episodes
        self.alerts += other.alerts
        self.raw_frames += other.raw_frames
        self.room_states += other.room_states


class SinkBackpressure(Exception):
    """The store cannot take this batch now; send the same batch again after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: float = 1.0):
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class ResultSink(Protocol):
    def write(self, batch: SinkBatch) -> int:
        """Store the batch durably and idempotently; returns rows new or changed. May raise SinkBackpressure
        (retry later); any other exception means the store refuses something in this batch."""
        ...

    def close(self) -> None: ...


log = logging.getLogger(__name__)
REDIS_RETRY_S = 2.0


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


class StorageSink:
    """ResultSink onto storage's idempotent writers (PostgreSQL or TimescaleDB lane, per settings)."""

    def __init__(self, settings, rooms=None):
        from storage.lane import engine_from_settings
        from storage.live_state import AlertStream, LiveState
        from storage.writer import AlertWriter, EpisodeWriter, PredictionWriter, RawFrameWriter

        # device id -> room: the fleet registry when the composition root gives one, else the settings' map
        self.rooms = rooms if rooms is not None else settings.workers.device_rooms
        self.engine = engine_from_settings(settings, principal="worker")  # may write results, nothing else
        self.predictions = PredictionWriter(self.engine, storage_settings=settings.storage)
        self.episodes = EpisodeWriter(self.engine, lane=self.predictions.lane, storage_settings=settings.storage)
        self.alerts = AlertWriter(self.engine, lane=self.predictions.lane, storage_settings=settings.storage)
        self.raw_frames = RawFrameWriter(self.engine, lane=self.predictions.lane, storage_settings=settings.storage)
        from storage.rooms import RoomStateWriter

        self.room_states = RoomStateWriter(self.engine, lane=self.predictions.lane, storage_settings=settings.storage)
        self._room_backlog: dict[str, object] = {}  # room (or device) -> latest room state Redis has not had
        self._prefix, self._ttl_s = settings.storage.redis_key_prefix, settings.storage.state_ttl_s
        self.live_state = LiveState.from_settings(settings, "worker")
        self.alert_stream = AlertStream.from_settings(settings, "worker")
        self._live_backlog: dict[str, WindowResult] = {}  # device -> latest result Redis has not had
        self._alert_backlog: deque[Alert] = deque()
        self._alert_backlog_max = settings.storage.live_state_backlog
        self.alerts_not_mirrored = 0  # alerts that never reached the Redis stream (backlog overflow)
        self._redis_retry_at = 0.0

    @property
    def redis_backlog(self) -> int:
        return len(self._live_backlog) + len(self._alert_backlog) + len(self._room_backlog)

    def write(self, batch: SinkBatch) -> int:
        from storage.writer import RETRYABLE

        try:
            stored = (
                self.raw_frames.write([self._raw_frame(f) for f in batch.raw_frames])
                + self.predictions.write([self._prediction(r) for r in batch.results])
                + self.episodes.write([self._episode(e) for e in batch.episodes])
                + self.alerts.write([self._alert(a) for a in batch.alerts])
                + self.room_states.write([self._room_state(r) for r in batch.room_states])
            )
        except RETRYABLE as exc:  # the writers already retried with backoff: the database is down
            raise SinkBackpressure(f"database unavailable: {str(exc).splitlines()[0]}", retry_after_s=2.0) from exc
        self._mirror(batch)
        return stored

    def _mirror(self, batch: SinkBatch) -> None:
        """Live state and alerts to Redis, what an outage held back first; an outage only queues them."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from storage.live_state import DeviceUpdate

        for r in batch.results:
            known = self._live_backlog.get(r.device_id)
            if known is None or r.window_end >= known.window_end:
                self._live_backlog[r.device_id] = r
        for state in batch.room_states:
            key = state.room_id or state.device_id
            known = self._room_backlog.get(key)
            if known is None or state.window_end >= known.window_end:
                self._room_backlog[key] = state
        for alert in batch.alerts:
            if len(self._alert_backlog) >= self._alert_backlog_max:
                self._alert_backlog.popleft()
                self.alerts_not_mirrored += 1
            self._alert_backlog.append(alert)
        if time.monotonic() < self._redis_retry_at:
            return
        try:
            if self._live_backlog:
                self.live_state.update_many([
                    DeviceUpdate(r.device_id, r.activity, r.probability, r.model_version, _utc(r.window_end),
                                 self.rooms.get(r.device_id)) for r in self._live_backlog.values()])
                self._live_backlog.clear()
            for key, state in list(self._room_backlog.items()):
                from storage.rooms import publish_room_state

                publish_room_state(self.live_state.redis, self._prefix, self._ttl_s, self._room_state(state))
                del self._room_backlog[key]
            while self._alert_backlog:
                self.alert_stream.publish(self._alert_backlog[0].as_dict())
                self._alert_backlog.popleft()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self._redis_retry_at = time.monotonic() + REDIS_RETRY_S
            log.warning("redis unavailable (%s); %d live-state updates held for it", exc, self.redis_backlog)

    def presence(self, room_ids) -> dict[str, dict[str, str]]:
        """Per room, the wearables heard there within the live-state TTL and their latest activity
        (any worker's: the live state is shared). A Redis outage answers nobody present."""
        from redis.exceptions import RedisError

        out: dict[str, dict[str, str]] = {}
        try:
            for room_id in room_ids:
                if room_id is None:
                    continue
                present = {}
                for device_id in self.live_state.present_devices(room_id):
                    state = self.live_state.device(device_id)
                    if state is not None:
                        present[device_id] = state.activity
                out[room_id] = present
        except RedisError as exc:
            log.warning("no wearable presence for room states (redis: %s)", exc)
        return out

    def close(self) -> None:
        self.engine.dispose()
        self.live_state.redis.close()
        self.alert_stream.redis.close()

    def _prediction(self, r: WindowResult):
        from storage.writer import PredictionRow

        return PredictionRow(
            device_id=r.device_id, window_start=_utc(r.window_start), window_end=_utc(r.window_end),
            model_version=r.model_version, label=r.activity, probability=r.probability,
            distribution=r.distribution, room_id=self.rooms.get(r.device_id), embedding_ref=r.embedding_ref,
        )

    def _episode(self, e: Episode):
        from storage.writer import EpisodeRow

        return EpisodeRow(
            device_id=e.device_id, started_at=_utc(e.start), ended_at=_utc(e.end), model_version=e.model_version,
            label=e.activity, windows=e.windows, mean_probability=e.confidence, room_id=self.rooms.get(e.device_id),
        )

    @staticmethod
    def _room_state(r):
        from storage.rooms import RoomStateRow

        return RoomStateRow(
            device_id=r.device_id, window_end=_utc(r.window_end), model_version=r.model_version,
            window_start=_utc(r.window_start), room_id=r.room_id, occupancy=r.occupancy,
            occupancy_count=r.occupancy_count, occupied=r.occupied, occupancy_probability=r.occupancy_probability,
            room_use=r.room_use, use_probability=r.use_probability, air_quality=r.air_quality,
            co2_ppm=r.readings.get("co2"), temperature_c=r.readings.get("temperature"),
            humidity=r.readings.get("humidity"), light_lux=r.readings.get("light"), people=r.people,
            activities=r.activities, distribution=r.distribution,
            truth=None if r.truth_count is None else {"occupancy_count": r.truth_count},
        )

    @staticmethod
    def _raw_frame(f: RawFrame):
        from storage.writer import RawFrameRow

        return RawFrameRow(device_id=f.device_id, t0=_utc(f.t0), seq=f.seq, payload=f.payload,
                           received_at=_utc(f.received_at))

    @staticmethod
    def _alert(a: Alert):
        from storage.writer import AlertRow

        return AlertRow(
            dedup_key=a.dedup_key, started_at=_utc(a.at), kind=a.rule, severity=a.severity, device_id=a.device_id,
            room_id=a.room, payload={"message": a.message, **a.details},
        )
